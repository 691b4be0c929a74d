"""A small classifier of the blocks of a scraped page, after jusText: each item (a paragraph,
or a line of a page copied without blank lines) is good, near-good, short or bad by its length
and stopword density, or page furniture by its shape; then near-good and short items take
the class of their neighbours. The story is the main run of good items, and the title the
headline-shaped line closest above it.

The stopword lists are jusText's (``articles.stopwords``).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailer.articles.fields import MAX_TITLE_CHARS
from mailer.articles.furniture import END, INLINE, furniture_kind, is_marker
from mailer.articles.names import is_role, leading_name
from mailer.articles.words import CLOSERS, LETTER_RE, is_sentence, language_of, stoplist, words_of

# The classifier's settings: jusText's, by characters, with a lower bar for a "good" item
# (plain-text paragraphs are shorter than HTML ones).
LENGTH_LOW = 70  # shorter items are "short": their neighbours decide
LENGTH_HIGH = 140  # longer items with many stopwords are "good" on their own
STOPWORDS_LOW = 0.30
STOPWORDS_HIGH = 0.32
WRAP_WIDTH_MAX = 120  # lines of a hard-wrapped paragraph are at most this long
PATTERN_CHARS = 600  # furniture is looked for in the first characters of an item only
FURNITURE_MAX_WORDS = 120  # a longer item is never furniture
NEAR_ROW = 3  # this many near-good items in a row are good
SENTENCE_TITLE = 14  # a headline written as a sentence has at most this many words
LABELLED_ITEMS = 20  # the most lines a list's label ("Key points") heads
PULL_QUOTE_SCAN_CHARS = 200_000  # a longer story is not searched for repeated quotes
PULL_QUOTE_CHECKS = 50  # short items looked for inside the others, at most

LOWER_START_RE = re.compile(r"[^\w]*[^\W\d_]")
_CELL_RE = re.compile(r"\s{3,}|\t+")
_CELL2_RE = re.compile(r"\s{2,}|\t+")


@dataclass(eq=False)
class Item:
    """One paragraph, or one line of a page copied without blank lines."""

    text: str
    line: int  # where it starts in the file, from 1
    lines: int
    words: int = 0
    density: float = 0.0
    kind: str | None = None  # the kind of furniture, or None
    base: str = "bad"  # good, near, short or bad, on its own
    good: bool = False  # after its neighbours had their say
    headline: int = 0  # 1: headline-shaped, 2: only just (two words, or long), 0: not
    cells: int = 1  # parts of a line laid out in columns (``Home   Recipes   About``)


def classify(
    lines: Sequence[str],
    start: int,
    hints: Sequence[re.Pattern[str]],
    users: Sequence[re.Pattern[str]],
) -> tuple[list[Item], str]:
    """The items of the text from line ``start`` on, each classed, and the text's language.
    ``hints`` are patterns of furniture for short items; what ``users`` match always is."""
    items = _items_of(lines, start)
    language = language_of(item.text for item in items)
    stopwords = stoplist(language)
    for item in items:
        _describe(item, stopwords, hints, users)
    _names_beside_dates(items)
    _labelled_lists(items)
    _resolve(items)
    return items, language


def _items_of(lines: Sequence[str], start: int) -> list[Item]:
    """Paragraphs between blank lines; in a block of lines that were not wrapped from one
    paragraph (a page copied without blank lines), each line is an item of its own."""
    items: list[Item] = []
    block: list[str] = []
    block_start = start
    for number in range(start, len(lines) + 1):
        stripped = lines[number].strip() if number < len(lines) else ""
        if stripped:
            if not block:
                block_start = number
            block.append(stripped)
            continue
        if block:
            items.extend(_split_block(block, block_start + 1))
            block = []
    return items


def _item(lines: list[str], line: int) -> Item:
    item = Item(" ".join(" ".join(lines).split()), line, len(lines))
    if len(lines) == 1 and len(lines[0]) <= 300:
        cells = _CELL2_RE.split(lines[0].strip())
        if any(is_sentence(cell) for cell in cells[:-1]):  # "It rained.  We left."
            cells = _CELL_RE.split(lines[0].strip())
        item.cells = len(cells)
    return item


def _split_block(block: list[str], first_line: int) -> list[Item]:
    """Lines of furniture stand alone; between them, a run of three or more lines that are
    full (the next word would not have fitted on the line) is a hard-wrapped paragraph;
    other lines join only where a sentence was broken in the middle."""
    items: list[Item] = []
    run: list[str] = []
    run_start = first_line
    for i, line in enumerate(block):
        if is_marker(line):
            items.extend(_split_run(run, run_start))
            items.append(_item([line], first_line + i))
            run = []
            continue
        if not run:
            run_start = first_line + i
        run.append(line)
    items.extend(_split_run(run, run_start))
    return items


def _split_run(run: list[str], first_line: int) -> list[Item]:
    if not run:
        return []
    width = max(len(line) for line in run)
    full = [_is_full(line, following, width) for line, following in itertools.pairwise(run)]
    if len(run) >= 3 and all(_starts_item(a, b) for a, b in itertools.pairwise(run)):
        full = [False] * len(full)  # "Key points" lines, a list of links: one item each
    if len(run) >= 3 and width <= WRAP_WIDTH_MAX and all(full):
        return [_item(run, first_line)]
    # Most lines full: a paragraph wrapped by hand, raggedly.
    wrapped = len(run) >= 3 and width <= WRAP_WIDTH_MAX and sum(full) >= 0.6 * len(full)
    items: list[Item] = []
    current: list[str] = []
    current_start = first_line
    for i, line in enumerate(run):
        if not current:
            current_start = first_line + i
        current.append(line)
        following = run[i + 1] if i + 1 < len(run) else ""
        if not following or not _continues(
            line, following, full[i] and width <= WRAP_WIDTH_MAX, wrapped
        ):
            items.append(_item(current, current_start))
            current = []
    return items


def _starts_item(line: str, following: str) -> bool:
    """Whether ``following`` opens an item of a list: a capital or a digit after a line that
    ends without a sentence's or a clause's mark."""
    first = following.lstrip("-•*–· ")[:1]
    return (first.isupper() or first.isdigit()) and line.rstrip(CLOSERS)[-1:] not in ",;-–—"


def _is_full(line: str, following: str, width: int) -> bool:
    return len(line) >= 40 and len(line) + 1 + len(following.split()[0]) > width


def _continues(line: str, following: str, full: bool, wrapped: bool) -> bool:
    """Whether ``following`` goes on with the paragraph of ``line``: a sentence broken in the
    middle, a full line of a wrapped paragraph, or a full line after which a sentence (not a
    headline) goes on."""
    if full and wrapped:
        return True
    bare = line.rstrip(CLOSERS)
    first = following[:1]
    if bare[-1:] in (".", "!", "?", ":", "…"):
        return full and wrapped
    if first.islower() or first in ",;)–—":
        return True
    return full and bare[-1:] in (",", ";", "-", "–", "—")


def _describe(
    item: Item,
    stopwords: frozenset[str],
    hints: Sequence[re.Pattern[str]],
    users: Sequence[re.Pattern[str]],
) -> None:
    text = item.text
    words = words_of(text)
    item.words = len(words)
    if words:
        item.density = sum(w.lower() in stopwords for w in words) / len(words)
    head = text[:PATTERN_CHARS]
    if any(p.match(head) for p in users):
        item.kind = "user"
    elif item.words <= FURNITURE_MAX_WORDS:
        item.kind = furniture_kind(head, words, hints)
        if item.kind is None and item.cells >= 3 and item.words <= 4 * item.cells:
            item.kind = "nav"
    sentence = is_sentence(text)
    if item.kind is not None or not LETTER_RE.search(head):
        item.base = "bad"
    elif len(text) >= LENGTH_LOW or (sentence and item.words >= 8):
        if item.density >= STOPWORDS_HIGH:
            item.base = "good" if len(text) >= LENGTH_HIGH else "near"
        elif item.density >= STOPWORDS_LOW:
            item.base = "near"
        else:
            item.base = "bad"
    else:
        item.base = "short"
    if item.kind is None and item.lines == 1 and LETTER_RE.search(head):
        item.headline = _headline_rank(text, item.words)


def _headline_rank(text: str, words: int) -> int:
    """1 for a headline's shape (3 to 20 words, no closing full stop), 2 for one only just."""
    if len(text) > MAX_TITLE_CHARS or words < 2 or words > 30:
        return 0
    bare = text.rstrip(CLOSERS)
    if sum(w.isdigit() for w in words_of(text)) * 2 >= words:
        return 0  # "2 maart 2026, 09:12", "Issue 41 · 9"
    if bare.endswith(".") and not bare.endswith("...") and words <= 20 and _title_case(text):
        return 1  # "Nurses Are Leaving. One Hospital Is Trying to Make Them Stay."
    if bare.endswith(".") and not bare.endswith("...") and 3 <= words <= SENTENCE_TITLE:
        return 3  # "Our high streets don't need saving. They need changing."
    if bare.endswith((".", ":", ";", ",", "|", "-", "–", "—")) and not bare.endswith("..."):
        return 0
    start = LOWER_START_RE.match(text)
    if not 3 <= words <= 20 or (start and start.group()[-1].islower()):
        return 2  # "notes from a small garden": a site's name, styled
    # A few capitalised words are a name: the site's, a section's, a person's, a place's.
    return 2 if words <= 4 and _title_case(text, least=2) else 1


def _title_case(text: str, least: int = 3) -> bool:
    """Whether nearly every word longer than three letters starts with a capital."""
    long_words = [w for w in words_of(text) if len(w) > 3 or w.isupper()]
    capitals = sum(w[:1].isupper() for w in long_words)
    return len(long_words) >= least and capitals >= 0.8 * len(long_words)


def _labelled_lists(items: list[Item]) -> None:
    """The lines under a list's label ("Key points:", "On this page", "Key events") up to the
    next blank line (or, for a label standing alone, those of the next block) are its list."""
    for n, label in enumerate(items):
        if label.kind != "label":
            continue
        end = label.line + label.lines
        for item in items[n + 1 : n + 1 + LABELLED_ITEMS]:
            if item.kind == "label" or item.lines > 1 or item.words > 30:
                break
            if item.line != end and not (end == label.line + label.lines and item.line > end):
                break  # a blank line after the list
            item.kind, item.base, item.headline = "list", "bad", 0
            end = item.line + 1


def _names_beside_dates(items: list[Item]) -> None:
    """A line that is only a name (``Marta Klein``), next to a dateline, is a byline."""
    for i, item in enumerate(items):
        if item.kind is not None or not 2 <= item.words <= 5 or item.lines != 1:
            continue
        neighbours = items[max(i - 1, 0) : i] + items[i + 1 : i + 2]
        if not any(n.kind in ("dateline", "readtime") for n in neighbours):
            continue
        name = leading_name(item.text, whole=True)
        if name is not None and len(name.split()) >= 2:
            item.kind, item.base, item.headline = "byline", "bad", 0
    # The writer's job on the line beside the byline ("Local democracy reporter").
    for i, item in enumerate(items):
        neighbours = items[max(i - 1, 0) : i] + items[i + 1 : i + 2]
        if item.kind is None and is_role(item.text) and any(n.kind == "byline" for n in neighbours):
            item.kind, item.base, item.headline = "role", "bad", 0


def _resolve(items: list[Item]) -> None:
    """Near-good items are good beside a good one; short items between two good ones.
    Inline furniture (an advertisement, a caption) is looked through, as if absent."""
    if not any(item.base == "good" for item in items):
        for item in items:  # a short story: its best items are its good ones
            if item.base == "near":
                item.base = "good"
    # Three near-good sentences in a row are a story told in short paragraphs.
    rows: list[list[Item]] = [[]]
    for item in items:
        if item.base == "near" and is_sentence(item.text):
            rows[-1].append(item)
        elif item.kind not in INLINE:
            rows.append([])
    for row in rows:
        if len(row) >= NEAR_ROW:
            for near in row:
                near.base = "good"
    for item in items:
        item.good = item.base == "good"
    _settle(items, "near", lambda before, after: before or after)
    for item in items:
        if item.base == "near" and not item.good and is_sentence(item.text):
            item.base = "short"
    _settle(items, "short", lambda before, after: before and after)
    # A short sentence that opens or closes the story ("It finally happened.", "He declined
    # to comment."), right before or after a good item.
    for n, item in enumerate(items):
        if (
            not item.good
            and item.base == "short"
            and item.kind is None
            and item.words >= 3
            and is_sentence(item.text)
            and item.density >= STOPWORDS_HIGH
            and (
                (n + 1 < len(items) and items[n + 1].base == "good")
                or (n > 0 and items[n - 1].good and item.words >= 4)
            )
        ):
            item.good = True


def _settle(items: list[Item], base: str, rule: Callable[[bool, bool], bool]) -> None:
    """Give the items of class ``base`` the class their nearest decided neighbours give."""
    decided = [item.base not in ("short", base) and item.kind not in INLINE for item in items]
    before = [False] * len(items)
    seen = False
    for i, item in enumerate(items):
        before[i] = seen
        if decided[i]:
            seen = item.good
    after = [False] * len(items)
    seen = False
    for i in range(len(items) - 1, -1, -1):
        after[i] = seen
        if decided[i]:
            seen = items[i].good
    for i, item in enumerate(items):
        if item.base == base and item.kind is None:
            item.good = rule(before[i], after[i])


def is_heading(item: Item) -> bool:
    return item.headline > 0 and not is_sentence(item.text) and item.words <= 20


def story_of(items: list[Item]) -> tuple[list[Item], Item | None]:
    """The story's items, and its first paragraph: the main run of good items.

    Runs of good items are parted by stretches of other items with furniture that ends a
    story (share lines, related links, copyright) or with three or more items that are not
    inline furniture. The main run is the first one that stands under a headline and is not
    much smaller than the largest; runs after it belong to it until furniture ends the story.
    """
    runs: list[tuple[list[Item], bool, bool]] = []  # items, headline above, ends before
    current: list[Item] | None = None
    gap: list[Item] = []
    for item in items:
        if item.good:
            if current is None or _breaks(gap):
                current = []
                above = any(g.headline for g in gap)
                runs.append((current, above, any(g.kind in END for g in gap)))
            current.append(item)
            gap = []
        else:
            gap.append(item)
    paragraphs = [r for r in runs if any(not is_heading(i) for i in r[0])]
    if not paragraphs:
        return [], None
    size = [sum(i.words for i in r[0]) for r in paragraphs]
    largest = max(size)
    main = next(
        (n for n, r in enumerate(paragraphs) if r[1] and size[n] * 4 >= largest),
        size.index(largest),
    )
    story = list(paragraphs[main][0])
    for run in paragraphs[main + 1 :]:
        if run[2]:
            break
        story.extend(run[0])
    while story and is_heading(story[-1]):
        story.pop()
    story = _without_pull_quotes(story)
    first = next(i for i in story if not is_heading(i))
    return story[story.index(first) :], first


def _without_pull_quotes(story: list[Item]) -> list[Item]:
    """Without a short item whose words are repeated inside a longer one (a pull quote)."""
    keys = [" ".join(words_of(item.text)).casefold() for item in story]
    everything = "\n".join(keys)
    if len(everything) > PULL_QUOTE_SCAN_CHARS:
        return story
    same = Counter(keys)
    kept = []
    checked = 0
    for item, key in zip(story, keys, strict=True):
        if key and item.words <= 40 and checked < PULL_QUOTE_CHECKS:
            checked += 1
            if everything.count(key) > same[key]:
                continue
        kept.append(item)
    return kept


def _breaks(gap: Sequence[Item]) -> bool:
    if any(g.kind in END for g in gap):
        return True
    return sum(g.kind not in INLINE for g in gap) >= 3


def fallback_story(items: Sequence[Item], start: int) -> list[Item]:
    """With no good item at all: every item after the headline that is no furniture."""
    return [item for item in items[start:] if item.kind is None and item.base != "bad"] or [
        item for item in items[start:] if item.kind is None
    ]


def title_of(items: list[Item], first: Item | None) -> Item | None:
    """The headline-shaped item closest above the first paragraph; with no paragraph, the
    first headline-shaped item (an all-capitals one, often the site's name, only when no
    other follows close after it)."""
    if first is not None:
        above = items[: items.index(first)]
        # A contents list repeats the story's section headings: none is the title.
        sections = {_key(i) for i in items[len(above) :] if i.good and is_heading(i)}
        sections |= {_key(i) for i in above if i.kind == "list"}  # "Contents: 1. Background"
        for rank in (1, 2, 3):
            for n in range(len(above) - 1, -1, -1):
                if above[n].headline == rank and _key(above[n]) not in sections:
                    return _above_dek(above, n, sections)
    for rank in (1, 2):
        found = [i for i, item in enumerate(items) if item.headline == rank]
        for n, i in enumerate(found):
            if items[i].text.isupper() and any(j - i <= 3 for j in found[n + 1 :]):
                continue
            return items[i]
    return None


def _key(item: Item) -> str:
    """The words of an item, case-folded, without a leading number ("1. Background")."""
    words = words_of(item.text)
    while words and words[0].isdigit():
        words.pop(0)
    return " ".join(words).casefold()


def _above_dek(items: list[Item], n: int, sections: set[str]) -> Item:
    """The headline, when ``items[n]`` is the standfirst printed right under it."""
    item = items[n]
    if n == 0:
        return item
    upper = items[n - 1]
    if upper.headline == 3 and upper.words < item.words and item.headline != 3:
        return upper  # a headline written as a sentence, and its standfirst
    # A short line above (a site's name, a section) is not the headline.
    if upper.headline != 1 or upper.text.isupper() or upper.words < 5 or _key(upper) in sections:
        return item
    # Nor is a site's motto under its name ("Westfield Weekly" / "Independent news for...").
    masthead = items[n - 2] if n >= 2 else None
    if (
        masthead is not None
        and masthead.kind is None
        and masthead.line + masthead.lines == upper.line  # the motto right under the name
        and masthead.words <= 5
        and (masthead.text.isupper() or _title_case(masthead.text, least=1))
    ):
        return item
    return upper
