"""Article bodies as messages carry them: headings demoted below the message's own, a long
body cut after its opening blocks to keep the HTML budget, and the same body as plain text."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from html.parser import HTMLParser

from markupsafe import Markup

# A forward carries the opening of a long article, then links to the whole of it: what its
# body may cost, counting what inlining adds to each element.
FORWARD_BODY_BUDGET = 45_000
_INLINED_PER_TAG = 160
TEXT_WIDTH = 78

_HEADING_RE = re.compile(r"<(/?)[hH]([1-6])(?=[\s/>])")
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
)
_BLOCK_TAGS = frozenset(
    {"p", "div", "figure", "figcaption", "dl", "dt", "dd", "table", "thead", "tbody", "section"}
)
_BODY_HEADING = 3  # the masthead is h1, article titles h2


def demote_headings(body_html: str) -> str:
    """An article body's headings moved below the message's own, keeping their order: the
    body's highest heading becomes ``h3`` (a Markdown ``## What changed`` under an ``h2``
    title), the next level ``h4``..., never past ``h6``."""
    levels = [int(m.group(2)) for m in _HEADING_RE.finditer(body_html)]
    if not levels or min(levels) >= _BODY_HEADING:
        return body_html
    shift = _BODY_HEADING - min(levels)

    def demote(match: re.Match[str]) -> str:
        return f"<{match.group(1)}h{min(6, int(match.group(2)) + shift)}"

    return _HEADING_RE.sub(demote, body_html)


class _TopLevel(HTMLParser):
    """Where each top-level element of an HTML fragment ends (character offsets)."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self._text = text
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self._depth = 0
        self.ends: list[int] = []

    def _offset(self) -> int:
        line, column = self.getpos()
        return self._line_starts[line - 1] + column

    def _tag_end(self) -> int:
        end = self._text.find(">", self._offset())
        return len(self._text) if end < 0 else end + 1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _VOID_TAGS:
            self._depth += 1
        elif self._depth == 0:
            self.ends.append(self._tag_end())

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._depth == 0:
            self.ends.append(self._tag_end())

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID_TAGS or self._depth == 0:
            return
        self._depth -= 1
        if self._depth == 0:
            self.ends.append(self._tag_end())


def _cost(fragment: str) -> int:
    """Bytes a piece of body adds to the HTML part once premailer has styled its tags."""
    return len(fragment.encode("utf-8")) + _INLINED_PER_TAG * fragment.count("<")


@dataclass(frozen=True, slots=True)
class MailBody:
    """An article's body as a message carries it: headings demoted, and for a long article
    only its opening top-level blocks (``cut``), so that the HTML part keeps its budget."""

    html: Markup
    cut: bool

    def text(self, width: int = TEXT_WIDTH) -> str:
        """The same body as plain text (``plain_text``)."""
        return plain_text(str(self.html), width=width)


def mail_body(body_html: str, budget: int = FORWARD_BODY_BUDGET) -> MailBody:
    """``body_html`` with its headings demoted, cut after the last top-level block (a
    paragraph, a list, a table) that fits ``budget`` when the whole does not."""
    body = demote_headings(body_html)
    if _cost(body) <= budget:
        return MailBody(Markup(body), cut=False)
    blocks = _TopLevel(body)
    blocks.feed(body)
    blocks.close()
    kept, spent = 0, 0
    for end in blocks.ends:
        spent += _cost(body[kept:end])
        if spent > budget:
            break
        kept = end
    if kept == 0:  # one block larger than the budget: its opening words, as a paragraph
        words = plain_text(body, width=0)[: budget // 2]
        opening = words.rsplit(" ", 1)[0] if " " in words else words
        return MailBody(Markup("<p>{}&hellip;</p>").format(opening), cut=True)
    return MailBody(Markup(body[:kept]), cut=True)


class _PlainText(HTMLParser):
    """An article body's HTML as readable plain text: paragraphs wrapped, headings
    underlined, lists with bullets or numbers, quotes with ``> ``, code kept as it is,
    links as ``text <url>``."""

    def __init__(self, width: int) -> None:
        super().__init__(convert_charrefs=True)
        self.width = width
        self.blocks: list[tuple[str, bool]] = []  # (text, inside a list)
        self._inline: list[str] = []
        self._links: list[tuple[str | None, int]] = []
        self._lists: list[list[int]] = []  # [number] for ol, [] for ul
        self._bullet = ""
        self._quote = 0
        self._pre = False
        self._heading = 0
        self._cells = 0

    def _indents(self) -> tuple[str, str]:
        """The first line's and the next lines' prefixes for the current nesting."""
        lead = "> " * self._quote + "   " * max(0, len(self._lists) - 1)
        bullet, self._bullet = self._bullet, ""
        if bullet:
            return lead + bullet, lead + " " * len(bullet)
        inside = lead + ("  " if self._lists else "")  # a paragraph inside a list item
        return inside, inside

    def _flush(self) -> None:
        raw = "".join(self._inline)
        self._inline = []
        if self._pre:
            return
        first, rest = self._indents()
        lines = []
        for part in raw.split("\x00"):
            words = " ".join(part.split())
            if not words:
                continue
            if self.width <= 0:
                lines.append(first + words)
            else:
                lines.append(
                    textwrap.fill(
                        words,
                        width=self.width,
                        initial_indent=first,
                        subsequent_indent=rest,
                        break_long_words=False,
                        break_on_hyphens=False,
                    )
                )
            first = rest
        if lines and self._heading:
            # Underlined, as far as its longest line: "=" for the body's top level, "-" below.
            longest = max(len(line) for line in "\n".join(lines).split("\n"))
            mark = "=" if self._heading <= _BODY_HEADING else "-"
            lines.append(rest + mark * (longest - len(rest)))
        if lines:
            self.blocks.append(("\n".join(lines), bool(self._lists)))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag in _BLOCK_TAGS or tag == "tr":
            self._flush()
            self._cells = 0
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._flush()
            self._heading = int(tag[1])
        elif tag in ("ul", "ol"):
            self._flush()
            self._lists.append([0] if tag == "ol" else [])
        elif tag == "li":
            self._flush()
            numbers = self._lists[-1] if self._lists else []
            if numbers:
                numbers[0] += 1
                self._bullet = f"{numbers[0]}. "
            else:
                self._bullet = "- "
        elif tag == "blockquote":
            self._flush()
            self._quote += 1
        elif tag == "pre":
            self._flush()
            self._pre = True
        elif tag in ("td", "th"):
            if self._cells:
                self._inline.append(" | ")
            self._cells += 1
        elif tag == "a":
            self._links.append((attr.get("href"), len(self._inline)))
        elif tag == "img":
            alt = " ".join((attr.get("alt") or "").split())
            if alt:
                self._inline.append(f" [Image: {alt}] ")
        elif tag == "br":
            self._inline.append("\n" if self._pre else "\x00")
        elif tag == "hr":
            self._flush()
            self.blocks.append(("* * *", False))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCK_TAGS or tag in ("li", "tr"):
            self._flush()
        elif tag in ("h1", "h2", "h3", "h4", "h5", "h6"):
            self._flush()
            self._heading = 0
        elif tag in ("ul", "ol"):
            self._flush()
            if self._lists:
                self._lists.pop()
        elif tag == "blockquote":
            self._flush()
            self._quote = max(0, self._quote - 1)
        elif tag == "pre":
            code = "".join(self._inline).strip("\n")
            self._inline = []
            self._pre = False
            prefix = "> " * self._quote + "    "
            if code:
                self.blocks.append(("\n".join(prefix + line for line in code.split("\n")), False))
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            label = " ".join("".join(self._inline[start:]).split())
            if href and re.match(r"(?i)(https?|mailto):", href):
                shown = href.removeprefix("mailto:")
                if label in (href, shown):
                    self._inline[start:] = [f"<{shown}>"]
                else:
                    self._inline.append(f" <{href}>")

    def handle_data(self, data: str) -> None:
        self._inline.append(data)

    def text(self) -> str:
        self._flush()
        out: list[str] = []
        previous_in_list = False
        for block, in_list in self.blocks:
            if out:
                out.append("\n" if in_list and previous_in_list else "\n\n")
            out.append(block)
            previous_in_list = in_list
        return "".join(out)


def plain_text(body_html: str, width: int = TEXT_WIDTH) -> str:
    """An article body (its HTML) as readable plain text wrapped at ``width`` columns (0: no
    wrapping); a word longer than a line (an address) is never split."""
    reader = _PlainText(width)
    reader.feed(body_html)
    reader.close()
    return reader.text()
