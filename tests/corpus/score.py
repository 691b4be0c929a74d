"""Score ``mailer.articles.load_article`` on a folder of pages against its ``expected.json``.

``expected.json`` maps each page's file name to what a careful reader finds in it::

    {"title": ..., "first_paragraph": ..., "author": ... or null,
     "url": ... or null, "date": "YYYY-MM-DD" or null}

The scored fields are title, summary and author; url and date are extra figures, counted
only on pages whose expected value is not null. A page the loader refuses (``InputError``)
is wrong on every field.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from mailer.articles import load_article
from mailer.errors import MailerError

CORPUS = Path(__file__).resolve().parent
PAGE_SUFFIXES = (".txt", ".html")
FIELDS = ("title", "summary", "author")  # the figures the floor holds
EXTRA_FIELDS = ("url", "date")  # reported, on the pages that have them
MIN_SUMMARY_CHARS = 100
EXPECTED_KEYS = ("title", "first_paragraph", "author", "url", "date")


@dataclass(frozen=True, slots=True)
class Expected:
    """What a careful reader finds in one page."""

    title: str
    first_paragraph: str
    author: str | None
    url: str | None
    date: str | None


@dataclass(frozen=True, slots=True)
class Reading:
    """What the loader read from one page, and which fields it got right."""

    name: str
    expected: Expected
    got: dict[str, str | None]
    right: dict[str, bool]  # only the fields scored on this page
    seconds: float
    error: str | None = None

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix.lower()

    def want(self, name: str) -> str | None:
        if name == "summary":
            return self.expected.first_paragraph
        value: str | None = getattr(self.expected, name)
        return value


@dataclass(slots=True)
class Score:
    """Every page's reading, and the accuracy per field."""

    folder: Path
    readings: list[Reading] = field(default_factory=list)

    def counts(self, name: str, suffix: str | None = None) -> tuple[int, int]:
        """(right, scored) for one field, over all pages or those with one suffix."""
        scored = [
            r for r in self.readings if name in r.right and (suffix is None or r.suffix == suffix)
        ]
        return sum(r.right[name] for r in scored), len(scored)

    def accuracy(self, name: str, suffix: str | None = None) -> float:
        right, scored = self.counts(name, suffix)
        return right / scored if scored else 1.0

    def misses(self, names: tuple[str, ...] = FIELDS + EXTRA_FIELDS) -> list[str]:
        """One line per wrong field, ``file: field: expected … got …``; one line per page
        the loader refused, ``file: fields: refused: error``."""
        lines = []
        for reading in self.readings:
            wrong = [name for name in names if not reading.right.get(name, True)]
            if reading.error and wrong:
                lines.append(f"{reading.name}: {', '.join(wrong)}: refused: {reading.error}")
                continue
            for name in wrong:
                lines.append(
                    f"{reading.name}: {name}: expected {_show(reading.want(name))} "
                    f"got {_show(reading.got.get(name))}"
                )
        return lines


def normalise(text: str | None) -> str | None:
    """NFC, whitespace runs as one space, stripped; None stays None."""
    if text is None:
        return None
    return " ".join(unicodedata.normalize("NFC", text).split())


def title_right(got: str | None, want: str) -> bool:
    return (normalise(got) or "").casefold() == (normalise(want) or "").casefold() != ""


def summary_right(got: str | None, want: str) -> bool:
    """The summary is the expected first paragraph, or its start cut with an ellipsis."""
    summary, paragraph = normalise(got), normalise(want)
    if not summary or paragraph is None:
        return False
    summary = summary.removesuffix("…").rstrip()
    return paragraph.startswith(summary) and len(summary) >= min(len(paragraph), MIN_SUMMARY_CHARS)


def author_right(got: str | None, want: str | None) -> bool:
    return normalise(got) == normalise(want)


def load_expected(folder: Path) -> dict[str, Expected]:
    """Read ``expected.json``; every page in ``folder`` has an entry and every entry a page."""
    path = folder / "expected.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: must be an object of file name -> expected fields")
    expected = {}
    for name, entry in raw.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: {name}: must be an object")
        values = {key: entry.get(key) for key in EXPECTED_KEYS}
        for key, value in values.items():
            required = key in ("title", "first_paragraph")
            if not (isinstance(value, str) or (value is None and not required)):
                kind = "a string" if required else "a string or null"
                raise ValueError(f"{path}: {name}: '{key}' must be {kind}")
        expected[name] = Expected(
            title=entry["title"],
            first_paragraph=entry["first_paragraph"],
            author=entry.get("author"),
            url=entry.get("url"),
            date=entry.get("date"),
        )
    pages = {p.name for p in folder.iterdir() if p.suffix.lower() in PAGE_SUFFIXES}
    if pages != set(expected):
        raise ValueError(
            f"{path}: pages without an entry {sorted(pages - set(expected))}, "
            f"entries without a page {sorted(set(expected) - pages)}"
        )
    return dict(sorted(expected.items()))


def read_page(path: Path, expected: Expected, *, catch_all: bool = False) -> Reading:
    """Load one page and score it. A ``MailerError`` (the loader refusing the page) is a
    miss on every field; with ``catch_all`` any other exception is too (for the bench)."""
    got: dict[str, str | None] = dict.fromkeys(FIELDS + EXTRA_FIELDS)
    error = None
    start = time.perf_counter()
    try:
        article = load_article(path, zone=dt.UTC)
    except MailerError as exc:
        error = f"{type(exc).__name__}: {exc}"
    except Exception as exc:
        if not catch_all:
            raise
        error = f"crashed: {type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    right: dict[str, bool] = dict.fromkeys(FIELDS, False)
    if expected.url is not None:
        right["url"] = False
    if expected.date is not None:
        right["date"] = False
    if error is None:
        got = {
            "title": article.title,
            "summary": article.summary,
            "author": article.author,
            "url": article.url,
            "date": None if article.date_from_mtime else article.date.isoformat(),
        }
        right["title"] = title_right(got["title"], expected.title)
        right["summary"] = summary_right(got["summary"], expected.first_paragraph)
        right["author"] = author_right(got["author"], expected.author)
        if expected.url is not None:
            right["url"] = normalise(got["url"]) == normalise(expected.url)
        if expected.date is not None:
            right["date"] = got["date"] == expected.date
    return Reading(path.name, expected, got, right, seconds, error)


def score(folder: Path = CORPUS, *, catch_all: bool = False) -> Score:
    """Read and score every page in ``folder``."""
    result = Score(folder)
    for name, expected in load_expected(folder).items():
        result.readings.append(read_page(folder / name, expected, catch_all=catch_all))
    return result


def _show(value: str | None, limit: int = 90) -> str:
    if value is None:
        return "None"
    text = normalise(value) or ""
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")
