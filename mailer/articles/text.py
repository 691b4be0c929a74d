"""Plain-text articles copied from web pages: "Key: value" header lines, then the story,
told from the page furniture around it by the classifier in ``articles.classify``.

The title is the headline-shaped line closest above the story's first paragraph; the summary
is that paragraph; bylines and datelines give the author and the date when the header does
not. The clutter patterns are hints only: a short line a default one matches is furniture,
and what a user's pattern (MAILER_CLUTTER_PATTERNS) matches always is.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

from mailer.articles.classify import (
    Item,
    classify,
    fallback_story,
    is_heading,
    story_of,
    title_of,
)
from mailer.articles.fields import FIELD_LIMITS, Meta, Parts, day_first_of, read_date
from mailer.articles.furniture import CREDIT_RE, DATEISH_RE, END, is_nav
from mailer.articles.names import (
    bio_name,
    byline_name,
    leading_name,
    name_with_role,
    signature_name,
)
from mailer.articles.words import LANGUAGES
from mailer.errors import InputError

# Lines that scraped pages carry around a story. They are a hint to the classifier only:
# a short item one of them matches is furniture. Users add their own with
# MAILER_CLUTTER_PATTERNS (a JSON list of regexes); theirs always drop what they match.
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
_DEFAULT_SET = frozenset(DEFAULT_CLUTTER_PATTERNS)
# The credit that ends a caption: "… on Friday. Picture: Sam Hill", "(Photo: AP)".
_CREDIT_TAIL_RE = re.compile(
    r"[\s(\[|–—-]*\b(photo(graph)?s?|pictures?|image|foto|fotografía|crédit photo|credit|"
    r"illustration)\b\s*(by\b|:|©|\|).*$",
    re.IGNORECASE,
)

_HEADER_KEYS = {"title", "date", "url", "author", "summary", "tags", "image", "image_alt"}
_HEADER_RE = re.compile(r"^([A-Za-z][A-Za-z_-]*):\s*(.*)$")
DATE_CANDIDATES = 4  # at most this many lines are handed to the date parser
CONSIDERED_SHOWN = 3  # lines named in the "no title" error


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

    hints = [p for p in clutter if p.pattern in _DEFAULT_SET]
    users = [p for p in clutter if p.pattern not in _DEFAULT_SET]
    items, language = classify(lines, start, hints, users)

    title = meta.text("title")
    if title is not None:
        # A page copied whole repeats its headline under the header: never story text.
        wanted = " ".join(title.split()).casefold()
        for item in items:
            if " ".join(item.text.split()).casefold() == wanted:
                item.good, item.kind = False, item.kind or "title"
    story, first = story_of(items)
    if title is None:
        headline = title_of(items, first)
        if headline is None:
            raise InputError(_no_title(path, items))
        meta.values["title"] = headline.text.lstrip("#").strip()  # "# Headline", as in Markdown
        meta.lines["title"] = headline.line
        if first is None:
            story = fallback_story(items, items.index(headline) + 1)
    elif first is None:
        story = fallback_story(items, 0)
    end = items.index(story[-1]) + 1 if story else len(items)
    code = LANGUAGES.get(language, "en")
    _facts(items, first, end, meta, code, day_first_of(text) if code == "en" else None)

    caption = next((item.text for item in items[:end] if item.kind == "caption"), None)
    if caption is not None and "caption" not in meta.values:
        # The page's caption describes its picture: the image's alt text, without the credit.
        alt = _CREDIT_TAIL_RE.sub("", caption).strip()
        if len(alt.split()) >= 2:
            meta.values["caption"] = alt[: FIELD_LIMITS["caption"]]

    paragraphs = [item.text for item in story]
    lead = next((item.text for item in story if not is_heading(item)), "")
    body_html = "".join(f"<p>{html.escape(p, quote=False)}</p>\n" for p in paragraphs)
    return meta, Parts(body_html, "\n\n".join(paragraphs), lead)


def _no_title(path: Path, items: Sequence[Item]) -> str:
    shown = []
    for item in items[:CONSIDERED_SHOWN]:
        text = item.text if len(item.text) <= 30 else item.text[:29] + "…"
        text = "".join(c if c.isprintable() else "\ufffd" for c in text)
        why = f" ({item.kind})" if item.kind else ""
        shown.append(f"line {item.line} {text!r}{why}")
    considered = "; ".join(shown) if shown else "none"
    return (
        f"{path}: no title found (looked at {considered}); "
        "add a line 'Title: <headline>' at the top of the file"
    )


def _facts(
    items: list[Item], first: Item | None, end: int, meta: Meta, code: str, day_first: bool | None
) -> None:
    """Author and date from bylines and datelines, unless the header gave them (``end``: the
    index of the item after the story's last)."""
    top = items[: items.index(first)] if first is not None else items
    if "author" not in meta.values:
        author = _author(items, len(top) if first is not None else len(items), end)
        if author:
            meta.values["author"] = author
    if "date" not in meta.values:
        candidates = [i for i in top if i.kind in ("dateline", "byline", "readtime")]
        candidates += [i for i in items[len(top) :] if i.kind == "dateline"]
        texts = [item.text[:200] for item in candidates[:DATE_CANDIDATES]]
        if first is not None:
            # A wire story's dateline opens its first paragraph: "WHITBY, 4 May 2026 — The..."
            opening = re.split(r"\s[—–-]\s", first.text[:100], maxsplit=1)
            if len(opening) == 2:
                texts.append(opening[0])
        for text in texts:
            if DATEISH_RE.search(text):
                when = read_date(text, code, day_first=day_first)
                if when:
                    meta.values["date"] = when
                    break


def _author(items: Sequence[Item], story_start: int, story_end: int) -> str | None:
    """The name in the first byline (up to the furniture that ends the story: bylines after
    it are other stories'), or else in a wire story's "Reporting by" credit, a note on the
    writer, or a letter's signature."""
    for n, item in enumerate(items):
        if item.kind in END and n > story_start:
            break
        name = None
        if item.kind in ("byline", "dateline", "readtime"):
            name = _byline_anywhere(item.text)
        if item.kind == "byline" and not name:
            name = leading_name(item.text, whole=True)
        if name:
            return name
    for item in items:
        if item.kind == "credit" and re.match(r"\W*\w+ by\b", item.text, re.IGNORECASE):
            name = leading_name(CREDIT_RE.sub("", item.text, count=1), whole=False)
            if name:
                return name
    # A note on the writer under the story: "Priya Raman is a writer based in Bristol."
    for item in reversed(items[story_start:]):
        name = bio_name(item.text) if item.words <= 40 else None
        if name:
            return name
    # A letter's or a column's signature: a name alone on the line after the story.
    for item in items[story_end : story_end + 2]:
        name = signature_name(item.text) if item.kind is None and item.lines == 1 else None
        if name and not is_nav(name):
            return name
    return None


def _byline_anywhere(text: str) -> str | None:
    name = byline_name(text) or name_with_role(text)
    if name:
        return name
    match = re.search(r"(?i:\b(?:by|par|von|por))\s+", text[:200])
    if match:
        return leading_name(text[match.end() : 200], whole=False)
    # "Karen Hughes | 2 March 2026 | 3 min read": a name alone between the separators.
    parts = re.split(r"\s*[|•·]\s*", text[:200])
    for part in parts if len(parts) >= 2 else ():
        name = leading_name(part, whole=True)
        if name and len(name.split()) >= 2 and not DATEISH_RE.search(part) and not is_nav(name):
            return name
    return None
