"""The size budget: every message's HTML part stays under 100 KB (Gmail clips at about 102 KB
and hides the footer with the unsubscribe link). A forward of a long article carries its
opening and links to the whole; a digest too big to fit is refused at build time with the
flag that cuts it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mailer.errors import InputError
from mailer.render import (
    FORWARD_BODY_BUDGET,
    HTML_BUDGET,
    mail_body,
    make_environment,
    render_template_pair,
)
from tests.cli import invoke, refused
from tests.looks import (
    DATE,
    LONG,
    LONG_URL,
    SITE,
    digest_preview,
    forward_preview,
    paragraph,
    write_long_article,
)
from tests.mail import body, parsed


def html_part_sizes(emls: list[Path]) -> list[int]:
    return [len(body(parsed(path.read_bytes()), "html").encode("utf-8")) for path in emls]


def write_articles(folder: Path, count: int, *, paragraphs: int, url: bool) -> None:
    """``count`` articles in the week of the sample issue, each ``paragraphs`` long."""
    for i in range(count):
        day = 27 - i % 7
        text = "\n\n".join(paragraph(i + j) for j in range(paragraphs))
        link = f"url: https://example.com/news/story-{i}\n" if url else ""
        (folder / f"2026-11-{day}-story-{i}.md").write_text(
            f"---\ntitle: Story {i} from the town hall\ndate: 2026-11-{day}\n{link}"
            f"author: Ana Lima\n---\n\n{text}\n",
            encoding="utf-8",
        )


def test_a_twenty_article_digest_fits(sample: Path) -> None:
    for path in (sample / "articles").glob("*.*"):
        path.unlink()
    write_articles(sample / "articles", 20, paragraphs=4, url=True)
    preview = digest_preview(sample, env={"MAILER_PUBLIC_URL": SITE})
    sizes = html_part_sizes(preview.emls)
    assert len(sizes) == 5
    assert all(size < HTML_BUDGET for size in sizes), sizes
    html = body(parsed(preview.emls[0].read_bytes()), "html")
    assert html.count('class="item-title"') == 20
    assert "Unsubscribe from The Sample Weekly" in html  # the footer is all there


def test_a_digest_over_the_budget_is_refused_with_the_flag_that_cuts_it(sample: Path) -> None:
    # Without url or public site, every article's full text is in the digest.
    write_articles(sample / "articles", 20, paragraphs=30, url=False)
    result = invoke("digest", "--date", DATE)
    line = refused(result)
    assert re.fullmatch(
        r"Error: the digest of \d+ articles: the HTML part would be \d+ KB, over the 100 KB "
        r"budget \(Gmail clips longer messages and hides the unsubscribe link\)",
        line,
    ), line
    hint = re.search(
        r"Hint: cut it with --max-articles \(about --max-articles (\d+) fits\)", result.output
    )
    assert hint is not None, result.output
    assert not (sample / "previews").exists()  # refused before anything is written
    preview = digest_preview(sample, "--max-articles", hint.group(1))
    assert all(size < HTML_BUDGET for size in html_part_sizes(preview.emls))


def test_a_forward_of_a_200_kb_article_shows_its_opening_and_links_to_the_whole(
    sample: Path,
) -> None:
    source = write_long_article(sample / "articles", size=200_000)
    assert source.stat().st_size >= 200_000
    preview = forward_preview(sample, LONG)
    (eml,) = preview.emls
    msg = parsed(eml.read_bytes())
    html, text = body(msg, "html"), body(msg, "plain")
    assert len(html.encode("utf-8")) < HTML_BUDGET
    assert "Opening paragraph." in html and "Opening paragraph." in text
    assert "the last words of the whole article" not in html + text
    assert re.search(f'<a [^>]*href="{LONG_URL}"[^>]*>Read the whole article: ', html)
    assert f"\nRead the whole article: {LONG_URL}\n" in text
    assert "Read the original" not in html + text
    # It ends at the end of a block, never inside a paragraph, list or quote.
    article = html.split('class="article-body"', 1)[1].split("</div>", 1)[0]
    assert article.rstrip().endswith(("</p>", "</ul>", "</ol>", "</blockquote>", "</pre>"))


def test_a_long_article_without_url_links_to_its_archive_page_or_says_it_is_cut(
    sample: Path,
) -> None:
    write_long_article(sample / "articles", url=None)
    page = f"{SITE}/articles/{LONG}/"
    preview = forward_preview(sample, LONG, env={"MAILER_PUBLIC_URL": SITE})
    text = preview.text.read_text(encoding="utf-8")
    link = f'<a [^>]*href="{page}"[^>]*>Read the whole article: '
    assert re.search(link, preview.html.read_text(encoding="utf-8"))
    assert f"Read the whole article: {page}\n" in text
    preview = forward_preview(sample, LONG)
    html = preview.html.read_text(encoding="utf-8")
    assert "This is the opening of a longer article." in html
    assert len(html.encode("utf-8")) < HTML_BUDGET


def test_a_short_article_is_forwarded_whole() -> None:
    whole = "<p>One.</p>\n<h2>Two</h2>\n<p>Three.</p>\n"
    kept = mail_body(whole)
    assert not kept.cut
    assert str(kept.html) == "<p>One.</p>\n<h3>Two</h3>\n<p>Three.</p>\n"


def test_one_paragraph_larger_than_the_budget_keeps_its_opening_words() -> None:
    huge = "<p>" + "word " * 40_000 + "</p>"
    kept = mail_body(huge)
    assert kept.cut
    assert str(kept.html).startswith("<p>word word") and str(kept.html).endswith("&hellip;</p>")
    assert len(str(kept.html)) < FORWARD_BODY_BUDGET


def test_any_template_over_the_budget_is_refused(tmp_path: Path) -> None:
    (tmp_path / "huge.html.j2").write_text(
        "<html><body>{% for i in range(12000) %}<p>Line {{ i }}</p>{% endfor %}</body></html>",
        encoding="utf-8",
    )
    (tmp_path / "huge.txt.j2").write_text("text\n", encoding="utf-8")
    env = make_environment(tmp_path)
    with pytest.raises(InputError, match=r"^template huge\.html\.j2: the HTML part would be"):
        render_template_pair(env, "huge", fields=("email",), context={})
