"""Saved web pages (.html) as articles: fields from the page, a safe story, hostile pages."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import pytest

from mailer.articles import load_article, load_articles
from mailer.errors import InputError
from tests.cli import error_lines, invoke
from tests.mail import body as text_of
from tests.mail import parsed

STORY = (
    "The council met on Tuesday to discuss the plans for the new library, and residents "
    "came in numbers to say what they thought of the design and the opening hours."
)

BLOG = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Hartley library plans approved | Hartley Gazette</title>
<link rel="canonical" href="https://gazette.example/2026/11/library-plans/">
<meta property="og:title" content="Hartley library plans approved">
<meta property="og:image" content="/media/library.jpg">
<meta name="author" content="Priya Nair">
<meta property="article:published_time" content="2026-11-26T08:00:00+00:00">
<style>body {{ color: red }}</style>
<script>window.track = true; document.write("<b>tracked</b>")</script>
</head><body>
<div class="cookie-banner">We use cookies to make this site work. Accept all cookies</div>
<header><nav><a href="/">Home</a> | <a href="/news">News</a> | Menu | Search</nav></header>
<main><article>
<h1>Hartley library plans approved</h1>
<p class="byline">By Priya Nair · 4 min read</p>
<p>{STORY}</p>
<h2>What happens next</h2>
<p>Building starts in <strong>March</strong>, and the <a href="/library">old library</a> stays
open until the new one is ready. A <a href="javascript:alert(1)">form</a> is online.</p>
<ul><li>A children's room on the ground floor.</li><li>Study desks upstairs.</li></ul>
<blockquote><p>"It is the best news the town has had in years," said one resident.</p></blockquote>
<p>Advertisement</p>
<p>The council will publish the final drawings on its website before Christmas.</p>
<p>&lt;script&gt;alert("text, not markup")&lt;/script&gt; # and 1. are words here</p>
</article></main>
<aside><h3>Related stories</h3><ul><li><a href="/x">Bins</a></li></ul></aside>
<footer><p>Share this page</p><p>Copyright 2026 Hartley Gazette. All rights reserved.</p></footer>
</body></html>
"""


def page(tmp_path: Path, html: str | bytes, name: str = "page.html") -> Path:
    folder = tmp_path / "articles"
    folder.mkdir(exist_ok=True)
    path = folder / name
    if isinstance(html, str):
        path.write_text(html, encoding="utf-8")
    else:
        path.write_bytes(html)
    return path


def test_a_saved_blog_page_gives_every_field(tmp_path: Path) -> None:
    article = load_article(page(tmp_path, BLOG))
    assert article.title == "Hartley library plans approved"
    assert article.author == "Priya Nair"
    assert article.date == dt.date(2026, 11, 26) and not article.date_from_mtime
    assert article.url == "https://gazette.example/2026/11/library-plans/"
    assert article.image == "https://gazette.example/media/library.jpg"
    assert article.summary == STORY
    assert article.slug == "page"


def test_the_story_keeps_its_shape_and_no_markup_from_the_page(tmp_path: Path) -> None:
    article = load_article(page(tmp_path, BLOG))
    html = article.body_html
    assert "<h2>What happens next</h2>" in html
    assert "<li>A children's room on the ground floor.</li>" in html
    assert "<blockquote>" in html and "best news the town has had" in html
    assert "<strong>March</strong>" in html
    assert '<a href="https://gazette.example/library">old library</a>' in html
    assert "&lt;script&gt;alert(&quot;text, not markup&quot;)&lt;/script&gt; # and 1. are" in html
    for junk in ("<script", "javascript:", "window.track", "color: red", "cookies", "Menu"):
        assert junk not in html, junk
    for furniture in ("Advertisement", "Share this page", "Copyright", "Related stories"):
        assert furniture not in html and furniture not in article.body_text, furniture
    # The title is the mail's heading, not the story's first line again.
    assert "Hartley library plans approved" not in html
    text = article.body_text
    assert "## What happens next" in text
    assert "- A children's room on the ground floor.\n- Study desks upstairs." in text
    assert '> "It is the best news' in text
    assert text.startswith("By Priya Nair") or text.startswith("The council met")


@pytest.mark.parametrize(
    ("head", "title"),
    [
        ("<title>Bins collected on Friday | Hartley Council</title>", "Bins collected on Friday"),
        ("<title>Bins collected on Friday - Hartley Council</title>", "Bins collected on Friday"),
        (
            '<title>Home | Council</title><meta property="og:title" content="Bins on Friday">',
            "Bins on Friday",
        ),
    ],
)
def test_the_title_drops_the_site_name(tmp_path: Path, head: str, title: str) -> None:
    html = f"<html><head>{head}</head><body><div><p>{STORY}</p><p>{STORY}</p></div></body></html>"
    assert load_article(page(tmp_path, html)).title == title


def test_og_url_stands_in_for_canonical_and_relative_links_need_a_base(tmp_path: Path) -> None:
    body = f"<body><article><h1>Bins on Friday</h1><p>{STORY}</p></article></body>"
    og = (
        '<meta property="og:url" content="https://council.example/news/bins">'
        '<meta property="og:image" content="img/bins.png">'
    )
    article = load_article(page(tmp_path, f"<html><head>{og}</head>{body}</html>"))
    assert article.url == "https://council.example/news/bins"
    assert article.image == "https://council.example/news/img/bins.png"
    relative = '<link rel="canonical" href="/news/bins"><meta property="og:image" content="/i.png">'
    article = load_article(page(tmp_path, f"<html><head>{relative}</head>{body}</html>", "r.html"))
    assert article.url is None and article.image is None
    hostile = (
        '<link rel="canonical" href="javascript:alert(1)">'
        '<meta property="og:image" content="data:image/png;base64,AAAA">'
    )
    article = load_article(page(tmp_path, f"<html><head>{hostile}</head>{body}</html>", "h.html"))
    assert article.url is None and article.image is None


ENCODED = "<html><head>{meta}<title>Café “opens” | Gazette</title></head><body><article>" + (
    f"<h1>Café “opens”</h1><p>{STORY} Crème brûlée for all.</p></article></body></html>"
)


@pytest.mark.parametrize(
    ("meta", "codec", "bom"),
    [
        ('<meta charset="windows-1252">', "cp1252", b""),
        ('<meta http-equiv="Content-Type" content="text/html; charset=ISO-8859-1">', "cp1252", b""),
        ("<meta charset='utf-8'>", "utf-8", b""),
        ("", "utf-8", b"\xef\xbb\xbf"),
        ("", "utf-16-le", b"\xff\xfe"),
        ("", "cp1252", b""),  # no declaration and not UTF-8: what browsers guess
        ('<meta charset="no-such-charset">', "utf-8", b""),
    ],
)
def test_a_page_is_read_in_its_own_encoding(
    tmp_path: Path, meta: str, codec: str, bom: bytes
) -> None:
    data = bom + ENCODED.format(meta=meta).encode(codec)
    article = load_article(page(tmp_path, data))
    assert article.title == "Café “opens”"
    assert "Crème brûlée for all." in article.summary


NESTED = "<html><head><title>Deep</title></head><body>" + "<div>" * 1_000_000 + "</body></html>"
ENTITIES = (
    '<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
    '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
    "<html><head><title>Bomb</title></head><body><p>&d;&d;&d;&d;&d;&d;&d;&d;</p></body></html>"
)
HOSTILE: dict[str, tuple[bytes, str | None]] = {
    "no-text.html": (
        b"<html><head><title>Only a title</title><script>var x = 1;</script></head>"
        b"<body><nav><a href='/'>Home</a></nav></body></html>",
        "no story text",
    ),
    "no-title.html": (
        f"<html><body><div><p>{STORY}</p><p>{STORY}</p></div></body></html>".encode(),
        "no title found in the page",
    ),
    "nested.html": (NESTED.encode(), "no story text"),
    "entities.html": (ENTITIES.encode(), None),
    "binary.html": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + os.urandom(4000), "binary"),
    "garbage.html": (bytes(32 + b % 200 for b in os.urandom(100_000)), None),
    "empty.html": (b"  \n", "empty"),
    "scripts.html": (
        b"<html><head><title>S</title></head><body>"
        + b"<script>for(;;){}</script>" * 10_000
        + f"<article><h1>Scripts everywhere</h1><p>{STORY}</p></article></body></html>".encode(),
        None,
    ),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_a_hostile_page_is_an_article_or_one_error_naming_the_file(
    tmp_path: Path, name: str
) -> None:
    content, needle = HOSTILE[name]
    path = page(tmp_path, content, name)
    try:
        article = load_article(path)
    except InputError as exc:
        assert str(path) in exc.message
        assert "\n" not in exc.message
        if needle is not None:
            assert needle in exc.message, exc.message
        return
    assert needle is None, f"expected an error with {needle!r}"
    assert "<script" not in article.body_html and "for(;;)" not in article.body_text
    assert "\n" not in article.title


def test_no_title_says_how_to_fix_it(tmp_path: Path) -> None:
    content, _ = HOSTILE["no-title.html"]
    with pytest.raises(InputError) as caught:
        load_article(page(tmp_path, content))
    assert "title:" in caught.value.message and ".md" in caught.value.message


# --- in the digest ------------------------------------------------------------------------


def test_a_saved_blog_page_builds_into_the_digest(sample: Path) -> None:
    (sample / "articles" / "library-plans.html").write_text(BLOG, encoding="utf-8")
    assert "url:" not in BLOG
    result = invoke("digest", "--date", "2026-11-27")
    assert result.exit_code == 0, result.output
    folder = sample / "previews" / "digest-2026-11-27"
    text = (folder / "digest.txt").read_text(encoding="utf-8")
    assert "Hartley library plans approved\n   Priya Nair · November 26, 2026\n" in text
    assert "   Read more: https://gazette.example/2026/11/library-plans/\n" in text
    msg = parsed(sorted(folder.glob("*.eml"))[0].read_bytes())
    html = text_of(msg, "html")
    assert 'href="https://gazette.example/2026/11/library-plans/"' in html
    assert "Priya Nair · November 26, 2026" in html
    assert "cookies" not in html and "Menu" not in html
    titles = [a.title for a in load_articles(sample / "articles")]
    assert "Hartley library plans approved" in titles


def test_a_broken_page_stops_the_digest_with_one_line(sample: Path) -> None:
    content, _ = HOSTILE["no-title.html"]
    (sample / "articles" / "saved.html").write_bytes(content)
    result = invoke("digest", "--date", "2026-11-27")
    assert result.exit_code == 2
    (line,) = error_lines(result.stderr)
    assert "articles/saved.html: no title found in the page" in line
    assert not (sample / "previews").exists()


def test_a_forwarded_page_carries_its_story_with_its_shape(sample: Path) -> None:
    (sample / "articles" / "library-plans.html").write_text(BLOG, encoding="utf-8")
    env = {
        "MAILER_LEDGER": str(sample / ".mailer" / "ledger.sqlite3"),
        "MAILER_SUBSCRIBE_URL": "https://example.com/subscribe",
    }
    args = ("library-plans", "--to", "friend@example.net", "--sender", "Ann <ann@example.org>")
    result = invoke("forward", *args, env=env)
    assert result.exit_code == 0, result.output
    folder = sample / "previews" / "forward-library-plans"
    text = (folder / "forward.txt").read_text(encoding="utf-8")
    assert "\nWhat happens next\n" in text
    assert "- A children's room on the ground floor." in text
    assert '> "It is the best news' in text
    assert "https://gazette.example/2026/11/library-plans/" in text
    html = (folder / "forward.html").read_text(encoding="utf-8")
    assert re.search(r"<h[2-6][^>]*>What happens next</h[2-6]>", html) and "<blockquote" in html
    assert "<script" not in html.split("</head>")[-1] and "javascript:" not in html


# --- failure classes found on pages nobody tuned for ---------------------------------------------

LEDE = (
    "Single bus fares on every route in the region will be capped at £2 from the first of June, "
    "the combined authority has announced, in a move it says will save passengers money."
)
REST = (
    "<p>The cap replaces a patchwork of fares that can reach £6.50 for a single journey on some "
    "rural routes. Day tickets will be capped at £5.</p>"
    "<p>The scheme will cost £28m in its first year, paid for from the transport budget.</p>"
)


def shaped(head: str = "", top: str = "", foot: str = "", lang: str = "en") -> str:
    """A saved news page: ``head`` in <head>, ``top`` above the story, ``foot`` after it."""
    return (
        f'<!DOCTYPE html><html lang="{lang}"><head><meta charset="utf-8">'
        f"<title>Bus fares capped at £2 across the region</title>{head}</head><body>"
        '<nav><a href="/">Home</a> <a href="/news">News</a></nav><article>'
        f"<h1>Bus fares capped at £2 across the region</h1>{top}<p>{LEDE}</p>{REST}</article>"
        f"{foot}</body></html>"
    )


AUTHORS = '{{"@context":"https://schema.org","@type":"NewsArticle","author":[{}]}}'


@pytest.mark.parametrize(
    ("html", "author"),
    [
        (
            shaped(foot="<footer><p>Written by Margaret Hollis, churchwarden</p></footer>"),
            "Margaret Hollis",
        ),
        (
            shaped(top='<p class="meta">Von Lukas Brenner | 2. März 2026</p>', lang="de"),
            "Lukas Brenner",
        ),
        (
            shaped(
                foot='<address>Posted by <a rel="author" href="/about">Keith Marlow</a></address>'
            ),
            "Keith Marlow",
        ),
        (
            shaped(
                head='<script type="application/ld+json">'
                + AUTHORS.format(
                    '{"@type":"Person","name":"Ann Lee"},{"@type":"Person","name":"Raj Patel"}'
                )
                + "</script>"
            ),
            "Ann Lee and Raj Patel",
        ),
        (shaped(top='<p class="byline">Interview by Owen Pryce</p>'), "Owen Pryce"),
        (
            shaped(head='<meta name="author" content="Luke Pascoe, Transport Reporter">'),
            "Luke Pascoe",
        ),
        (shaped(top='<p class="byline">By BETH CARNEY</p>'), "Beth Carney"),
        (
            shaped(
                head='<meta name="author" content="Island Times">'
                '<meta property="og:site_name" content="Island Times">',
                top='<p class="byline">By Fiona Stewart, Islands correspondent</p>',
            ),
            "Fiona Stewart",
        ),
        (
            shaped(
                top='<div class="article-byline"><span>Sam Okafor</span>, '
                "<span>Education editor</span></div>",
                foot='<aside class="related"><p class="byline">By Jo Perry</p></aside>',
            ),
            "Sam Okafor",
        ),
        (
            shaped(
                foot='<div class="author-card"><h4 class="author-name">Fran Whitely</h4>'
                "<p>Fran writes about the outdoors, badly.</p></div>"
            ),
            "Fran Whitely",
        ),
    ],
)
def test_the_author_is_found_where_the_page_puts_it(tmp_path: Path, html: str, author: str) -> None:
    article = load_article(page(tmp_path, html))
    assert article.author == author
    assert article.summary == LEDE


def test_a_signature_under_the_story_gives_the_author(tmp_path: Path) -> None:
    html = shaped().replace(f"{REST}</article>", f"{REST}<p>— Anna Corbett</p></article>")
    assert load_article(page(tmp_path, html)).author == "Anna Corbett"


def test_a_title_that_puts_the_site_first_gives_the_headline(tmp_path: Path) -> None:
    html = (
        "<html><head><title>Harbour Watch :: Lifeboat crew rescue three from a sandbank</title>"
        '</head><body><div id="logo"><h1>Harbour Watch</h1></div><div id="main">'
        "<h2>Lifeboat crew rescue three from a sandbank</h2>"
        "<p><em>Posted by Dave Marsh on 1st March 2026</em></p>"
        f"<p>{LEDE}</p>{REST}</div></body></html>"
    )
    article = load_article(page(tmp_path, html))
    assert article.title == "Lifeboat crew rescue three from a sandbank"
    assert article.author == "Dave Marsh"
    assert article.summary == LEDE


@pytest.mark.parametrize(
    ("lang", "dateline", "date"),
    [
        ("en-GB", "Published 02/03/2026", dt.date(2026, 3, 2)),
        ("en-US", "Published 02/03/2026", dt.date(2026, 2, 3)),
        ("es", "Sevilla, 3 de marzo de 2026", dt.date(2026, 3, 3)),
    ],
)
def test_the_date_is_read_from_the_pages_own_dateline(
    tmp_path: Path, lang: str, dateline: str, date: dt.date
) -> None:
    html = shaped(top=f'<p class="date">{dateline}</p>', lang=lang)
    article = load_article(page(tmp_path, html))
    assert article.date == date and not article.date_from_mtime


def test_a_page_laid_out_in_a_table_gives_its_first_paragraph(tmp_path: Path) -> None:
    html = (
        "<html><head><title>Church bells ring again after 60 years</title></head><body>"
        '<table width="760"><tr><td><a href="/">Home</a> | <a href="/news.htm">News</a></td></tr>'
        '<tr><td><font size="5"><b>Church bells ring again after 60 years</b></font><br>'
        "Posted by Rev. Alan Birch on 1 March 2026<br><br>"
        f"{LEDE}<br><br>The six bells were taken down in 2023 and sent to a foundry, where two "
        "were recast and the rest retuned.<br><br></td></tr></table></body></html>"
    )
    article = load_article(page(tmp_path, html))
    assert article.title == "Church bells ring again after 60 years"
    assert article.summary == LEDE


def test_the_page_clues_are_read_within_bounds(tmp_path: Path) -> None:
    deep = "<div class='related'>" * 3000 + "By Jo Perry" + "</div>" * 3000
    many = "<p>By Someone Else, and then a long line of words that is no byline.</p>" * 20_000
    html = shaped(foot=deep + many)
    article = load_article(page(tmp_path, html))
    assert article.title == "Bus fares capped at £2 across the region"
    assert article.author is None


def test_a_section_left_after_the_headline_in_the_title_is_dropped(tmp_path: Path) -> None:
    html = (
        "<html><head><title>Bridge closure to last six months | News | Valley Herald</title>"
        '</head><body><div class="headline">Bridge closure to last six months</div>'
        f"<div>{LEDE}</div><div>A diversion of almost twelve miles will be in place.</div>"
        "</body></html>"
    )
    assert load_article(page(tmp_path, html)).title == "Bridge closure to last six months"


def test_a_standfirst_the_page_marks_as_such_is_not_the_summary(tmp_path: Path) -> None:
    html = shaped(top='<p class="gem-c-lead-paragraph">Councils will share £150 million.</p>')
    assert load_article(page(tmp_path, html)).summary == LEDE
    alone = shaped(top='<p class="standfirst">Councils will share £150 million.</p>')
    alone = alone.replace(f"<p>{LEDE}</p>{REST}", "")
    assert load_article(page(tmp_path, alone, "alone.html")).summary.startswith("Councils")
