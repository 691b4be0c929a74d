"""The article corpus (tests/corpus): reading accuracy may only go up, and the corpus keeps
its shape (pages as people scrape and save them, in both formats and several languages)."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import justext
import lxml.html
import pytest

from tests.corpus.score import CORPUS, FIELDS, PAGE_SUFFIXES, load_expected, normalise, score

FLOOR = CORPUS / "floor.json"
LANGUAGES = {"en": "English", "fr": "French", "de": "German", "es": "Spanish"}
# The header lines the .txt loader accepts at the top: scraped pages never have them.
HEADER_LINE = re.compile(r"(?i)^\s*(title|date|url|author|summary|tags|image|slug)\s*:")


def pages() -> list[Path]:
    return sorted(p for p in CORPUS.iterdir() if p.suffix.lower() in PAGE_SUFFIXES)


def language(text: str, stoplists: dict[str, frozenset[str]]) -> str:
    """The corpus language whose stopwords cover most of ``text``'s words."""
    words = [w.lower() for w in re.findall(r"\w+", text)]
    covered = {code: sum(w in stop for w in words) for code, stop in stoplists.items()}
    return max(covered, key=lambda code: covered[code])


@pytest.mark.slow  # reads every page: about 1-3 s, most of it the loaders' first imports
def test_accuracy_is_at_least_the_floor() -> None:
    floors = json.loads(FLOOR.read_text(encoding="utf-8"))
    result = score()
    low = []
    for name in FIELDS:
        right, scored = result.counts(name)
        if result.accuracy(name) + 1e-9 < floors[name]:
            low.append(f"{name} {right}/{scored} = {right / scored:.3f} < floor {floors[name]}")
    misses = "\n".join(result.misses(FIELDS))
    assert not low, (
        "reading accuracy fell below tests/corpus/floor.json: "
        + "; ".join(low)
        + f"\nmisses (file: field: expected vs got):\n{misses}"
    )


def test_floor_names_every_scored_field() -> None:
    floors = json.loads(FLOOR.read_text(encoding="utf-8"))
    assert set(floors) == set(FIELDS)
    assert all(0 <= value <= 1 for value in floors.values())


def test_corpus_has_30_pages_half_txt_half_html() -> None:
    found = pages()
    txt = [p for p in found if p.suffix == ".txt"]
    saved = [p for p in found if p.suffix == ".html"]
    assert len(found) >= 30
    assert abs(len(txt) - len(saved)) <= 2, (len(txt), len(saved))


@pytest.mark.parametrize("suffix", PAGE_SUFFIXES)
def test_corpus_has_pages_in_french_german_and_spanish(suffix: str) -> None:
    expected = load_expected(CORPUS)
    stoplists = {
        code: frozenset(w.lower() for w in justext.get_stoplist(name))
        for code, name in LANGUAGES.items()
    }
    found = {
        language(entry.first_paragraph, stoplists)
        for name, entry in expected.items()
        if name.endswith(suffix)
    }
    assert {"fr", "de", "es"} <= found, found


def test_every_page_has_an_expected_reading() -> None:
    expected = load_expected(CORPUS)  # raises on a page without an entry, or the reverse
    for name, entry in expected.items():
        assert normalise(entry.title), name
        assert normalise(entry.first_paragraph), name
        assert entry.author is None or not entry.author.lower().startswith("by "), name
        assert entry.date is None or re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry.date), name


def test_pages_are_as_people_have_them() -> None:
    """No .txt starts with header lines; no .html carries a url: line; a page's expected
    url is its canonical link or og:url; its expected title and lede are really in it."""
    expected = load_expected(CORPUS)
    for path in pages():
        text = path.read_text(encoding="utf-8")
        entry = expected[path.name]
        if path.suffix == ".txt":
            first = next(line for line in text.splitlines() if line.strip())
            assert not HEADER_LINE.match(first), f"{path.name}: starts with a header line"
            assert entry.url is None, f"{path.name}: a scraped .txt has no canonical url"
        else:
            assert text.lstrip().startswith("<"), f"{path.name}: not a saved web page"
            assert not re.search(r"(?im)^\s*url\s*:", text), f"{path.name}: has a url: line"
            if entry.url is not None:
                page = lxml.html.fromstring(text)
                links = page.xpath("//link[@rel='canonical']/@href")
                links += page.xpath("//meta[@property='og:url']/@content")
                assert entry.url in links, f"{path.name}: url is not its canonical link or og:url"
        plain = text if path.suffix == ".txt" else html.unescape(re.sub(r"<[^>]+>", " ", text))
        words = normalise(plain) or ""
        assert (normalise(entry.title) or "").casefold() in words.casefold(), path.name
        lede = normalise(entry.first_paragraph) or ""
        assert lede in words, f"{path.name}: lede not in the page"
