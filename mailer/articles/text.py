"""Plain-text articles copied from web pages: header lines, then the story without clutter."""

from __future__ import annotations

import html
import itertools
import re
from collections.abc import Sequence
from pathlib import Path

from mailer.articles.fields import MAX_TITLE_CHARS, Meta, Parts, parse_date_text
from mailer.errors import InputError

# Lines that scraped pages carry around a story. Each pattern is matched, case-insensitively,
# against the start of a stripped line; a paragraph whose first line matches is dropped whole.
# Users add their own with MAILER_CLUTTER_PATTERNS (a JSON list of regexes).
DEFAULT_CLUTTER_PATTERNS: tuple[str, ...] = (
    # share widgets
    r"(send|e-?mail|forward) (this|it) to a friend\b",
    r"share (this|on|via)\b",
    r"share$",
    r"(tweet|pin|print|email|e-mail|save|bookmark)( this)?( (article|story|page|post))?$",
    r"(facebook|twitter|x|linkedin|whatsapp|reddit|email|print|copy link)"
    r"(\s*[|•·/,]\s*(facebook|twitter|x|linkedin|whatsapp|reddit|email|print|copy link))+$",
    r"follow us( on)?\b",
    r"(menu|main menu|open menu|close|search|home|log ?in|sign ?in|sign ?up|register"
    r"|toggle navigation|navigation|back to top|listen to this (article|story))$",
    r"(story continues|continue reading|article continues)( below)?\.?$",
    r"(click here to )?subscribe (now|today|to our newsletter)\b",
    r"sign up for our( free)? newsletter\b",
    r"(skip to (main )?content|advertisement|sponsored( content)?|related (stories|articles)"
    r"|read (more|next)|most (read|popular)|you may also like|comments?)\s*:?$",
    # image captions and credits
    r"(photo|image|picture|pictured|caption|credit|illustration|graphic)s?\s*(:|by\b|credit\b)",
    r"\(?(photo|image|illustration)\s*(:|by\b|courtesy\b)",
    r"[^.]{0,160}\b(getty images|ap photo|reuters|afp|shutterstock|istock)\)?\.?$",
    # sponsor, about-us and copyright trailers
    r"(this (article|story|newsletter|post) (is|was) )?(sponsored|brought to you|supported) by\b",
    r"about (us|the author|the publisher)\b",
    r"support (our|independent|local) journalism\b",
    r"(copyright|©|\(c\))\s",
    r"all rights reserved\b",
)

_HEADER_KEYS = {"title", "date", "url", "author", "summary", "tags", "image"}
_HEADER_RE = re.compile(r"^([A-Za-z][A-Za-z_-]*):\s*(.*)$")
_NAV_RE = re.compile(r"\S\s+[|•·»]\s+\S")
_NAV_SPLIT_RE = re.compile(r"\s+[|•·»>/]\s+")
# "By Priya Nair", "By Kim Ames, Environment reporter", "BY JO BELL | 5 May": a name, not
# "By 2030, the town..." or "By the way...".
_BYLINE_RE = re.compile(
    r"(?i:by|written by|posted by|words by)\s+"
    r"((?:[A-Z][\w.'’-]*)(?:\s+(?:[A-Z][\w.'’-]*|de|van|von|der|da|di|le|la|and|&))*)"
    r"\s*(?:$|[,|•·–—(-].{0,80}$)"
)
# "Published 19 November 2026", "Updated: Nov. 20, 2026 at 10:15 am GMT", "2026-11-20".
_DATELINE_RE = re.compile(
    r"^(?:(?:last )?(?:published|updated|posted)(?: on)?\s*:?\s*)?(?:[a-z]+day,?\s+)?"
    r"(\d{4}-\d{2}-\d{2}|[a-z]+\.? \d{1,2},? \d{4}|\d{1,2} [a-z]+\.? \d{4})"
    r"(?:\s*(?:at|,|T|·|\||-)?\s*\d{1,2}[:.]\d{2}(?:\s*[ap]\.?m\.?)?(?:\s*[a-z]{2,5})?)?\s*$",
    re.IGNORECASE,
)


def compile_clutter(extra: Sequence[str] = ()) -> list[re.Pattern[str]]:
    return [re.compile(p, re.IGNORECASE) for p in (*DEFAULT_CLUTTER_PATTERNS, *extra)]


def load_txt(path: Path, text: str, clutter: Sequence[re.Pattern[str]]) -> tuple[Meta, Parts]:
    lines = text.split("\n")
    meta = Meta(path)
    start = 0
    # Optional "Key: value" header lines (title, date, url, ...) at the very top.
    while start < len(lines):
        match = _HEADER_RE.match(lines[start].strip())
        if not match or match.group(1).lower() not in _HEADER_KEYS:
            break
        key, value = match.group(1).lower(), match.group(2).strip()
        if key in meta.lines:
            raise InputError(f"{path}:{start + 1}: '{key}' is given twice")
        meta.lines[key] = start + 1
        if value:
            meta.values[key] = value
        start += 1
    items = [
        item
        for block in _blocks(lines[start:])
        for item in _split_block(block, clutter)
        if not (len(item) == 1 and _is_nav(item[0]))
    ]

    title = meta.text("title")
    if title is not None:
        # A page copied whole repeats its headline under the header: the story starts there.
        wanted = title.casefold()
        for i, item in enumerate(items):
            if len(item) == 1 and item[0].casefold() == wanted:
                items = items[i + 1 :]
                break
    else:
        headline_at = _find_headline(items)
        if headline_at is not None:
            meta.values["title"] = items[headline_at][0]
            items = items[headline_at + 1 :]
    story = []
    for item in items:
        if len(item) == 1 and _is_byline_or_dateline(item[0]):
            _byline_facts(item[0], meta)
        else:
            story.append(item)
    paragraphs = [" ".join(line.strip() for line in b) for b in story]
    first_para = paragraphs[0] if paragraphs else ""
    body_html = "".join(f"<p>{html.escape(p, quote=False)}</p>\n" for p in paragraphs)
    return meta, Parts(body_html, "\n\n".join(paragraphs), first_para)


def _blocks(lines: Sequence[str]) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in lines:
        stripped = line.strip()
        if stripped:
            current.append(stripped)
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _split_block(block: list[str], clutter: Sequence[re.Pattern[str]]) -> list[list[str]]:
    """Split a block (lines between blank lines) into items, without clutter.

    A hard-wrapped paragraph stays whole, and is dropped whole when its first line is clutter.
    Text copied from a page without blank lines has one item per line (banner, headline,
    byline, share buttons...). When a block holds such lines, every clutter, navigation,
    byline or dateline line is an item of its own, and the other lines join only where a line
    was wrapped (the next word would not have fitted on it).
    """
    wrapped = _is_wrapped(block)
    if _is_clutter(block[0], clutter) and (len(block) == 1 or wrapped):
        return []
    markers = [
        _is_clutter(ln, clutter) or _is_nav(ln) or _is_byline_or_dateline(ln) for ln in block
    ]
    if not any(markers):
        # Prose, perhaps raggedly wrapped: whole, except a headline line standing on top.
        if len(block) > 1 and not wrapped and _looks_like_headline(block[:1]):
            return [block[:1], block[1:]]
        return [block]
    if wrapped and not any(markers[1:]):
        return [block]
    width = max(
        (len(ln) for ln, marker in zip(block, markers, strict=True) if not marker), default=0
    )
    items: list[list[str]] = []
    current: list[str] = []
    for i, line in enumerate(block):
        if markers[i]:
            if current:
                items.append(current)
                current = []
            if not _is_clutter(line, clutter):
                items.append([line])
            continue
        current.append(line)
        following = block[i + 1] if i + 1 < len(block) else ""
        if not following or markers[i + 1] or not _is_full(line, following, width):
            items.append(current)
            current = []
    return items


def _is_full(line: str, following: str, width: int) -> bool:
    """Whether ``line`` was wrapped: the next line's first word would not have fitted on it."""
    return len(line) + 1 + len(following.split()[0]) > width


def _is_wrapped(block: Sequence[str]) -> bool:
    width = max(len(ln) for ln in block)
    return len(block) > 1 and all(
        _is_full(line, following, width) for line, following in itertools.pairwise(block)
    )


def _is_clutter(line: str, clutter: Sequence[re.Pattern[str]]) -> bool:
    return any(p.match(line) for p in clutter)


def _is_nav(line: str) -> bool:
    """``Home | News | Sport``: short items between separators."""
    if not _NAV_RE.search(line) or line.endswith("."):
        return False
    return all(len(part.split()) <= 4 for part in _NAV_SPLIT_RE.split(line))


def _find_headline(items: Sequence[Sequence[str]]) -> int | None:
    """The first headline-like item; an all-capitals one (often the site's name) only when no
    ordinary headline follows close after it."""
    candidates = [i for i, item in enumerate(items) if _looks_like_headline(item)]
    for n, i in enumerate(candidates):
        line = items[i][0]
        if line.isupper() and any(j - i <= 3 for j in candidates[n + 1 :]):
            continue
        return i
    return None


def _looks_like_headline(block: Sequence[str]) -> bool:
    """A headline stands alone, is short, and is not a sentence ending in a full stop."""
    if len(block) != 1:
        return False
    line = block[0]
    if not (2 <= len(line) <= MAX_TITLE_CHARS) or len(line.split()) > 30:
        return False
    if len(line.split()) < 2 and len(line) < 16:  # "Menu", "Search": page furniture
        return False
    bare = line.rstrip("\"'”’»)]")
    if bare.endswith((".", ":", ";", ",")) and not bare.endswith("..."):
        return False
    if _is_nav(line) or _is_byline_or_dateline(line):
        return False
    return bool(re.search(r"[^\W\d_]", line))


def _is_byline_or_dateline(line: str) -> bool:
    return bool(_BYLINE_RE.match(line) or _DATELINE_RE.match(line))


def _byline_facts(line: str, meta: Meta) -> None:
    """A byline gives the author and a dateline the date, unless the header gave them."""
    byline = _BYLINE_RE.match(line)
    if byline and "author" not in meta.values:
        meta.values["author"] = byline.group(1)
    dateline = _DATELINE_RE.match(line)
    if dateline and "date" not in meta.values:
        try:
            when = parse_date_text(dateline.group(1))
        except ValueError:
            when = None  # "Chapter 31, 2026" looks like a dateline, but is no date
        if when is not None:
            meta.values["date"] = dateline.group(1)
