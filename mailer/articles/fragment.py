"""A fragment of HTML (a feed item's content) read forgivingly into the shape of
trafilatura's tree, so that one writer makes Markdown of both."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser


def read_fragment(html: str) -> Element:
    """The tree of ``html``: head, p, list/item, quote, table/row/cell, hi, ref and lb."""
    builder = _FragmentBuilder()
    builder.feed(html)
    builder.close()
    return builder.root


class Element:
    """An element of the shape ``_Writer`` reads (tag, attributes, text, tail, children)."""

    def __init__(self, tag: str, html_tag: str = "", attrs: dict[str, str] | None = None) -> None:
        self.tag, self.html_tag, self.attrs = tag, html_tag, attrs or {}
        self.text = ""
        self.tail = ""
        self.children: list[Element] = []

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.attrs.get(key, default)

    def __iter__(self) -> Iterator[Element]:
        return iter(self.children)


_BLOCK_TAGS = {f"h{n}": "head" for n in range(1, 7)} | dict.fromkeys(
    ("p", "pre", "dt", "dd", "figcaption", "address"), "p"
)
_INLINE_TAGS = {"b": "#b", "strong": "#b", "i": "#i", "em": "#i", "code": "#t", "a": ""}
_SKIPPED_TAGS = {"script", "style", "template", "svg", "math", "iframe", "object", "noscript"}
_SKIPPED_TAGS |= {"head", "title", "select", "textarea", "button", "form", "nav", "audio"}
_VOID_TAGS = {"br", "img", "hr", "input", "meta", "link", "source", "wbr", "area", "col"}
_CONTAINERS = ("body", "quote", "item", "cell")
_MAX_DEPTH = 64


class _FragmentBuilder(HTMLParser):
    """HTML read forgivingly into head, p, list/item, quote, table/row/cell, hi, ref and lb,
    everything else left out (scripts, styles, forms) or passed through (div, span)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("body")
        self.stack = [self.root]
        self.skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skipping or tag in _SKIPPED_TAGS:
            self.skipping += tag not in _VOID_TAGS
            return
        if len(self.stack) >= _MAX_DEPTH:
            return
        if tag == "br":
            self._inline_parent().children.append(Element("lb", tag))
        elif tag in _INLINE_TAGS:
            values = {k: v or "" for k, v in attrs}
            node = (
                Element("ref", tag, {"target": values.get("href", "")})
                if tag == "a"
                else Element("hi", tag, {"rend": _INLINE_TAGS[tag]})
            )
            self._inline_parent().children.append(node)
            self.stack.append(node)
        elif tag in ("ul", "ol"):
            self._open(Element("list", tag, {"rend": tag}), self._container())
        elif tag == "li":
            lists = [n for n in self.stack if n.tag == "list"]
            parent = lists[-1] if lists else None
            if parent is None:
                parent = Element("list", "ul", {"rend": "ul"})
                self._open(parent, self._container())
            self._close_to(parent)
            self._open(Element("item", tag), parent)
        elif tag == "blockquote":
            self._open(Element("quote", tag), self._container())
        elif tag == "table":
            self._open(Element("table", tag), self._container())
        elif tag == "tr":
            tables = [n for n in self.stack if n.tag == "table"]
            if tables:
                self._close_to(tables[-1])
                self._open(Element("row", tag), tables[-1])
        elif tag in ("td", "th"):
            rows = [n for n in self.stack if n.tag == "row"]
            if rows:
                self._close_to(rows[-1])
                self._open(Element("cell", tag), rows[-1])
        elif tag in _BLOCK_TAGS:
            container = self._container()
            if container.tag in ("item", "cell"):
                if container.children or container.text.strip():
                    container.children.append(Element("lb", "br"))
                return
            rend = tag if _BLOCK_TAGS[tag] == "head" else ""
            self._open(Element(_BLOCK_TAGS[tag], tag, {"rend": rend}), container)
        elif self.stack[-1].tag == "p" and self.stack[-1].html_tag == "":
            self.stack.pop()  # a div or section ends the loose text before it

    def handle_endtag(self, tag: str) -> None:
        if self.skipping:
            self.skipping -= tag in _SKIPPED_TAGS
            return
        for index in range(len(self.stack) - 1, 0, -1):
            if self.stack[index].html_tag == tag:
                del self.stack[index:]
                return
        if self.stack[-1].tag == "p" and self.stack[-1].html_tag == "":
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        if self.skipping or (not data.strip() and self.stack[-1].tag in _CONTAINERS):
            return
        parent = self._inline_parent()
        if parent.children:
            parent.children[-1].tail += data
        else:
            parent.text += data

    def _container(self) -> Element:
        while self.stack[-1].tag not in _CONTAINERS:
            self.stack.pop()
        return self.stack[-1]

    def _inline_parent(self) -> Element:
        top = self.stack[-1]
        if top.tag in ("body", "quote", "list", "table", "row"):
            loose = Element("p")
            self._open(loose, self._container())
            return loose
        return top

    def _open(self, node: Element, parent: Element) -> None:
        self._close_to(parent)
        parent.children.append(node)
        self.stack.append(node)

    def _close_to(self, node: Element) -> None:
        while self.stack[-1] is not node:
            self.stack.pop()
