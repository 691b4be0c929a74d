"""The article loader: Markdown with front matter, and plain text as people really have it."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from mailer.articles import SUMMARY_CHARS, compile_clutter, cut_at_word, load_article, load_articles
from tests.cli import invoke
from tests.conftest import REPO

# A local paper's page, copied from the browser with its banner, navigation, caption, byline,
# share buttons and sponsor note.
HARBOUR_PAGE = """\
URL: https://example.com/news/harbour-wall
Date: 2026-11-20

THE COASTAL COURIER — Your town, your news, every day since 1902.

Home | News | Sport | What's on

Harbour wall repairs finish three weeks early

Photo: Crews lift the last granite block into place on Tuesday. (Coastal Courier)

By Jo Bell

Crews finished the repairs to the north harbour wall three weeks ahead of schedule,
the port authority said on Thursday, after a dry October let them work through most
weekends.

The wall was breached in two places during the February storms, flooding the fish
market and closing the slipway for the whole summer.

Send this to a friend
Share this
Facebook | Twitter | Email

This story is brought to you by Harbour Marine Supplies. Ropes, chandlery and friendly
advice on the quay since 1961.
"""

# The same kind of page copied from a site that puts every element on its own line with no
# blank lines, and a dateline instead of a date header.
BEAVER_PAGE = "\n".join(
    [
        "URL: https://example.com/news/beavers",
        "Skip to main content",
        "Menu",
        "The Valley Voice. Reporting from the upper valley since 1901.",
        "Home » Local » Environment",
        "Beavers return to the upper valley after four hundred years",
        "Image: A beaver at dusk near Oak Ford (Photo by K. Ames)",
        "By Kim Ames, Environment reporter",
        "Updated: Nov. 20, 2026 at 10:15 am GMT",
        "Beavers have been seen on the upper river for the first time in four hundred years, "
        "according to a survey published this week by the county wildlife trust.",
        "The trust says two families have built dams near Oak Ford and a third is probably "
        "living below the old mill.",
        "Share this article",
        "Facebook | Twitter | WhatsApp | Email",
        "About us: The Valley Voice is a not-for-profit newsroom owned by its readers.",
        "",
    ]
)

# A page whose "Key: value" header gives the title, and which still repeats the headline
# under the site banner.
LIBRARY_PAGE = """\
Title: Library late nights are here to stay
Date: November 18, 2026
URL: https://example.com/news/library-late
Author: Sam Ortiz

NORTHFIELD NEWS. Independent since 1887.

Library late nights are here to stay

Advertisement

Northfield library will stay open until nine on Thursdays for good, after a trial
that doubled the number of evening visitors.

Print this article
Copyright 2026 Northfield News Ltd. All rights reserved.
"""


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_bundled_cluttered_sample_picks_headline_and_first_paragraph() -> None:
    article = load_article(REPO / "articles" / "2026-11-25-bakery-apprentices.txt")
    assert article.title == "Old bakery trains a new generation of bakers"
    assert article.summary.startswith("Hartley's Bakery on Station Road has taken on four")
    assert article.author == "Priya Nair"
    assert article.date == dt.date(2026, 11, 25)
    for clutter in ("GAZETTE", "Home | News", "Photo:", "By Priya", "Send this", "Share this"):
        assert clutter not in article.body_text
    assert "About us" not in article.body_text and "Support our" not in article.body_text
    assert article.body_text.endswith("came from the town's job centre.")


def test_banner_sentence_ending_in_full_stop_is_not_the_title(tmp_path: Path) -> None:
    article = load_article(write(tmp_path, "harbour.txt", HARBOUR_PAGE))
    assert article.title == "Harbour wall repairs finish three weeks early"
    assert "COASTAL COURIER" not in article.body_text


def test_navigation_line_is_skipped(tmp_path: Path) -> None:
    page = HARBOUR_PAGE.replace(
        "Harbour wall repairs finish three weeks early\n",
        "Harbour wall repairs finish three weeks early\n\nHome | News\n",
    )
    article = load_article(write(tmp_path, "harbour.txt", page))
    assert article.title == "Harbour wall repairs finish three weeks early"
    assert "Home" not in article.body_text and "|" not in article.body_text
    assert article.summary.startswith("Crews finished the repairs")


def test_image_caption_is_dropped(tmp_path: Path) -> None:
    article = load_article(write(tmp_path, "harbour.txt", HARBOUR_PAGE))
    assert "Photo" not in article.body_text and "granite block" not in article.body_text
    assert "granite" not in article.summary


def test_byline_is_not_the_summary_and_names_the_author(tmp_path: Path) -> None:
    article = load_article(write(tmp_path, "harbour.txt", HARBOUR_PAGE))
    assert not article.summary.startswith("By ")
    assert "Jo Bell" not in article.body_text
    assert article.author == "Jo Bell"


@pytest.mark.parametrize(
    "share_line", ["Send this to a friend", "Share this", "Facebook | Twitter | Email"]
)
def test_share_widget_lines_are_dropped(tmp_path: Path, share_line: str) -> None:
    article = load_article(write(tmp_path, "harbour.txt", HARBOUR_PAGE))
    assert share_line not in article.body_text
    assert share_line not in article.body_html


def test_sponsor_paragraph_at_the_end_is_dropped_whole(tmp_path: Path) -> None:
    article = load_article(write(tmp_path, "harbour.txt", HARBOUR_PAGE))
    assert "Harbour Marine" not in article.body_text
    assert "chandlery" not in article.body_text  # the wrapped second line goes too
    assert article.body_text.endswith("closing the slipway for the whole summer.")


def test_first_real_paragraph_becomes_the_summary(tmp_path: Path) -> None:
    article = load_article(write(tmp_path, "harbour.txt", HARBOUR_PAGE))
    assert article.summary == (
        "Crews finished the repairs to the north harbour wall three weeks ahead of schedule, "
        "the port authority said on Thursday, after a dry October let them work through most "
        "weekends."
    )
    assert article.body_html.startswith("<p>Crews finished the repairs")
    assert article.body_html.count("<p>") == 2


def test_page_copied_without_blank_lines(tmp_path: Path) -> None:
    article = load_article(write(tmp_path, "beavers.txt", BEAVER_PAGE))
    assert article.title == "Beavers return to the upper valley after four hundred years"
    assert article.author == "Kim Ames"
    assert article.date == dt.date(2026, 11, 20)  # from the dateline
    assert not article.date_from_mtime
    assert article.summary.startswith("Beavers have been seen on the upper river")
    for clutter in ("Skip to", "Menu", "Valley Voice", "Home »", "Image:", "Share", "About us"):
        assert clutter not in article.body_text


def test_key_value_headers_at_the_top(tmp_path: Path) -> None:
    article = load_article(write(tmp_path, "library.txt", LIBRARY_PAGE))
    assert article.title == "Library late nights are here to stay"
    assert article.date == dt.date(2026, 11, 18)
    assert article.url == "https://example.com/news/library-late"
    assert article.author == "Sam Ortiz"
    # The banner and the repeated headline above the story are not the summary.
    assert article.summary.startswith("Northfield library will stay open until nine")
    assert "Advertisement" not in article.body_text
    assert "Print this" not in article.body_text and "Copyright" not in article.body_text


def test_header_only_file_with_plain_story(tmp_path: Path) -> None:
    page = (
        "Title: Allotment waiting list falls below a hundred\n"
        "Date: 2026-11-19\n"
        "URL: https://example.com/news/allotments\n"
        "\n"
        "By 2027 everyone on the list should have a plot, the council said.\n"
    )
    article = load_article(write(tmp_path, "allotments.txt", page))
    assert article.title == "Allotment waiting list falls below a hundred"
    # "By 2027 ..." is a sentence, not a byline.
    assert article.summary == "By 2027 everyone on the list should have a plot, the council said."
    assert article.author is None


def test_user_clutter_pattern_drops_a_custom_line(tmp_path: Path) -> None:
    page = HARBOUR_PAGE.replace(
        "By Jo Bell\n", "By Jo Bell\n\nListen to The Quayside, our podcast, every Friday.\n"
    )
    path = write(tmp_path, "harbour.txt", page)
    plain = load_article(path)
    assert plain.summary.startswith("Listen to The Quayside")

    cleaned = load_article(path, clutter=compile_clutter([r"listen to the quayside\b"]))
    assert cleaned.summary.startswith("Crews finished the repairs")
    assert "Quayside" not in cleaned.body_text

    (folder_article,) = load_articles(tmp_path, extra_clutter=[r"Listen to The Quayside"])
    assert folder_article.summary.startswith("Crews finished the repairs")


def test_mailer_clutter_patterns_setting_drops_a_custom_line(sample: Path) -> None:
    page = HARBOUR_PAGE.replace("Date: 2026-11-20", "Date: 2026-11-27").replace(
        "By Jo Bell\n", "By Jo Bell\n\nListen to The Quayside, our podcast, every Friday.\n"
    )
    write(sample / "articles", "2026-11-27-harbour.txt", page)
    args = ["digest", "--date", "2026-11-27", "--limit", "1"]
    digest_txt = sample / "previews" / "digest-2026-11-27" / "digest.txt"

    plain = invoke(*args)
    assert plain.exit_code == 0, plain.output
    assert "Listen to The Quayside" in digest_txt.read_text(encoding="utf-8")

    env = {"MAILER_CLUTTER_PATTERNS": '["listen to the quayside", "^Gift this article$"]'}
    cleaned = invoke(*args, env=env)
    assert cleaned.exit_code == 0, cleaned.output
    text = digest_txt.read_text(encoding="utf-8")
    assert "Quayside" not in text
    assert "Crews finished the repairs to the north harbour wall" in text


def test_no_date_falls_back_to_the_file_mtime(tmp_path: Path) -> None:
    page = HARBOUR_PAGE.replace("Date: 2026-11-20\n", "")
    path = write(tmp_path, "harbour.txt", page)
    when = dt.datetime(2026, 10, 3, 12, 0, tzinfo=dt.UTC)
    os.utime(path, (when.timestamp(), when.timestamp()))
    article = load_article(path)
    assert article.date == dt.date(2026, 10, 3)
    assert article.date_from_mtime is True
    # The modification time is an instant, not a day.
    assert (article.published, article.date_only) == (when, False)


def test_markdown_without_date_uses_mtime(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "note.md",
        "---\ntitle: A note\nurl: https://example.com/note\n---\n\nShort body.\n",
    )
    when = dt.datetime(2026, 9, 9, 9, 0, tzinfo=dt.UTC).timestamp()
    os.utime(path, (when, when))
    article = load_article(path)
    assert (article.date, article.date_from_mtime) == (dt.date(2026, 9, 9), True)


def test_markdown_front_matter_with_every_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "orchard.md",
        "---\n"
        "title: Community orchard plants its hundredth tree\n"
        "date: 2026-11-23\n"
        "url: https://example.com/news/orchard\n"
        "author: Ana Lima\n"
        "summary: Volunteers planted a Bramley on Saturday.\n"
        "tags: [gardens, volunteers]\n"
        "image: https://example.com/images/orchard.jpg\n"
        "---\n"
        "\n"
        "The orchard on **Mill Lane** now has a [hundred trees](https://example.com/trees).\n"
        "\n"
        "## Next year\n"
        "\n"
        "- pears\n"
        "- plums\n",
    )
    article = load_article(path)
    assert article.title == "Community orchard plants its hundredth tree"
    assert article.date == dt.date(2026, 11, 23) and not article.date_from_mtime
    assert article.date_only and article.published == dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    assert article.url == "https://example.com/news/orchard"
    assert article.author == "Ana Lima"
    assert article.summary == "Volunteers planted a Bramley on Saturday."
    assert article.tags == ("gardens", "volunteers")
    assert article.image == "https://example.com/images/orchard.jpg"
    assert "<strong>Mill Lane</strong>" in article.body_html
    assert '<a href="https://example.com/trees">hundred trees</a>' in article.body_html
    assert "<h2>Next year</h2>" in article.body_html
    assert "<li>pears</li>" in article.body_html


def test_markdown_summary_is_first_paragraph_cut_at_a_word(tmp_path: Path) -> None:
    words = " ".join(f"word{i}" for i in range(120))
    path = write(
        tmp_path,
        "long.md",
        "---\ntitle: Long\ndate: 2026-11-23\nurl: https://example.com/long\n---\n\n"
        f"# Heading first\n\nThe **first** paragraph {words}.\n\nSecond paragraph.\n",
    )
    article = load_article(path)
    assert article.summary.endswith("…")
    assert len(article.summary) <= SUMMARY_CHARS
    kept = article.summary.removesuffix("…")
    full = f"The first paragraph {words}."
    assert full.startswith(kept)
    assert full[len(kept)] == " "  # cut between words, not inside one
    assert "Second" not in article.summary and "Heading" not in article.summary


def test_markdown_raw_html_is_not_passed_through(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "x.md",
        "---\ntitle: X\ndate: 2026-11-23\nurl: https://example.com/x\n---\n\n"
        "Hello <script>alert(1)</script> there.\n",
    )
    article = load_article(path)
    assert "<script>" not in article.body_html
    assert "&lt;script&gt;" in article.body_html


def test_cut_at_word() -> None:
    assert cut_at_word("short text", 50) == "short text"
    assert cut_at_word("one two three four five", 12) == "one two…"
    assert cut_at_word("  spaced\n  out   words  ", 50) == "spaced out words"
    assert cut_at_word("x" * 40, 10) == "x" * 9 + "…"  # no space: cut hard
    assert cut_at_word("alpha beta, gamma", 13) == "alpha beta…"  # no dangling comma


def test_hidden_and_underscore_files_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, "_draft.md", "not an article")
    write(tmp_path / ".git", "x.txt", "not an article")
    write(tmp_path, "notes.rtf", "not an article")
    write(tmp_path, "harbour.txt", HARBOUR_PAGE)
    (article,) = load_articles(tmp_path)
    assert article.slug == "harbour"


def test_markdown_summary_skips_a_leading_image(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "photo-first.md",
        "---\ntitle: Photo first\ndate: 2026-11-23\nurl: https://example.com/p\n---\n\n"
        "![The new bridge](https://example.com/bridge.jpg)\n\n"
        "The new footbridge opened on Monday.\n",
    )
    article = load_article(path)
    assert article.summary == "The new footbridge opened on Monday."
    assert '<img src="https://example.com/bridge.jpg" alt="The new bridge"' in article.body_html


def test_windows_line_endings_and_a_byte_order_mark(tmp_path: Path) -> None:
    txt = tmp_path / "harbour.txt"
    txt.write_bytes(b"\xef\xbb\xbf" + HARBOUR_PAGE.replace("\n", "\r\n").encode("utf-8"))
    article = load_article(txt)
    assert article.title == "Harbour wall repairs finish three weeks early"
    assert article.url == "https://example.com/news/harbour-wall"
    assert "\r" not in article.body_text

    md = tmp_path / "crlf.md"
    md.write_bytes(
        b"\xef\xbb\xbf---\r\ntitle: Windows\r\ndate: 2026-11-23\r\n"
        b"url: https://example.com/w\r\n---\r\n\r\nSaved on Windows.\r\n"
    )
    assert load_article(md).summary == "Saved on Windows."
