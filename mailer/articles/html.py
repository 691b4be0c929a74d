"""Saved web pages (``.html``): title, author, date, link, image and story, read with
trafilatura, the story kept as Markdown and rendered to safe HTML (no markup from the page)."""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from mailer.articles.clues import (
    TITLE_SEPARATORS,
    author_of,
    clues_of,
    date_of,
    headline_beside_site,
)
from mailer.articles.fields import FIELD_LIMITS, Meta, Parts
from mailer.articles.fragment import read_fragment
from mailer.articles.furniture import furniture_kind
from mailer.articles.markdown import render_markdown
from mailer.articles.words import words_of
from mailer.errors import InputError
from mailer.headers import TEXT_CONTROLS, is_web_url

MAX_LAYOUT_DEPTH = 8  # layout tables inside layout tables read as such, to this depth
MIN_STORY_WORDS = 10  # a page with no paragraph of story and fewer words has none
# What a paragraph that only says who wrote it, when, or what the picture is, is classed as.
_NOT_STORY_KINDS = frozenset({"byline", "dateline", "readtime", "caption", "credit", "clock"})
# Where a page may declare its encoding; the HTML standard looks at the first 1024 bytes.
_SNIFF_BYTES = 4096
_CHARSET_RE = re.compile(
    rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([A-Za-z0-9._:-]{1,40})""", re.I
)
# What browsers decode for these labels (the WHATWG Encoding standard).
_CHARSET_ALIASES = dict.fromkeys(
    ("iso-8859-1", "latin1", "latin-1", "ascii", "us-ascii", "x-user-defined"), "cp1252"
)
# Never in an extracted field: controls, bidirectional overrides and a stray byte order mark.
_FIELD_JUNK_RE = re.compile(f"[\n\t{TEXT_CONTROLS}\u202a-\u202e\u2066-\u2069\ufeff\u200b]")
_TEXT_JUNK_RE = re.compile(f"[{TEXT_CONTROLS}\u202a-\u202e\u2066-\u2069\ufeff]")
# A short paragraph that is page furniture, not story (the whole paragraph matches).
_FURNITURE_RE = re.compile(
    r"(advertisement|advert|sponsored( content)?|skip to (main )?content|share( this)?( page"
    r"| article| story| post)?|read (more|next)|continue reading|related (stories|articles|posts)"
    r"|(sign up|subscribe) (for|to) our( free)? newsletter\b.*|you may also like|most read"
    r"|listen to this (article|story)|(©|copyright|\(c\))\s.*|all rights reserved\.?"
    r"|\d+\s*min(ute)?s?\s+read|back to top|(print|email|tweet)( this)?( article| story)?"
    r"|home|menu|search|log ?in|sign ?in|sign ?up|(main )?navigation|cookie settings)"
    r"[.!:]?",
    re.IGNORECASE,
)
# A line that is about the story rather than of it: a byline, a date, a reading time.
_NOT_A_SUMMARY_RE = re.compile(
    r"(?i:(posted |written |words )?by)\s+[A-Z][\w.'’-]*(\s+([A-Z][\w.'’-]*|de|van|von|and|&))*"
    r"\s*([,|·•–—(-].{0,80})?"
    r"|(?i:(published|updated|posted)\b.{0,60})"
    r"|(?i:\d{1,2}\s+\w+\.?\s+\d{4}.{0,30}|\w+\.?\s+\d{1,2},?\s+\d{4}.{0,30})"
    r"|\d{4}-\d{2}-\d{2}.{0,30}|(?i:.{0,40}\b\d+\s*min(ute)?s?\s+read.{0,20})"
    r"|(?i:(photo|image|picture|credit)s?\s*(:|by\b).{0,160})"
)
_MD_INLINE_RE = re.compile(r"([\\`*_\[\]<>&])")
# What would start a block at the start of a line: "# ", "> ", "- ", "1. ", "1) ", "===".
_MD_BLOCK_START_RE = re.compile(r"^(?:([#>+=~|-])|(\d{1,9})([.)]))")
_HEADING_RE = re.compile(r"h([1-6])")
# An element of trafilatura's output tree (lxml, which has no type hints installed here).
_Node = Any


@dataclass(frozen=True)
class Page:
    """What a web page gives an article: its fields as one-line text (or ``None``), and its
    story as Markdown (safe to render), plain text and a first paragraph."""

    title: str | None
    author: str | None
    date: str | None  # YYYY-MM-DD, as the page gives it
    url: str | None  # the canonical link, http(s) only
    image: str | None  # http(s) only
    markdown: str
    text: str
    first_para: str

    @property
    def has_story(self) -> bool:
        """Whether there is a story at all: a paragraph of one, or a few lines of text."""
        return bool(self.first_para) or len(self.text.split()) >= MIN_STORY_WORDS


def decode_html(raw: bytes, *, charset: str | None = None) -> str:
    """A page's bytes as text: a byte order mark first, then ``charset`` (an HTTP header's),
    then the page's own ``<meta charset>``, then UTF-8, then Windows-1252 (as browsers do).
    Undecodable bytes become U+FFFD; controls become spaces."""
    for bom, name in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le")):
        if raw.startswith(bom):
            return _clean_text(raw[len(bom) :].decode(name, errors="replace"))
    if raw.startswith(codecs.BOM_UTF16_BE):
        return _clean_text(raw[2:].decode("utf-16-be", errors="replace"))
    match = _CHARSET_RE.search(raw[:_SNIFF_BYTES])
    declared = match.group(1).decode("ascii") if match else None
    for label in (charset, declared):
        codec = _codec(label) if label else None
        if codec is not None:
            return _clean_text(raw.decode(codec, errors="replace"))
    try:
        return _clean_text(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return _clean_text(raw.decode("cp1252", errors="replace"))


def _codec(label: str) -> str | None:
    label = label.strip().lower()
    label = _CHARSET_ALIASES.get(label, label)
    try:
        info = codecs.lookup(label)
    except LookupError:
        return None
    # A page cannot be UTF-16 once read as ASCII bytes to find this label (HTML says UTF-8).
    return "utf-8" if info.name.startswith("utf-16") else info.name


def _clean_text(text: str) -> str:
    return _TEXT_JUNK_RE.sub(" ", text.replace("\x00", ""))


def load_html(path: Path, text: str) -> tuple[Meta, Parts]:
    """The fields and story of a saved page; a page without a title or story is refused."""
    page = read_page(text)
    if page is None or not page.has_story:
        raise InputError(
            f"{path}: no story text found in the page (is it the article page itself?); "
            "save the story as a .md file with front matter instead"
        )
    if not page.title:
        raise InputError(
            f"{path}: no title found in the page (no <title>, og:title or <h1>); save the "
            "story as a .md file with a 'title:' line instead"
        )
    meta = Meta(path)
    for key in ("title", "author", "date", "url", "image"):
        value = getattr(page, key)
        if value:
            meta.values[key] = value
    return meta, Parts(render_markdown(page.markdown), page.text, page.first_para)


def read_page(text: str, *, url: str | None = None) -> Page | None:
    """The article in a page's HTML (``url``: where it was fetched, for relative links when
    the page names no canonical link), or ``None`` when the page has no story text."""
    if not text.strip():
        return None
    try:
        import trafilatura  # slow to import (~0.25 s): only when a page is read

        tree = trafilatura.load_html(text)
        if tree is None:
            return None
        headings = [" ".join(h.text_content().split()) for h in tree.iter("h1")][:10]
        clues = clues_of(tree)
        document = trafilatura.bare_extraction(
            tree,
            url=url,
            with_metadata=True,
            include_formatting=True,
            include_links=True,
            include_comments=False,
            include_tables=True,
            favor_precision=True,
        )
    except Exception:  # lxml and trafilatura on a hostile page: whatever they raise
        return None
    if document is None or isinstance(document, dict) or document.body is None:
        return None
    canonical = _web_url(document.url, base=url)
    base = canonical or (url if url and is_web_url(url) else None)
    title = _without_site_name(document.title, document.sitename, headings)
    title = _field(headline_beside_site(title, clues), "title")
    markdown, plain, first = _story(document.body, base, title, clues.standfirsts)
    found_author = _field(document.author, "author")
    return Page(
        title=title,
        author=_field(author_of(found_author, document.sitename, clues, tree, plain), "author"),
        date=_field(date_of(_field(document.date, "date"), clues, tree), "date"),
        url=canonical,
        image=_web_url(document.image, base=base),
        markdown=markdown,
        text=plain,
        first_para=first,
    )


def _without_site_name(title: object, site: object, headings: list[str]) -> str | None:
    """``Headline | Site``, ``Headline – Site`` or ``Site: Headline`` less the site's name,
    when the page names its site (``og:site_name``) or has the headline as an ``<h1>``."""
    if not isinstance(title, str):
        return None
    site_name = site.strip().casefold() if isinstance(site, str) else ""
    known = {heading.casefold() for heading in headings if heading}
    for separator in TITLE_SEPARATORS:
        if separator not in title:
            continue
        head, _, tail = title.rpartition(separator)
        first, _, rest = title.partition(separator)
        for keep, drop in ((head, tail), (rest, first)):
            keep, drop = keep.strip(), drop.strip()
            if keep and (drop.casefold() == site_name or keep.casefold() in known):
                return keep
    return title


def html_to_markdown(fragment: str, *, base: str | None = None) -> tuple[str, str]:
    """A fragment of HTML (a feed item's content, all of it story) as Markdown and as plain
    text, no markup of its own kept but structure; ``("", "")`` when it has no text."""
    tree = read_fragment(_clean_text(fragment))
    markdown, plain, _ = _story(tree, base if base and is_web_url(base) else None)
    return markdown, plain


def clean_field(value: object, key: str) -> str | None:
    """A value from a page or feed as one line: no controls or newlines, white space joined,
    cut at a word to the field's limit; ``None`` when nothing is left."""
    return _field(value, key)


def _field(value: object, key: str) -> str | None:
    if not isinstance(value, str):
        return None
    text = " ".join(_FIELD_JUNK_RE.sub(" ", value).split())
    limit = FIELD_LIMITS[key]
    if len(text) > limit:
        cut = text[: limit - 1]
        space = cut.rfind(" ")
        text = (cut[:space] if space > limit // 2 else cut) + "…"
    return text or None


def _web_url(value: object, *, base: str | None) -> str | None:
    if not isinstance(value, str) or not value.strip():
        return None
    value = value.strip()
    if base is not None and not value.lower().startswith(("http://", "https://")):
        try:
            value = urljoin(base, value)
        except ValueError:
            return None
    if len(value) > FIELD_LIMITS["url"] or not is_web_url(value):
        return None
    return value


# --- the story: trafilatura's tree (head, p, list/item, quote, hi, ref, lb, table) ---------


class _Writer:
    """Writes the blocks of trafilatura's tree twice: as Markdown (text escaped, only
    http(s) links) and as plain text with the same shape (for the text part of a mail)."""

    def __init__(self, base: str | None) -> None:
        self.base = base

    def blocks(self, parent: _Node, markdown: bool, depth: int = 0) -> list[tuple[str, str]]:
        """(kind, text) for each block of ``parent``."""
        out: list[tuple[str, str]] = []
        for child in parent:
            tag = child.tag if isinstance(child.tag, str) else ""
            if tag == "head":
                match = _HEADING_RE.fullmatch(str(child.get("rend", "")))
                level = int(match.group(1)) if match else 2
                text = self.inline(child, markdown)
                if text:
                    out.append(("head", "#" * level + " " + text))
            elif tag == "list":
                items = self.items(child, markdown)
                if items:
                    out.append(("list", items))
            elif tag == "quote":
                inner = self.blocks(child, markdown, depth + 1) if _has_blocks(child) else []
                text = "\n\n".join(t for _, t in inner) if inner else self.inline(child, markdown)
                if text:
                    out.append(
                        ("quote", "\n".join(("> " + line).rstrip() for line in text.split("\n")))
                    )
            elif tag == "table" and depth < MAX_LAYOUT_DEPTH and _is_layout(child):
                # A table that lays out the page: its cells hold the story's paragraphs.
                for cell in (c for row in child for c in row if _tag(c) == "cell"):
                    if _has_blocks(cell):
                        lead = self._text(cell.text, markdown).strip()
                        out += [("p", lead)] if lead else []
                        out += self.blocks(cell, markdown, depth + 1)
                    elif text := self.inline(cell, markdown):
                        out.append(("p", text))
            elif tag == "table":
                rows = [
                    " | ".join(self.inline(cell, markdown) for cell in row if _tag(cell) == "cell")
                    for row in child
                    if _tag(row) == "row"
                ]
                rows = [row for row in rows if row.strip(" |")]
                if rows:
                    out.append(("table", ("\\\n" if markdown else "\n").join(rows)))
            elif tag in ("graphic", "lb"):
                continue
            else:
                text = self.inline(child, markdown)
                if text and not _is_furniture(self.inline(child, False)):
                    out.append(("p", text))
        return out

    def items(self, parent: _Node, markdown: bool) -> str:
        ordered = str(parent.get("rend", "")).startswith("ol")
        lines: list[str] = []
        number = 0
        for item in parent:
            if _tag(item) != "item":
                continue
            number += 1
            marker = f"{number}. " if ordered else "- "
            pad = " " * len(marker)
            text = self.inline(item, markdown, skip_lists=True)
            nested = [self.items(sub, markdown) for sub in item if _tag(sub) == "list"]
            body = "\n".join(part for part in (text, *nested) if part)
            if body:
                first, *rest = body.split("\n")
                lines.append(marker + first)
                lines += [pad + line if line else line for line in rest]
        return "\n".join(lines)

    def inline(self, element: _Node, markdown: bool, *, skip_lists: bool = False) -> str:
        text = self._inline(element, markdown, skip_lists)
        lines = [" ".join(line.split()) for line in text.split("\n")]
        lines = [line for line in lines if line]
        if markdown:
            lines = [_MD_BLOCK_START_RE.sub(_escape_block_start, line) for line in lines]
        return ("\\\n" if markdown else "\n").join(lines)

    def _inline(self, element: _Node, markdown: bool, skip_lists: bool) -> str:
        parts = [self._text(element.text, markdown)]
        for child in element:
            tag = _tag(child)
            if skip_lists and tag == "list":
                pass
            elif tag == "lb":
                parts.append("\n")
            elif tag == "graphic":
                pass
            else:
                inner = self._inline(child, markdown, skip_lists)
                parts.append(self._wrap(child, tag, inner, markdown) if inner.strip() else inner)
            parts.append(self._text(child.tail, markdown))
        return "".join(parts)

    def _wrap(self, child: _Node, tag: str, inner: str, markdown: bool) -> str:
        if not markdown:
            return inner
        lead, core, trail = _split_space(inner)
        if tag == "ref":
            target = _web_url(child.get("target"), base=self.base)
            if target is None or "\n" in core:
                return inner
            target = target.replace("\\", "%5C")
            return f"{lead}[{core}](<{target}>){trail}"
        if tag == "hi" and "\n" not in core:
            rend = str(child.get("rend", ""))
            mark = "**" if "#b" in rend else "*" if "#i" in rend else ""
            if mark:
                return f"{lead}{mark}{core}{mark}{trail}"
        return inner

    @staticmethod
    def _text(text: str | None, markdown: bool) -> str:
        if not text:
            return ""
        text = re.sub(r"[ \t\r\n]+", " ", text)
        return _MD_INLINE_RE.sub(r"\\\1", text) if markdown else text


def _story(
    body: _Node, base: str | None, title: str | None = None, standfirsts: Sequence[str] = ()
) -> tuple[str, str, str]:
    """The story as Markdown, as plain text, and its first paragraph of story (plain): not a
    standfirst the page marks as such, unless there is no other. A first heading that repeats
    the title is left out (the mail shows the title)."""
    writer = _Writer(base)
    marked, plain_blocks = writer.blocks(body, True), writer.blocks(body, False)
    if title and plain_blocks and plain_blocks[0][0] == "head":
        heading = plain_blocks[0][1].lstrip("#").strip()
        if heading.casefold() == title.casefold():
            marked, plain_blocks = marked[1:], plain_blocks[1:]
    candidates = [
        text.replace("\n", " ")
        for kind, text in plain_blocks
        if kind == "p" and _is_story_paragraph(text, title)
    ]
    summed = {" ".join(text.split()) for text in standfirsts}
    first = next((c for c in candidates if " ".join(c.split()) not in summed), "")
    first = first or (candidates[0] if candidates else "")
    return (
        "\n\n".join(text for _, text in marked),
        "\n\n".join(text for _, text in plain_blocks),
        first,
    )


def _is_story_paragraph(text: str, title: str | None) -> bool:
    """A paragraph a summary can be: a sentence or a good run of words, not the headline, a
    byline, a date or a reading time ("Jump to recipe" is none)."""
    words = len(text.split())
    if words < 4 or (title and text.strip().casefold() == title.casefold()):
        return False
    if words < 12 and not text.rstrip().endswith((".", "!", "?", "…", ":", '"', "”", "»")):
        return False
    if _NOT_A_SUMMARY_RE.fullmatch(text):
        return False
    return words > 25 or furniture_kind(text, words_of(text), ()) not in _NOT_STORY_KINDS


def _escape_block_start(match: re.Match[str]) -> str:
    mark, digits, dot = match.groups()
    return "\\" + mark if mark else f"{digits}\\{dot}"


def _tag(element: _Node) -> str:
    return element.tag if isinstance(element.tag, str) else ""


def _is_layout(table: _Node) -> bool:
    """Whether a table lays out a page (a cell holds paragraphs) rather than data."""
    return any(_has_blocks(cell) for row in table for cell in row if _tag(cell) == "cell")


def _has_blocks(element: _Node) -> bool:
    return any(_tag(child) in ("p", "list", "head", "quote", "table") for child in element)


def _is_furniture(text: str) -> bool:
    return len(text.split()) <= 12 and _FURNITURE_RE.fullmatch(text.strip()) is not None


def _split_space(text: str) -> tuple[str, str, str]:
    core = text.strip(" ")
    lead = text[: len(text) - len(text.lstrip(" "))]
    trail = text[len(text.rstrip(" ")) :]
    return lead, core, trail
