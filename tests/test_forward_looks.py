"""How messages look where a browser test cannot see: the forward's article body styled in
the HTML and readable in the text part, headings demoted, dark mode and Outlook markup kept
through premailer, type styles on the content cells, the preheader's spacer, and the text
part's dateline, hyphens and signature separator."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest

from mailer.errors import InputError
from mailer.models import Article, Digest
from mailer.pipeline import check_media_reachable, preview_media
from mailer.render import SiteLinks, demote_headings, make_environment, plain_text, render_digest
from mailer.settings import load_settings
from tests.conftest import REPO
from tests.looks import RIVER, SITE, digest_preview, forward_preview
from tests.mail import body, parsed


def forward_parts(sample: Path) -> tuple[str, str]:
    (eml,) = forward_preview(sample, RIVER).emls
    msg = parsed(eml.read_bytes())
    return body(msg, "html"), body(msg, "plain")


def style_of(html: str, pattern: str) -> str:
    """The inline style of the first tag matching ``pattern`` (premailer put it there)."""
    found = re.search(pattern + r"""[^>]*style=(["'])(.*?)\1""", html)
    assert found is not None, pattern
    return found.group(2)


def px(style: str, name: str) -> float:
    found = re.search(rf"(?:^|;)\s*{name}:\s*(\d+(?:\.\d+)?)px", style)
    assert found is not None, (name, style)
    return float(found.group(1))


def test_the_forward_body_is_styled_and_its_headings_are_below_the_title(sample: Path) -> None:
    html, _ = forward_parts(sample)
    title = px(style_of(html, r'<h2 class="item-title"'), "font-size")
    article = html.split('class="article-body"', 1)[1].split("</div>", 1)[0]
    assert "<h1" not in article and "<h2" not in article
    heading = style_of(article, r"<h3")
    assert px(heading, "font-size") < title
    assert "font-family" in heading and "color" in heading
    assert "padding:0 0 0 24px" in style_of(article, r"<ul")
    assert "margin:0 0 6px 0" in style_of(article, r"<li")
    assert re.search(r"<h3[^>]*>What changed</h3>", article)


def test_images_pre_and_tables_in_a_forward_are_constrained(sample: Path) -> None:
    article = sample / "articles" / f"{RIVER}.md"
    article.write_text(
        article.read_text(encoding="utf-8")
        + "\n![A map of the path](https://example.com/map.png)\n\n"
        + "> A quote from the opening day.\n\n"
        + "```\n"
        + "x = 1  # a very long line of code " * 10
        + "\n```\n",
        encoding="utf-8",
    )
    html, text = forward_parts(sample)
    image = style_of(html, r'<img src="https://example.com/map.png"')
    assert "max-width:100%" in image and "height:auto" in image
    assert 'alt="A map of the path"' in html
    pre = style_of(html, r"<pre")
    assert "white-space:pre-wrap" in pre and "overflow-wrap:anywhere" in pre
    assert "border-left:4px solid" in style_of(html, r"<blockquote")
    assert "table-layout:fixed" in style_of(html, r'<table role="presentation" class="container"')
    assert "[Image: A map of the path]" in text
    assert "> A quote from the opening day." in text
    assert "    x = 1  # a very long line of code" in text  # code kept as it is


def test_the_forward_text_part_is_readable_plain_text(sample: Path) -> None:
    _, text = forward_parts(sample)
    assert "##" not in text and "**" not in text
    assert "What changed\n============\n" in text
    assert "- A new lit section under the rail bridge.\n" in text
    for line in text.splitlines():
        assert len(line) <= 78 or " " not in line.strip(), line


def test_links_in_the_text_part_read_as_text_then_url() -> None:
    html = (
        '<p>See <a href="https://example.com/minutes">the minutes</a>, or '
        '<a href="https://example.com/x">https://example.com/x</a>, or '
        '<a href="mailto:desk@example.com">desk@example.com</a> and <a href="#top">top</a>.</p>'
    )
    assert plain_text(html) == (
        "See the minutes <https://example.com/minutes>, or <https://example.com/x>, or\n"
        "<desk@example.com> and top."
    )


def test_plain_text_lists_quotes_and_breaks() -> None:
    html = (
        "<ol>\n<li>First, with a long enough line to wrap somewhere past the seventy-eighth "
        "column of text.</li>\n<li>Second\n<ul>\n<li>nested</li>\n</ul>\n</li>\n</ol>\n"
        "<blockquote>\n<p>Quoted words.</p>\n</blockquote>\n<p>One<br>\nTwo</p>\n<hr>\n"
        "<h3>Later</h3>\n<p>End.</p>"
    )
    assert plain_text(html) == (
        "1. First, with a long enough line to wrap somewhere past the seventy-eighth\n"
        "   column of text.\n"
        "2. Second\n"
        "   - nested\n"
        "\n"
        "> Quoted words.\n"
        "\n"
        "One\n"
        "Two\n"
        "\n"
        "* * *\n"
        "\n"
        "Later\n"
        "=====\n"
        "\n"
        "End."
    )


def test_hyphenated_words_are_never_split_across_lines() -> None:
    words = "a robot whose maze-solving skills beat twenty-two other well-known schools " * 3
    for line in plain_text(f"<p>{words}</p>", width=30).splitlines():
        assert not line.endswith("-"), line


def test_headings_are_demoted_below_the_title_in_order() -> None:
    assert demote_headings("<h2>A</h2><h3>B</h3>") == "<h3>A</h3><h4>B</h4>"
    assert demote_headings("<h1>A</h1><h2>B</h2><h6>C</h6>") == "<h3>A</h3><h4>B</h4><h6>C</h6>"
    assert demote_headings("<h4>A</h4>") == "<h4>A</h4>"  # already below the title
    assert demote_headings("<p>h2 is fine</p>") == "<p>h2 is fine</p>"


def test_dark_mode_and_outlook_survive_inlining(sample: Path) -> None:
    preview = digest_preview(sample)
    html = body(parsed(preview.emls[0].read_bytes()), "html")
    assert '<meta name="color-scheme" content="light dark">' in html
    assert '<meta name="supported-color-schemes" content="light dark">' in html
    styles = "".join(re.findall(r"<style>(.*?)</style>", html, re.DOTALL))
    assert "@media (prefers-color-scheme: dark)" in styles
    assert re.search(r":root\s*\{\s*color-scheme:\s*light dark", styles)
    assert '<!--[if mso]><table role="presentation" align="center" width="600"' in html
    assert "<![endif]-->" in html
    # Type styles on every content cell, not only on <body> (which webmail replaces).
    for cell in ("masthead", "intro", "item", "footer"):
        style = style_of(html, rf'<td class="{cell}"')
        assert "font-family" in style and "color:" in style and "font-size" in style, cell
    assert re.search(r'<h1 class="brand"[^>]*>The Sample Weekly</h1>', html)


def test_the_preheader_has_a_spacer_and_the_text_part_its_separators(sample: Path) -> None:
    preview = digest_preview(sample, env={"MAILER_PUBLIC_URL": SITE})
    msg = parsed(preview.emls[0].read_bytes())
    html, text = body(msg, "html"), body(msg, "plain")
    preheader = re.search(r'<div class="preheader"[^>]*>(.*?)</div>', html, re.DOTALL)
    assert preheader is not None
    assert preheader.group(1).count("\u034f\u200c\u00a0") >= 30  # the spacer
    assert "Week of November 27, 2026\n\nHi Alice Martin," in text  # a blank line
    assert "\n-- \n" in text  # the standard signature separator, with its space
    assert "maze-solving" in text  # never "maze-" at a line's end
    assert not [line for line in text.splitlines() if re.search(r"\w-$", line)]


# --- images ---------------------------------------------------------------------------------


def market_hall(image: str) -> Article:
    source = REPO / "articles" / "2026-11-22-market-hall.md"
    day = dt.date(2026, 11, 22)
    return Article(
        slug="market-hall",
        title="Market hall traders vote to open on Sundays",
        date=day,
        url="https://example.com/news/market-sundays",
        summary="Traders voted.",
        body_html="<p>Traders voted.</p>",
        body_text="Traders voted.",
        source=source,
        published=dt.datetime(2026, 11, 22, tzinfo=dt.UTC),
        image=image,
    )


def hero(html: str) -> tuple[str, str, str, str]:
    found = re.search(
        r'<img class="hero" src="([^"]*)" alt="([^"]*)" width="(\d+)" height="(\d+)"', html
    )
    assert found is not None
    src, alt, width, height = found.groups()
    return src, alt, width, height


def rendered_hero(article: Article, public_url: str | None) -> tuple[str, str, str, str]:
    digest = Digest("The Sample Weekly", dt.date(2026, 11, 22), "Subject", (article,))
    newsletter = {"name": "The Sample Weekly", "links": SiteLinks(public_url)}
    rendered = render_digest(digest, env=make_environment(), newsletter=newsletter)
    return hero("".join(rendered.html.literals))


def test_the_hero_has_alt_text_a_size_and_no_empty_link() -> None:
    src, alt, width, height = rendered_hero(market_hall("https://example.com/m.jpg"), None)
    assert (src, alt, width, height) == (
        "https://example.com/m.jpg",
        "Market hall traders vote to open on Sundays",  # no image_alt yet: the title
        "536",
        "302",
    )


def test_a_local_image_is_beside_a_previews_html_or_on_the_public_site(tmp_path: Path) -> None:
    article = market_hall("images/market-hall.jpg")
    assert rendered_hero(article, None)[0] == "media/images/market-hall.jpg"
    assert rendered_hero(article, SITE)[0] == f"{SITE}/media/images/market-hall.jpg"
    media = preview_media([article], REPO / "articles")
    sample_image = REPO / "articles" / "images" / "market-hall.jpg"
    assert media == {"media/images/market-hall.jpg": sample_image.read_bytes()}
    assert sample_image.read_bytes()[:3] == b"\xff\xd8\xff"  # a real JPEG
    settings = load_settings()
    with pytest.raises(InputError, match="is a local file, which readers cannot load"):
        check_media_reachable([article], settings)
    spaced = market_hall("images/../images/a b.jpg")
    assert SiteLinks().image(spaced) == "media/images/images/a%20b.jpg"  # never climbs
    with pytest.raises(InputError, match="is not the path of an image file"):
        preview_media([spaced], tmp_path)
