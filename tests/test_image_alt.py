"""An article's image has words for readers who cannot see it: ``image_alt:`` (or
``caption:``) in the front matter, else the caption line of a scraped page, else the title."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from mailer.archive import archived_article
from mailer.articles import load_article
from tests.cli import invoke

STORY = (
    "The river path reopened on Friday after two years of repairs, the council said.\n\n"
    "Walkers and cyclists can use the whole four-kilometre route again from today.\n"
)


def write(folder: Path, name: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_front_matter_image_alt_and_caption(tmp_path: Path) -> None:
    head = "---\ntitle: The river path reopens\ndate: 2026-11-27\n"
    head += "image: https://example.com/river.jpg\n"
    alt = write(
        tmp_path, "a.md", head + "image_alt: A gravel path beside a wide river\n---\n" + STORY
    )
    cap = write(tmp_path, "b.md", head + "caption: Cyclists on the new bridge\n---\n" + STORY)
    none = write(tmp_path, "c.md", head + "---\n" + STORY)
    assert load_article(alt, zone=dt.UTC).image_alt == "A gravel path beside a wide river"
    assert load_article(cap, zone=dt.UTC).image_alt == "Cyclists on the new bridge"
    assert load_article(none, zone=dt.UTC).image_alt is None


def test_a_scraped_caption_line_becomes_the_alt_text_without_its_credit(tmp_path: Path) -> None:
    page = write(
        tmp_path,
        "river.txt",
        "Image: https://example.com/river.jpg\n\n"
        "Skip to main content\n\n"
        "River path reopens after two years of repairs\n\n"
        "By Maya Okafor\n\n"
        "Walkers on the reopened path on Friday morning. Picture: Sam Hill\n\n" + STORY,
    )
    article = load_article(page, zone=dt.UTC)
    assert article.title == "River path reopens after two years of repairs"
    assert article.image_alt == "Walkers on the reopened path on Friday morning."
    assert archived_article(article).image_alt == article.image_alt


def test_the_digest_shows_the_alt_text(sample: Path) -> None:
    target = sample / "articles" / "2026-11-22-market-hall.md"
    lines = target.read_text(encoding="utf-8").splitlines(keepends=True)
    (at,) = [n for n, line in enumerate(lines) if line.startswith("image_alt:")]
    lines[at] = "image_alt: Stalls under the iron roof of the hall\n"
    target.write_text("".join(lines), encoding="utf-8")
    result = invoke("digest", "--date", "2026-11-27")
    assert result.exit_code == 0, result.output
    (html,) = (sample / "previews").glob("*/digest.html")
    assert 'alt="Stalls under the iron roof of the hall"' in html.read_text(encoding="utf-8")


def test_an_overlong_or_broken_alt_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "x.md",
        "---\ntitle: T\nimage_alt: " + "word " * 200 + "\n---\n" + STORY,
    )
    result = invoke("digest", "--articles", str(tmp_path), "--date", "2026-11-27")
    assert result.exit_code == 2
    assert str(path) in result.output and "image_alt" in result.output
