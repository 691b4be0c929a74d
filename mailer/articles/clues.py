"""What a saved page says about its story in its own markup, beside trafilatura's reading: the
byline (an element marked as the author's, or a short one that reads as a byline), the first
dateline, the headings, and the short texts of side columns, comments and related stories
(whose bylines are other stories')."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from mailer.articles.fields import read_date
from mailer.articles.furniture import DATEISH_RE, furniture_kind, is_nav
from mailer.articles.names import (
    bio_name,
    byline_name,
    is_role,
    leading_name,
    name_with_role,
    signature_name,
)
from mailer.articles.words import words_of

SCAN_ELEMENTS = 5000  # a page's first elements looked through, at most
SHORT_CHARS = 160  # a longer element is no byline or dateline
SHORT_NODES = 30  # nor is one with more elements inside it
ELSEWHERE_TEXTS = 300  # short texts of side columns kept, at most
HEADINGS = 20
TITLE_SEPARATORS = (" | ", " – ", " — ", " - ", " · ", " • ", " :: ", " » ", ": ")
# "Ann Lee; Raj Patel" (trafilatura's list of authors) is written as the page's language does.
_AND = {"de": "und", "fr": "et", "es": "y", "it": "e", "pt": "e", "nl": "en"}
# Where a byline is not the story's: side columns, comments, related stories, cards.
_ELSEWHERE_RE = re.compile(r"comment|related|sidebar|widget|teaser|card|promo|recommend", re.I)
_ELSEWHERE_TAGS = frozenset({"aside", "nav"})
_SKIPPED_TAGS = frozenset({"script", "style", "head", "template", "noscript", "svg"})
_NUMERIC_DATE_RE = re.compile(r"\b\d{1,2}[./]\d{1,2}[./]\d{2,4}\b")
STANDFIRST_CHARS = 600
# The line under a headline that sums the story up: a standfirst, not its first paragraph.
_STANDFIRST_RE = re.compile(
    r"standfirst|excerpt|\bdek\b|\bdeck\b|lead-?paragraph|subtitle|subhead|strapline"
    r"|\bsapo\b|chapo|chapeau",
    re.I,
)
_AUTHOR_MARK_RE = re.compile(r"author|byline|writer|contributor", re.I)
_HEADING_TAGS = frozenset({"h1", "h2", "h3"})
# An element of lxml's tree (which has no type hints installed here).
_Node = Any


@dataclass
class Clues:
    """The page's byline name, first dateline, <title>, headings (h1-h3, in order) and the
    short texts found in side columns (case-folded)."""

    byline: str | None = None
    marked: str | None = None  # the name in an element marked as the author's
    dateline: str | None = None
    title: str | None = None
    headings: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)
    standfirsts: list[str] = field(default_factory=list)  # marked as such: not the story

    @property
    def author(self) -> str | None:
        return self.marked or self.byline


def clues_of(tree: _Node) -> Clues:
    """Walk the first ``SCAN_ELEMENTS`` elements of ``tree`` once, in document order."""
    clues = Clues()
    title = tree.find(".//title")
    if title is not None and title.text:
        clues.title = " ".join(title.text.split())
    # Children are taken one at a time from each open element, so that a huge or deep page
    # costs no more than the elements looked at.
    state = {"skipping": 0, "elsewhere": 0}
    stack: list[tuple[_Node, Iterator[_Node], bool]] = []
    element = tree
    for _ in range(SCAN_ELEMENTS):
        away = _enter(clues, element, state)
        stack.append((element, iter(element), away))
        element = None
        while stack and element is None:
            parent, children, parent_away = stack[-1]
            element = next(children, None)
            if element is None:
                stack.pop()
                state["skipping"] -= _tag(parent) in _SKIPPED_TAGS
                state["elsewhere"] -= parent_away
        if element is None:
            break
    return clues


def _tag(element: _Node) -> str:
    return element.tag if isinstance(element.tag, str) else ""


def _enter(clues: Clues, element: _Node, state: dict[str, int]) -> bool:
    """Note what one element says; whether it starts a side column (or the like)."""
    tag = _tag(element)
    mark = f"{element.get('class', '')} {element.get('id', '')}" if tag else ""
    away = tag in _ELSEWHERE_TAGS or bool(
        _ELSEWHERE_RE.search(mark) and not _AUTHOR_MARK_RE.search(mark)  # "author-card"
    )
    state["skipping"] += tag in _SKIPPED_TAGS
    state["elsewhere"] += away
    if _STANDFIRST_RE.search(mark) and len(clues.standfirsts) < HEADINGS:
        standfirst = _short_text(element, STANDFIRST_CHARS)
        if standfirst:
            clues.standfirsts.append(standfirst)
    text = _short_text(element) if tag and not state["skipping"] else None
    if text and state["elsewhere"]:
        if len(clues.elsewhere) < ELSEWHERE_TEXTS:
            clues.elsewhere.append(text.casefold())
    elif text:
        _note(clues, element, tag, text)
    return away


def _note(clues: Clues, element: _Node, tag: str, text: str) -> None:
    if tag in _HEADING_TAGS and len(clues.headings) < HEADINGS:
        clues.headings.append(text)
    marks = " ".join(str(element.get(k, "")) for k in ("rel", "itemprop", "class", "id"))
    if clues.marked is None and _AUTHOR_MARK_RE.search(marks):
        clues.marked = byline_name(text) or name_with_role(text) or leading_name(text, whole=True)
    if clues.byline is None:
        clues.byline = byline_name(text)
    if (
        clues.dateline is None
        and DATEISH_RE.search(text)
        and len(text.split()) <= 16
        and furniture_kind(text, words_of(text), ()) in ("dateline", "byline")
    ):
        clues.dateline = text


def _short_text(element: _Node, chars: int = SHORT_CHARS) -> str | None:
    """The element's text, white space joined, when it is short and has few elements inside;
    ``None`` otherwise (without reading all of a large element)."""
    parts: list[str] = []
    size = 0
    for n, node in enumerate(element.iter()):
        if n > SHORT_NODES:
            return None
        if isinstance(node.tag, str) and node.text and node.tag not in _SKIPPED_TAGS:
            parts.append(node.text)
            size += len(node.text)
        if node is not element and node.tail:
            parts.append(node.tail)
            size += len(node.tail)
        if size > 2 * chars:
            return None
    text = " ".join("".join(parts).split())
    return text if 0 < len(text) <= chars else None


def author_of(
    author: str | None, site: object, clues: Clues, tree: _Node, plain: str
) -> str | None:
    """trafilatura's author, less a leading "By" or "Interview by", its list of names joined
    as a reader would ("Ann Lee and Raj Patel"); the page's own byline instead when there is
    none, or when it is the site's name or is found only beside the story (a related story's
    byline)."""
    if author is not None:
        folded = author.casefold()
        site_name = site.casefold().strip() if isinstance(site, str) else ""
        if folded == site_name or (
            clues.author is not None
            and clues.author.casefold() not in folded
            and any(folded in text for text in clues.elsewhere)
        ):
            author = None
    if author is None:
        return clues.author or _signed(plain)
    names: list[str] = []
    for part in author.split(";"):
        name = byline_name(part.strip()) or leading_name(part.strip(), whole=True)
        if name is None and clues.author is not None:
            return clues.author  # no name: "Fran Whitely Fran writes about"
        name = name or part.strip()
        if name and not is_role(name) and name not in names:  # "Luke Pascoe; Transport Reporter"
            names.append(name)
    if len(names) > 1:
        language = str(tree.get("lang", "")).lower()[:2]
        author = ", ".join(names[:-1]) + f" {_AND.get(language, 'and')} " + names[-1]
    else:
        author = names[0] if names else author
    return author


def _signed(plain: str) -> str | None:
    """The name in a signature or a note on the writer under the story."""
    for block in plain.rsplit("\n\n", 2)[-2:][::-1]:
        name = signature_name(block) or bio_name(block)
        if name and not is_nav(name):
            return name
    return None


def date_of(date: str | None, clues: Clues, tree: _Node) -> str | None:
    """trafilatura's date; the page's own dateline instead when there is none, when it is
    only a year's first day (a year found somewhere, not a date), or when it read
    ``02/03/2026`` the other way round from the page's language (en-US: month first)."""
    if clues.dateline is None:
        return date
    lang = str(tree.get("lang", "en")).lower()
    written = read_date(clues.dateline, lang[:2] or "en", day_first=lang not in ("en", "en-us"))
    if written is None:
        return date
    written = written[:10]
    if date is None or (date.endswith("-01-01") and written[:4] == date[:4]):
        return written
    swapped = f"{written[:4]}-{written[8:10]}-{written[5:7]}"
    if "-" in lang and date[:10] == swapped and _NUMERIC_DATE_RE.search(clues.dateline):
        return written  # a language with its region says which way round
    return date


def headline_beside_site(title: str | None, clues: Clues) -> str | None:
    """The other part of ``Site :: Headline`` in <title> when trafilatura took the site's
    name (often the logo's <h1>) for the title and the other part is a heading of the page."""
    if title is None:
        return None
    title = _without_section(title)
    if clues.title is None or title.casefold() == clues.title.casefold():
        return title
    headings = {heading.casefold() for heading in clues.headings}
    for separator in TITLE_SEPARATORS:
        parts = [part.strip() for part in clues.title.split(separator)]
        if len(parts) != 2 or title.casefold() not in (p.casefold() for p in parts):
            continue
        other = parts[1] if parts[0].casefold() == title.casefold() else parts[0]
        words = len(other.split())
        if words >= 4 and words > len(title.split()) and other.casefold() in headings:
            return other
    return title


def _without_section(title: str) -> str:
    """``Headline | News``: less a section's name the site left after the headline."""
    for _ in range(3):
        for separator in (" | ", " - ", " – ", " — ", " · ", " • ", " » "):
            head, found, tail = title.rpartition(separator)
            if found and len(tail.split()) <= 2 and len(head.split()) >= 3 and is_nav(tail):
                title = head.strip()
                break
        else:
            break
    return title
