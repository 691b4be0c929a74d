"""Article files → ``Article``: Markdown with YAML front matter, and cluttered plain text."""

from __future__ import annotations

import datetime as dt
import html
import itertools
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from markdown_it import MarkdownIt

from mailer.errors import InputError
from mailer.models import Article

ARTICLE_SUFFIXES = (".md", ".markdown", ".txt")
SUMMARY_CHARS = 280
MAX_TITLE_CHARS = 200
MAX_ARTICLE_BYTES = 5 * 1024 * 1024

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
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})


def load_articles(
    folder: Path, *, extra_clutter: Sequence[str] = (), base_url: str | None = None
) -> list[Article]:
    """Load every article file in ``folder`` (recursively, hidden files skipped).

    Any broken file raises ``InputError`` naming the file: a digest is never built from a
    folder where something is silently missing.
    """
    if not folder.is_dir():
        raise InputError(f"{folder}: articles folder not found")
    clutter = compile_clutter(extra_clutter)
    articles = []
    for path in sorted(_article_files(folder)):
        articles.append(load_article(path, clutter=clutter, base_url=base_url))
    return articles


def _article_files(folder: Path) -> Iterable[Path]:
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if any(part.startswith((".", "_")) for part in relative.parts):
            continue
        if path.is_file() and path.suffix.lower() in ARTICLE_SUFFIXES:
            yield path


def compile_clutter(extra: Sequence[str] = ()) -> list[re.Pattern[str]]:
    return [re.compile(p, re.IGNORECASE) for p in (*DEFAULT_CLUTTER_PATTERNS, *extra)]


def load_article(
    path: Path,
    *,
    clutter: Sequence[re.Pattern[str]] | None = None,
    base_url: str | None = None,
) -> Article:
    """Parse one ``.md`` or ``.txt`` file."""
    text = _read_text(path)
    if clutter is None:
        clutter = compile_clutter()
    if path.suffix.lower() == ".txt":
        return _load_txt(path, text, clutter, base_url)
    return _load_markdown(path, text, base_url)


def _read_text(path: Path) -> str:
    try:
        size = path.stat().st_size
        if size > MAX_ARTICLE_BYTES:
            raise InputError(f"{path}: file is too large for an article ({size} bytes)")
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
    if b"\x00" in raw:
        raise InputError(f"{path}: looks like a binary file, not an article")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise InputError(f"{path}:{line}: not valid UTF-8 text (save the file as UTF-8)") from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise InputError(f"{path}: file is empty")
    match = _CONTROL_RE.search(text)
    if match:
        line = text[: match.start()].count("\n") + 1
        raise InputError(f"{path}:{line}: contains control characters; is it a binary file?")
    return text


# --- Markdown ----------------------------------------------------------------------------


def _load_markdown(path: Path, text: str, base_url: str | None) -> Article:
    if not text.startswith("---\n"):
        raise InputError(f"{path}:1: missing YAML front matter (start the file with '---')")
    end = re.search(r"^(---|\.\.\.)[ \t]*$", text[4:], re.MULTILINE)
    if end is None:
        raise InputError(f"{path}:1: front matter is not closed with a '---' line")
    front_text = text[4 : 4 + end.start()]
    body = text[4 + end.end() :].lstrip("\n")
    try:
        meta = yaml.safe_load(front_text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        problem = getattr(exc, "problem", None) or "syntax error"
        raise InputError(f"{path}:{line}: invalid YAML front matter: {problem}") from None
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise InputError(f"{path}:2: front matter must be a mapping of 'key: value' lines")
    body_html = _MD.render(body) if body.strip() else ""
    first_para = _first_markdown_paragraph(body)
    return _build(
        path,
        meta,
        body_html=body_html,
        body_text=body.strip(),
        first_para=first_para,
        base_url=base_url,
    )


def _first_markdown_paragraph(body: str) -> str:
    """The text of the first paragraph that has any (a lone image is not a summary)."""
    for token_index, token in enumerate(tokens := _MD.parse(body)):
        if token.type == "paragraph_open":
            inline = tokens[token_index + 1]
            children = inline.children or []
            text = "".join(
                c.content if c.type in ("text", "code_inline") else " " if "break" in c.type else ""
                for c in children
            ).strip()
            if text:
                return text
    return ""


# --- Plain text --------------------------------------------------------------------------


def _load_txt(
    path: Path, text: str, clutter: Sequence[re.Pattern[str]], base_url: str | None
) -> Article:
    lines = text.split("\n")
    meta: dict[str, Any] = {}
    start = 0
    # Optional "Key: value" header lines (title, date, url, ...) at the very top.
    while start < len(lines):
        match = _HEADER_RE.match(lines[start].strip())
        if not match or match.group(1).lower() not in _HEADER_KEYS:
            break
        key, value = match.group(1).lower(), match.group(2).strip()
        meta[key] = [t.strip() for t in value.split(",") if t.strip()] if key == "tags" else value
        start += 1
    items = [
        item
        for block in _blocks(lines[start:])
        for item in _split_block(block, clutter)
        if not (len(item) == 1 and _is_nav(item[0]))
    ]

    if "title" in meta:
        # A page copied whole repeats its headline under the header: the story starts there.
        wanted = " ".join(str(meta["title"]).split()).casefold()
        for i, item in enumerate(items):
            if len(item) == 1 and item[0].casefold() == wanted:
                items = items[i + 1 :]
                break
    else:
        headline_at = _find_headline(items)
        if headline_at is not None:
            meta["title"] = items[headline_at][0]
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
    body_text = "\n\n".join(paragraphs)
    return _build(
        path,
        meta,
        body_html=body_html,
        body_text=body_text,
        first_para=first_para,
        base_url=base_url,
    )


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


def _byline_facts(line: str, meta: dict[str, Any]) -> None:
    """A byline gives the author and a dateline the date, unless the header gave them."""
    byline = _BYLINE_RE.match(line)
    if byline and not meta.get("author"):
        meta["author"] = byline.group(1)
    dateline = _DATELINE_RE.match(line)
    if dateline and not meta.get("date"):
        day = _parse_date_text(dateline.group(1))
        if day is not None:
            meta["date"] = day


# --- Common ------------------------------------------------------------------------------


def _build(
    path: Path,
    meta: dict[str, Any],
    *,
    body_html: str,
    body_text: str,
    first_para: str,
    base_url: str | None,
) -> Article:
    title = _text_field(path, meta, "title")
    if not title:
        raise InputError(f"{path}: no title (add 'title:' or a headline line above the story)")
    if len(title) > MAX_TITLE_CHARS:
        raise InputError(f"{path}: title is longer than {MAX_TITLE_CHARS} characters")
    slug = _text_field(path, meta, "slug") or _slugify(path.stem)
    date, from_mtime = _date_field(path, meta.get("date"))
    url = _text_field(path, meta, "url")
    if not url and base_url:
        url = base_url.rstrip("/") + "/" + slug
    if not url:
        raise InputError(f"{path}: no url (add 'url:' so the digest can link to the article)")
    _check_url(path, "url", url)
    image = _text_field(path, meta, "image")
    if image:
        _check_url(path, "image", image)
    summary = _text_field(path, meta, "summary") or cut_at_word(first_para, SUMMARY_CHARS)
    tags_value = meta.get("tags") or ()
    if isinstance(tags_value, str):
        tags_value = [t.strip() for t in tags_value.split(",")]
    if not isinstance(tags_value, list | tuple) or not all(
        isinstance(t, str | int | float) for t in tags_value
    ):
        raise InputError(f"{path}: 'tags' must be a list of words")
    return Article(
        slug=slug,
        title=title,
        date=date,
        url=url,
        summary=summary,
        body_html=body_html,
        body_text=body_text,
        source=path,
        author=_text_field(path, meta, "author"),
        tags=tuple(str(t) for t in tags_value if str(t).strip()),
        image=image,
        date_from_mtime=from_mtime,
    )


def _text_field(path: Path, meta: dict[str, Any], key: str) -> str | None:
    value = meta.get(key)
    if value is None:
        return None
    if isinstance(value, dict | list):
        raise InputError(f"{path}: '{key}' must be text, not a {type(value).__name__}")
    text = " ".join(str(value).split())
    return text or None


def _date_field(path: Path, value: Any) -> tuple[dt.date, bool]:
    if value is None or value == "":
        mtime = path.stat().st_mtime
        return dt.datetime.fromtimestamp(mtime).date(), True
    if isinstance(value, dt.datetime):
        return value.date(), False
    if isinstance(value, dt.date):
        return value, False
    text = str(value).strip()
    day = _parse_date_text(text)
    if day is None:
        raise InputError(f"{path}: date {text!r} is not a date (use YYYY-MM-DD)")
    return day, False


def _parse_date_text(text: str) -> dt.date | None:
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        pass
    text = text.replace(".", "")  # "Nov. 20, 2026"
    for fmt in ("%B %d, %Y", "%b %d, %Y", "%B %d %Y", "%b %d %Y", "%d %B %Y", "%d %b %Y"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def _check_url(path: Path, key: str, url: str) -> None:
    if not re.fullmatch(r"https?://[^\s<>\"'\x00-\x1f\x7f]+", url):
        raise InputError(f"{path}: '{key}' must be an http(s) URL")


def _slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "article"


def cut_at_word(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` characters at a word boundary, adding an ellipsis."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-–—") + "…"
