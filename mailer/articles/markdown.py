"""Markdown articles: bounded YAML front matter, then the body.

The front matter is composed, never constructed: at most ``MAX_FRONT_MATTER_CHARS``
characters and ``MAX_YAML_DEPTH`` levels, no anchors or aliases, no tags but YAML's plain
ones, and every field kept as the text written (``title: 1e3`` is ``"1e3"``).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from markdown_it import MarkdownIt

from mailer.articles.fields import Meta, Parts, excerpt, one_line
from mailer.errors import InputError
from mailer.headers import TEXT_CONTROLS

MAX_FRONT_MATTER_CHARS = 64 * 1024
MAX_YAML_DEPTH = 16
# ``source`` is what ``mailer import`` recorded the article from (a feed item's id, or the
# page's link): how a later import knows it, whatever the file is renamed to.
_FRONT_MATTER_KEYS = {
    "title",
    "slug",
    "date",
    "url",
    "author",
    "summary",
    "tags",
    "image",
    "image_alt",
    "caption",
    "source",
}
_SOURCE_JUNK_RE = re.compile(f"[\n{TEXT_CONTROLS}]")
_BODY_JUNK_RE = re.compile(f"[{TEXT_CONTROLS}]")
_MD = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})

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
            raise _Refused(f"the tag {excerpt(shown)} is not allowed", event)
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


def load_markdown(path: Path, text: str) -> tuple[Meta, Parts]:
    meta, body = _split(path, text)
    body_html = render_markdown(body)
    return meta, Parts(body_html, body.strip(), _first_markdown_paragraph(body))


def front_matter(path: Path, text: str) -> Meta:
    """Only the front matter of a Markdown article, checked as ``load_markdown`` does."""
    return _split(path, text)[0]


def _split(path: Path, text: str) -> tuple[Meta, str]:
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
    return _front_matter(path, front_text), text[4 + end.end() :].lstrip("\n")


def markdown_article(path: Path, fields: dict[str, str], body: str) -> str:
    """The text of a Markdown article file: ``fields`` as YAML front matter (each checked as
    the reader checks it, and read back to be sure it means what was given), then ``body``.
    """
    meta = Meta(path, values=dict(fields))
    for key, value in fields.items():
        if key not in _FRONT_MATTER_KEYS or key == "tags":
            raise InputError(f"{path}: '{key}' is not a front matter field")
        if key == "source":
            if not value or len(value) > 2048 or _SOURCE_JUNK_RE.search(value):
                raise InputError(f"{path}: 'source' must be one line of text, {excerpt(value)}")
        elif meta.text(key) != value:
            raise InputError(f"{path}: '{key}' is not one clean line: {excerpt(value)}")
    front = yaml.safe_dump(
        fields, sort_keys=False, allow_unicode=True, default_flow_style=False, width=1_000_000
    )
    body = _BODY_JUNK_RE.sub(" ", body.replace("\r\n", "\n").replace("\r", "\n")).strip()
    text = f"---\n{front}---\n\n{body}\n"
    again = front_matter(path, text)
    if again.values != fields:
        raise InputError(f"{path}: the front matter would not read back as written")
    return text


def render_markdown(body: str) -> str:
    """Markdown as HTML, with no raw HTML let through (``html`` is off)."""
    return _MD.render(body) if body.strip() else ""


def _front_matter(path: Path, front_text: str) -> Meta:
    """The known fields of the front matter, each as its text (or a list of texts)."""
    loader = _FrontMatterLoader(front_text)
    try:
        root = loader.get_single_node()
    except _Refused as exc:
        raise InputError(f"{path}:{exc.line + 2}: front matter: {exc.problem}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 2 if mark is not None else 1
        problem = one_line(exc.problem or exc.context or "syntax error")
        raise InputError(f"{path}:{line}: invalid YAML front matter: {problem}") from None
    except yaml.reader.ReaderError as exc:
        line = front_text[: exc.position].count("\n") + 2
        raise InputError(
            f"{path}:{line}: invalid YAML front matter: {one_line(str(exc.reason))}"
        ) from None
    except yaml.YAMLError as exc:
        raise InputError(f"{path}:1: invalid YAML front matter: {one_line(str(exc))}") from None
    finally:
        loader.dispose()
    meta = Meta(path)
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


def _node_text(meta: Meta, key: str, node: yaml.Node) -> str | list[str] | None:
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
