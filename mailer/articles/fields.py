"""The fields of one article file as written, checked; dates as written, parsed, and dates
read from a page's text (by dateparser, which knows many languages and formats)."""

from __future__ import annotations

import datetime as dt
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailer.articles.furniture import DATEISH_RE
from mailer.errors import InputError
from mailer.headers import TEXT_CONTROLS

MAX_TITLE_CHARS = 200
MAX_TAGS = 50
DAY_FIRST_SAMPLE = 50_000  # characters looked at to tell how a text writes its dates
_NUMERIC_DATE_RE = re.compile(r"\b(\d{1,2})[./](\d{1,2})[./](?:\d{4}|\d{2})\b")
_BRITISH_RE = re.compile(
    r"£|\b(colou?rs?|favourite|centre|metres?|litres?|programme|neighbour|travelled|whilst"
    r"|organis|realis|recognis|apologis|defence|licence|tyres?|kerb|pavement|councillor)",
    re.IGNORECASE,
)
_AMERICAN_RE = re.compile(
    r"\$\d|\b(color|favorite|center|meters?|liters?|neighbor|traveled|organiz|realiz"
    r"|recogniz|apologiz|defense|sidewalk|tires?|curb|councilman)",
    re.IGNORECASE,
)
EXCERPT_CHARS = 60  # the most of a bad value an error message quotes

# The longest value of each field, in characters, once runs of white space are joined.
FIELD_LIMITS = {
    "title": MAX_TITLE_CHARS,
    "author": 200,
    "slug": 200,
    "url": 2048,
    "source": 2048,
    "image": 2048,
    "image_alt": 500,
    "caption": 500,
    "summary": 20_000,
    "date": 100,
    "tags": 100,  # each tag
}
# Never in a field: controls, bidirectional embeddings, overrides and isolates (text that
# reads other than it is), a stray byte order mark, and a newline but in the summary.
_FIELD_CONTROLS = TEXT_CONTROLS + "\u202a-\u202e\u2066-\u2069\ufeff"
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


@dataclass
class Meta:
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
                f"{self.where(key)}: '{key}' is longer than {limit} characters: {excerpt(text)}"
            )
        return text


@dataclass(frozen=True)
class Parts:
    """What the body gives: its HTML and text, and the paragraph a summary is made from."""

    body_html: str
    body_text: str
    first_para: str


def excerpt(text: str) -> str:
    """``text`` quoted for an error line: at most ``EXCERPT_CHARS`` characters, printable."""
    if len(text) > EXCERPT_CHARS:
        text = text[: EXCERPT_CHARS - 1] + "…"
    return repr("".join(c if c.isprintable() else "\ufffd" for c in text))


def one_line(text: str) -> str:
    """A YAML problem as one short line (it may quote the input)."""
    text = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return text if len(text) <= 2 * EXCERPT_CHARS else text[: 2 * EXCERPT_CHARS - 1] + "…"


def parse_date_text(text: str) -> dt.date | dt.datetime | None:
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


def day_first_of(text: str) -> bool | None:
    """Whether an English text writes ``02/03/2026`` day first: as a date of it that can only
    be read one way does (``14/03/2026``), else as its spelling and money do (British
    ``colour``, ``£``; American ``color``, ``$``); None when nothing tells."""
    sample = text[:DAY_FIRST_SAMPLE]
    for first, second in _NUMERIC_DATE_RE.findall(sample)[:20]:
        if int(first) > 12 >= int(second):
            return True
        if int(second) > 12 >= int(first):
            return False
    british = len(_BRITISH_RE.findall(sample))
    american = len(_AMERICAN_RE.findall(sample))
    return None if british == american else british > american


def read_date(text: str, code: str, *, day_first: bool | None = None) -> str | None:
    """The first date in a short line, as ISO text (with its time and offset when the line
    gives both); None when there is none. Dates relative to today ("2 hours ago") and dates
    without a day, month and year are not read. ``02/03/2026`` is read day first unless the
    language is English (``day_first`` says otherwise: a British page's)."""
    if day_first is None:
        day_first = code != "en"
    languages = [code] if code == "en" else [code, "en"]
    settings: dict[str, Any] = {
        "PARSERS": ["custom-formats", "absolute-time"],
        "REQUIRE_PARTS": ["day", "month", "year"],
        "PREFER_LOCALE_DATE_ORDER": False,
        "DATE_ORDER": "DMY" if day_first else "MDY",
    }
    for part in re.split(r"\s*[|•·]\s*", text):
        match = DATEISH_RE.search(part)
        if match is None:
            continue
        for attempt in (part[match.start() :], match.group(), part):
            when = _parse_date(attempt, languages, settings)
            if when is not None:
                offset = when.utcoffset() if when.tzinfo is not None else None
                if offset is not None and (when.hour, when.minute) != (0, 0):
                    return when.replace(microsecond=0).isoformat()
                return when.date().isoformat()
    return None


def _parse_date(text: str, languages: list[str], settings: dict[str, Any]) -> dt.datetime | None:
    # dateparser takes half a second to import: only when a text needs a date read.
    import dateparser
    from dateparser.search import search_dates

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            when = dateparser.parse(text, languages=languages, settings=settings)
            if when is None and len(text) > 12:
                found = search_dates(text, languages=languages, settings=settings) or ()
                when = next((w for _, w in found), None)
    except Exception:  # dateparser has no error type of its own: a text it cannot read
        return None
    if not isinstance(when, dt.datetime) or not 1 <= when.year <= 9999:
        return None
    return when
