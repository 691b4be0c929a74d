"""Article files → ``Article``: Markdown with YAML front matter, and cluttered plain text."""

from __future__ import annotations

import datetime as dt
import html
import itertools
import os
import re
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from markdown_it import MarkdownIt

from mailer.errors import InputError
from mailer.models import Article

ARTICLE_SUFFIXES = (".md", ".markdown", ".txt")
SUMMARY_CHARS = 280
MAX_TITLE_CHARS = 200
MAX_ARTICLE_BYTES = 5 * 1024 * 1024
MAX_FRONT_MATTER_CHARS = 64 * 1024
MAX_YAML_DEPTH = 16
MAX_TAGS = 50
EXCERPT_CHARS = 60  # the most of a bad value an error message quotes

# The longest value of each field, in characters, once runs of white space are joined.
FIELD_LIMITS = {
    "title": MAX_TITLE_CHARS,
    "author": 200,
    "slug": 200,
    "url": 2048,
    "image": 2048,
    "summary": 20_000,
    "date": 100,
    "tags": 100,  # each tag
}

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

_FRONT_MATTER_KEYS = {"title", "slug", "date", "url", "author", "summary", "tags", "image"}
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
# Never in a file: C0 controls but tab and newline (CR is gone by then), DEL, C1 controls, and
# the Unicode line and paragraph separators.
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029"
_CONTROL_RE = re.compile(f"[{_CONTROLS}]")
# Never in a field either: bidirectional embeddings, overrides and isolates (text that reads
# other than it is), a stray byte order mark, and a newline but in the summary.
_FIELD_CONTROLS = _CONTROLS + "\u202a-\u202e\u2066-\u2069\ufeff"
_FIELD_CONTROL_RE = re.compile(f"[\n{_FIELD_CONTROLS}]")
_SUMMARY_CONTROL_RE = re.compile(f"[{_FIELD_CONTROLS}]")
# ISO 8601 and YAML timestamps: a date, then optionally a time (after T or spaces) and an
# offset (Z, +01:00, +0100, -5).
_ISO_RE = re.compile(
    r"(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:(?:[Tt]|[ \t]+)(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?"
    r"[ \t]*(?:([Zz])|([+-])(\d{1,2})(?::?(\d{2}))?)?)?",
    re.ASCII,
)
_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})

SkipHandler = Callable[[Path, str], None]
"""Told of each file ``load_articles`` leaves out, and why: ``on_skip(path, reason)``."""


# --- Finding and reading files -----------------------------------------------------------


def load_articles(
    folder: Path,
    *,
    extra_clutter: Sequence[str] = (),
    base_url: str | None = None,
    zone: dt.tzinfo = dt.UTC,
    on_skip: SkipHandler | None = None,
) -> list[Article]:
    """Load every article file in ``folder`` (recursively, hidden files skipped).

    Any broken file raises ``InputError`` naming the file: a digest is never built from a
    folder where something is silently missing. What is never read instead is skipped and
    told to ``on_skip(path, reason)``: a symlink that leads outside the folder, is broken or
    loops, and a pipe or device with an article's name (see ``article_files``). ``zone`` is
    the newsletter's time zone (see ``load_article``).
    """
    if not folder.is_dir():
        raise InputError(f"{folder}: articles folder not found")
    clutter = compile_clutter(extra_clutter)
    return [
        load_article(path, clutter=clutter, base_url=base_url, zone=zone, folder=folder)
        for path in article_files(folder, on_skip=on_skip)
    ]


def article_files(folder: Path, *, on_skip: SkipHandler | None = None) -> list[Path]:
    """The article files under ``folder``, sorted, each real file once.

    Names starting with ``.`` or ``_`` (drafts, ``.git``) are passed over. Symlinks are
    followed while they stay inside the folder, and a file or folder reached twice (through
    a symlink, or a symlink loop) is taken once, by its path without symlinks where it has
    one. A symlink that leads outside the folder, is broken or loops, and anything with an
    article's name that is not a regular file (a pipe would block a read), is left out and
    told to ``on_skip``.
    """
    root = _real_path(folder)
    if root is None or not _is_dir(root):
        raise InputError(f"{folder}: articles folder not found")

    def skip(path: Path, reason: str) -> None:
        if on_skip is not None:
            on_skip(path, reason)

    found: dict[Path, tuple[bool, Path]] = {}  # real path -> (through a symlink?, path)
    walked: set[Path] = set()
    # Real folders first, then those reached through symlinks, so that a file has its own
    # path when it has one, and a symlink loop ends at a folder already walked.
    pending: list[tuple[Path, Path, bool]] = [(folder, root, False)]
    linked: list[tuple[Path, Path, bool]] = []
    while pending or linked:
        directory, real_dir, through_link = pending.pop() if pending else linked.pop(0)
        if real_dir in walked:
            continue
        walked.add(real_dir)
        try:
            with os.scandir(directory) as entries:
                names = sorted(entry.name for entry in entries)
        except OSError as exc:
            raise InputError(f"{directory}: cannot list the folder ({exc.strerror})") from exc
        for name in names:
            if name.startswith((".", "_")):
                continue
            path = directory / name
            is_article = Path(name).suffix.lower() in ARTICLE_SUFFIXES
            real = real_dir / name
            is_link = path.is_symlink()
            if is_link:
                target = _real_path(path)
                if target is None or not _exists(target):
                    if is_article:
                        skip(path, "a broken symlink, or a symlink loop")
                    continue
                if not target.is_relative_to(root):
                    if is_article or _is_dir(target):
                        skip(path, "a symlink that leads outside the articles folder")
                    continue
                real = target
            if _is_dir(real):
                (linked if is_link else pending).append((path, real, through_link or is_link))
            elif is_article:
                if not _is_file(real):
                    skip(path, "not a regular file")
                    continue
                candidate = (through_link or is_link, path)
                if real not in found or candidate < found[real]:
                    found[real] = candidate
    return sorted(path for _, path in found.values())


def is_inside(path: Path, folder: Path) -> bool:
    """Whether ``path``, every symlink resolved, is ``folder`` (resolved too) or under it."""
    real, root = _real_path(path), _real_path(folder)
    return real is not None and root is not None and real.is_relative_to(root)


def _real_path(path: Path) -> Path | None:
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError, RuntimeError):
        return None


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def compile_clutter(extra: Sequence[str] = ()) -> list[re.Pattern[str]]:
    return [re.compile(p, re.IGNORECASE) for p in (*DEFAULT_CLUTTER_PATTERNS, *extra)]


def load_article(
    path: Path,
    *,
    clutter: Sequence[re.Pattern[str]] | None = None,
    base_url: str | None = None,
    zone: dt.tzinfo = dt.UTC,
    folder: Path | None = None,
) -> Article:
    """Parse one ``.md`` or ``.txt`` file.

    With ``folder``, a path that leads outside it once symlinks are resolved (a link to
    ``/etc/passwd``) is refused with ``InputError`` and never opened.

    ``zone`` is the newsletter's time zone. A date without a time (``2026-11-27``) means that
    day there; a time without an offset is the time there; a time with an offset (``Z``,
    ``+01:00``) is that instant. ``Article.published`` is the instant in UTC (for a date
    alone, the day's first instant in ``zone``) and ``Article.date`` its day in ``zone``. A
    file without a date is dated by its modification time.

    YAML front matter is bounded: at most ``MAX_FRONT_MATTER_CHARS`` characters and
    ``MAX_YAML_DEPTH`` levels, no anchors or aliases (``&``, ``*``: refused, never expanded),
    and no tags but YAML's plain ones (``!!binary``, ``!!python/...`` are refused). Every
    field is kept as the text written (``title: 1e3`` is ``"1e3"``), and dates are parsed
    here, not by YAML. Every problem is one ``InputError`` line naming the file (and line
    and field where known) that quotes at most ``EXCERPT_CHARS`` characters of the input.
    """
    if folder is not None and not is_inside(path, folder):
        raise InputError(f"{path}: leads outside the articles folder {folder}; not read")
    text, mtime = _read_text(path)
    if clutter is None:
        clutter = compile_clutter()
    if path.suffix.lower() == ".txt":
        meta, parts = _load_txt(path, text, clutter)
    else:
        meta, parts = _load_markdown(path, text)
    return _build(meta, parts, base_url=base_url, zone=zone, mtime=mtime)


def _read_text(path: Path) -> tuple[str, float]:
    """The text of a regular file (never a pipe or device, which could block), and its
    modification time."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise InputError(f"{path}: not a regular file")
            if info.st_size > MAX_ARTICLE_BYTES:
                raise InputError(f"{path}: file is too large for an article ({info.st_size} bytes)")
            raw = handle.read(MAX_ARTICLE_BYTES + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
    if len(raw) > MAX_ARTICLE_BYTES:
        raise InputError(f"{path}: file is too large for an article (it grew while read)")
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
        raise InputError(
            f"{path}:{line}: contains the control character U+{ord(match.group()):04X}; "
            "is it a binary file?"
        )
    return text, info.st_mtime


# --- Fields ------------------------------------------------------------------------------


@dataclass
class _Meta:
    """The fields of one file as written (text; tags may be a list of texts), and the line
    each came from."""

    path: Path
    values: dict[str, str | list[str]] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)

    def where(self, key: str) -> str:
        line = self.lines.get(key)
        return f"{self.path}:{line}" if line else str(self.path)

    def text(self, key: str) -> str | None:
        """A field as one line of text, checked; ``None`` when absent or empty."""
        value = self.values.get(key)
        if value is None:
            return None
        if isinstance(value, list):
            raise InputError(f"{self.where(key)}: '{key}' must be text, not a list")
        return self._checked(key, value) or None

    def tags(self) -> tuple[str, ...]:
        value = self.values.get("tags")
        if value is None:
            return ()
        items = value.split(",") if isinstance(value, str) else value
        if len(items) > MAX_TAGS:
            raise InputError(f"{self.where('tags')}: more than {MAX_TAGS} tags")
        return tuple(tag for tag in (self._checked("tags", item) for item in items) if tag)

    def _checked(self, key: str, value: str) -> str:
        value = value.strip(" \t\n")
        bad = (_SUMMARY_CONTROL_RE if key == "summary" else _FIELD_CONTROL_RE).search(value)
        if bad:
            if bad.group() == "\n":
                raise InputError(f"{self.where(key)}: '{key}' must be on one line")
            raise InputError(
                f"{self.where(key)}: '{key}' contains the control character "
                f"U+{ord(bad.group()):04X}; remove it"
            )
        text = " ".join(value.split())
        limit = FIELD_LIMITS[key]
        if len(text) > limit:
            raise InputError(
                f"{self.where(key)}: '{key}' is longer than {limit} characters: {_excerpt(text)}"
            )
        return text


@dataclass(frozen=True)
class _Parts:
    """What the body gives: its HTML and text, and the paragraph a summary is made from."""

    body_html: str
    body_text: str
    first_para: str


def _excerpt(text: str) -> str:
    """``text`` quoted for an error line: at most ``EXCERPT_CHARS`` characters, printable."""
    if len(text) > EXCERPT_CHARS:
        text = text[: EXCERPT_CHARS - 1] + "…"
    return repr("".join(c if c.isprintable() else "\ufffd" for c in text))


# --- Markdown ----------------------------------------------------------------------------

_YAML = "tag:yaml.org,2002:"
_NULL_TAG = _YAML + "null"
# Tags that only say what YAML would have guessed; every value is kept as its text anyway.
_PLAIN_TAGS = {"!"} | {
    _YAML + name for name in ("str", "int", "float", "bool", "null", "timestamp", "seq", "map")
}


class _Refused(Exception):
    """Front matter that is valid YAML but not allowed here, at a line of the front matter."""

    def __init__(self, problem: str, event: yaml.Event) -> None:
        super().__init__(problem)
        self.problem = problem
        self.line = event.start_mark.line if event.start_mark is not None else 0


class _FrontMatterLoader(yaml.SafeLoader):
    """Composes front matter into nodes and stops there: nothing is constructed.

    Anchors and aliases are refused outright (``&a`` and ``*a``: an alias "billion laughs"
    never expands), explicit tags other than YAML's plain ones are refused (``!!binary``,
    ``!!python/object``, ``!local``), nesting is bounded by ``MAX_YAML_DEPTH``, and
    timestamps are not resolved (``2026-02-30`` stays text for ``_parse_date_text``).
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event: yaml.Event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused("anchors and aliases (& and *) are not allowed", event)
        tag = getattr(event, "tag", None)
        if tag is not None and tag not in _PLAIN_TAGS:
            shown = "!!" + tag.removeprefix(_YAML) if tag.startswith(_YAML) else tag
            raise _Refused(f"the tag {_excerpt(shown)} is not allowed", event)
        if self._depth >= MAX_YAML_DEPTH:
            raise _Refused(f"nested more than {MAX_YAML_DEPTH} levels deep", event)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


_FrontMatterLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _YAML + "timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _load_markdown(path: Path, text: str) -> tuple[_Meta, _Parts]:
    if not text.startswith("---\n"):
        raise InputError(f"{path}:1: missing YAML front matter (start the file with '---')")
    end = re.search(r"^(---|\.\.\.)[ \t]*$", text[4:], re.MULTILINE)
    if end is None:
        raise InputError(f"{path}:1: front matter is not closed with a '---' line")
    front_text = text[4 : 4 + end.start()]
    if len(front_text) > MAX_FRONT_MATTER_CHARS:
        raise InputError(
            f"{path}:1: front matter is longer than {MAX_FRONT_MATTER_CHARS} characters"
        )
    meta = _front_matter(path, front_text)
    body = text[4 + end.end() :].lstrip("\n")
    body_html = _MD.render(body) if body.strip() else ""
    return meta, _Parts(body_html, body.strip(), _first_markdown_paragraph(body))


def _front_matter(path: Path, front_text: str) -> _Meta:
    """The known fields of the front matter, each as its text (or a list of texts)."""
    loader = _FrontMatterLoader(front_text)
    try:
        root = loader.get_single_node()
    except _Refused as exc:
        raise InputError(f"{path}:{exc.line + 2}: front matter: {exc.problem}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 2 if mark is not None else 1
        problem = _one_line(exc.problem or exc.context or "syntax error")
        raise InputError(f"{path}:{line}: invalid YAML front matter: {problem}") from None
    except yaml.reader.ReaderError as exc:
        line = front_text[: exc.position].count("\n") + 2
        raise InputError(
            f"{path}:{line}: invalid YAML front matter: {_one_line(str(exc.reason))}"
        ) from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}:1: invalid YAML front matter: {_one_line(str(exc))}") from None
    finally:
        loader.dispose()
    meta = _Meta(path)
    if root is None:
        return meta
    if not isinstance(root, yaml.MappingNode):
        raise InputError(f"{path}:2: front matter must be a mapping of 'key: value' lines")
    for key_node, value_node in root.value:
        line = key_node.start_mark.line + 2
        if not isinstance(key_node, yaml.ScalarNode):
            raise InputError(f"{path}:{line}: a front matter key must be a word")
        key = key_node.value
        if key not in _FRONT_MATTER_KEYS:
            continue
        if key in meta.lines:
            raise InputError(f"{path}:{line}: '{key}' is given twice")
        meta.lines[key] = line
        value = _node_text(meta, key, value_node)
        if value is not None:
            meta.values[key] = value
    return meta


def _node_text(meta: _Meta, key: str, node: yaml.Node) -> str | list[str] | None:
    """A scalar as written (``None`` for null), or for tags a list of scalars as written."""
    if isinstance(node, yaml.ScalarNode):
        return None if node.tag == _NULL_TAG else str(node.value)
    if isinstance(node, yaml.SequenceNode) and key == "tags":
        items = []
        for item in node.value:
            if not isinstance(item, yaml.ScalarNode) or item.tag == _NULL_TAG:
                raise InputError(f"{meta.where(key)}: '{key}' must be a list of words")
            items.append(str(item.value))
        return items
    kind = "list" if isinstance(node, yaml.SequenceNode) else "mapping"
    raise InputError(f"{meta.where(key)}: '{key}' must be text, not a {kind}")


def _one_line(text: str) -> str:
    """A YAML problem as one short line (it may quote the input)."""
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= 2 * EXCERPT_CHARS else text[: 2 * EXCERPT_CHARS - 1] + "…"


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


def _load_txt(path: Path, text: str, clutter: Sequence[re.Pattern[str]]) -> tuple[_Meta, _Parts]:
    lines = text.split("\n")
    meta = _Meta(path)
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
    return meta, _Parts(body_html, "\n\n".join(paragraphs), first_para)


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


def _byline_facts(line: str, meta: _Meta) -> None:
    """A byline gives the author and a dateline the date, unless the header gave them."""
    byline = _BYLINE_RE.match(line)
    if byline and "author" not in meta.values:
        meta.values["author"] = byline.group(1)
    dateline = _DATELINE_RE.match(line)
    if dateline and "date" not in meta.values:
        try:
            when = _parse_date_text(dateline.group(1))
        except ValueError:
            when = None  # "Chapter 31, 2026" looks like a dateline, but is no date
        if when is not None:
            meta.values["date"] = dateline.group(1)


# --- Common ------------------------------------------------------------------------------


def _build(
    meta: _Meta, parts: _Parts, *, base_url: str | None, zone: dt.tzinfo, mtime: float
) -> Article:
    path = meta.path
    title = meta.text("title")
    if not title:
        raise InputError(f"{path}: no title (add 'title:' or a headline line above the story)")
    slug = meta.text("slug") or _slugify(path.stem)
    published, day, date_only = _when(meta, zone, mtime)
    url = meta.text("url")
    if not url and base_url:
        url = base_url.rstrip("/") + "/" + slug
    if not url:
        raise InputError(f"{path}: no url (add 'url:' so the digest can link to the article)")
    _check_url(meta, "url", url)
    image = meta.text("image")
    if image:
        _check_url(meta, "image", image)
    summary = meta.text("summary") or cut_at_word(parts.first_para, SUMMARY_CHARS)
    return Article(
        slug=slug,
        title=title,
        date=day,
        url=url,
        summary=summary,
        body_html=parts.body_html,
        body_text=parts.body_text,
        source=path,
        published=published,
        author=meta.text("author"),
        tags=meta.tags(),
        image=image,
        date_from_mtime="date" not in meta.values,
        date_only=date_only,
    )


def _when(meta: _Meta, zone: dt.tzinfo, mtime: float) -> tuple[dt.datetime, dt.date, bool]:
    """The article's instant (UTC), its day in ``zone``, and whether it was a date alone."""
    text = meta.text("date")
    if text is None:
        try:
            published = dt.datetime.fromtimestamp(mtime, dt.UTC)
            return published, published.astimezone(zone).date(), False
        except (OverflowError, OSError, ValueError):
            raise InputError(
                f"{meta.path}: no date, and the file's time is out of range (add 'date:')"
            ) from None
    where = f"{meta.where('date')}: 'date' {_excerpt(text)}"
    try:
        when = _parse_date_text(text)
        if when is None:
            raise InputError(
                f"{where} is not a date (use YYYY-MM-DD, or YYYY-MM-DDTHH:MM:SS+01:00 with a time)"
            )
        if isinstance(when, dt.datetime):
            published = (when if when.tzinfo else when.replace(tzinfo=zone)).astimezone(dt.UTC)
            return published, published.astimezone(zone).date(), False
        start = dt.datetime.combine(when, dt.time(), tzinfo=zone)
        return start.astimezone(dt.UTC), when, True
    except ValueError as exc:
        raise InputError(f"{where} is not a valid date ({_one_line(str(exc))})") from None
    except OverflowError:
        raise InputError(f"{where} is out of range") from None


def _parse_date_text(text: str) -> dt.date | dt.datetime | None:
    """An ISO date or date-time (naive when it has no offset), or a date written out
    (``November 20, 2026``, ``20 Nov 2026``); ``None`` when it is none of these. Raises
    ``ValueError`` for one that has the form but does not exist (``2026-02-30``)."""
    match = _ISO_RE.fullmatch(text)
    if match:
        year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
        if hour is None:
            return dt.date(int(year), int(month), int(day))
        zone: dt.tzinfo | None = None
        if zulu:
            zone = dt.UTC
        elif sign:
            if int(off_h) > 23 or int(off_m or 0) > 59:
                raise ValueError("the offset is out of range")
            offset = dt.timedelta(hours=int(off_h), minutes=int(off_m or 0))
            zone = dt.timezone(-offset if sign == "-" else offset)
        micro = int((fraction or "")[:6].ljust(6, "0"))
        return dt.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, zone
        )
    text = text.replace(".", "")  # "Nov. 20, 2026"
    for fmt in ("%B %d, %Y", "%b %d, %Y", "%B %d %Y", "%b %d %Y", "%d %B %Y", "%d %b %Y"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    return None


def _check_url(meta: _Meta, key: str, url: str) -> None:
    if not re.fullmatch(r"https?://[^\s<>\"'\x00-\x1f\x7f]+", url):
        raise InputError(f"{meta.where(key)}: '{key}' must be an http(s) URL, not {_excerpt(url)}")


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
