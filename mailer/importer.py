"""The import use case: a feed's new items, or one web page, fetched and written as
Markdown article files (never over a file that exists, each item once)."""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import hashlib
import html
import os
import re
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import feedparser
import filelock
import httpx

from mailer import __version__
from mailer.articles import (
    SUMMARY_CHARS,
    clean_field,
    cut_at_word,
    decode_html,
    html_to_markdown,
    markdown_article,
    parse_date_text,
    read_page,
    recorded_sources,
)
from mailer.csvfile import fsync_dir
from mailer.errors import FetchError, InputError, MailerError
from mailer.headers import is_web_url, slugify

USER_AGENT = f"mailer/{__version__} (newsletter article import; +https://pypi.org/project/mailer/)"
MAX_FEED_ITEMS = 1000  # the newest first, as feeds list them; the rest are reported skipped
MAX_SLUG_CHARS = 60
LOCK_NAME = ".mailer-import.lock"
_ACCEPT = (
    "application/atom+xml, application/rss+xml, application/xml;q=0.9, text/xml;q=0.9, "
    "text/html;q=0.8, */*;q=0.5"
)
_FEED_START_RE = re.compile(rb"\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*<(rss|feed|rdf:RDF)\b", re.S)
_HTML_START_RE = re.compile(
    rb"\s*(<\?xml[^>]*>\s*)?(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)\b", re.S | re.I
)
_TAG_RE = re.compile(r"<[^>]*>")
EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)  # dates before are taken as none


@dataclass(frozen=True)
class FetchPolicy:
    """How a fetch is bounded: seconds for the whole fetch, bytes, and redirects."""

    timeout: float = 30.0
    max_bytes: int = 10 * 1024 * 1024
    max_redirects: int = 5


@dataclass(frozen=True)
class Fetched:
    url: str  # after redirects
    content_type: str
    charset: str | None
    body: bytes


@dataclass(frozen=True)
class Item:
    """One article to write: its front matter fields, its body, and how it is known."""

    key: str  # the feed item's id, or its link, or the page's link
    fields: dict[str, str]
    body: str
    published: dt.datetime | None


Outcome = Literal["wrote", "already imported", "older than --since", "no title"]


@dataclass(frozen=True)
class Report:
    """What happened to one item: ``path`` for one written, else the item's title or key."""

    outcome: Outcome
    label: str
    path: Path | None = None


@dataclass
class ImportResult:
    kind: Literal["feed", "page"]
    reports: list[Report] = field(default_factory=list)
    beyond_cap: int = 0  # feed items past MAX_FEED_ITEMS, never looked at

    @property
    def written(self) -> int:
        return sum(1 for r in self.reports if r.outcome == "wrote")


def parse_since(text: str, zone: dt.tzinfo) -> dt.datetime:
    """``--since``: a date (its first instant in ``zone``) or an ISO date and time."""
    try:
        when = parse_date_text(text.strip())
    except (ValueError, OverflowError):
        when = None
    if when is None:
        raise InputError(
            f"--since: {text[:40]!r} is not a date (use YYYY-MM-DD, or YYYY-MM-DDTHH:MM+01:00)"
        )
    if isinstance(when, dt.datetime):
        return when if when.tzinfo else when.replace(tzinfo=zone)
    return dt.datetime.combine(when, dt.time(), tzinfo=zone)


def import_url(
    url: str,
    folder: Path,
    *,
    since: dt.datetime | None = None,
    zone: dt.tzinfo = dt.UTC,
    policy: FetchPolicy | None = None,
    on_report: Callable[[Report], None] | None = None,
    now: dt.datetime | None = None,
) -> ImportResult:
    """Fetch ``url``; write each new feed item, or the page, into ``folder``.

    An item is new when no Markdown article in the folder has its key as ``source`` (or its
    link as ``url``), and it is not older than ``since``. Files are written whole under a
    new name (``YYYY-MM-DD-slug.md``, ``-2`` and so on when taken), under a lock on the
    folder, so that two imports at once never write an item twice.
    """
    if not is_web_url(url):
        raise InputError(f"URL: {url[:80]!r} is not an http(s) URL")
    moment = now or dt.datetime.now(dt.UTC)
    fetched = fetch(url, policy or FetchPolicy())
    kind, items, beyond = _items(fetched, moment)
    result = ImportResult(kind, beyond_cap=beyond)
    if not folder.exists():
        try:
            folder.mkdir()
        except OSError as exc:
            raise InputError(
                f"{folder}: cannot create the articles folder ({exc.strerror})"
            ) from exc
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder")

    def report(item_report: Report) -> None:
        result.reports.append(item_report)
        if on_report is not None:
            on_report(item_report)

    with _locked(folder):
        known = recorded_sources(folder)
        for item in items:
            label = item.fields.get("title") or item.key
            if not item.fields.get("title"):
                report(Report("no title", item.key))
            elif item.key in known or item.fields.get("url", "") in known:
                report(Report("already imported", label))
            elif since is not None and item.published is not None and item.published < since:
                report(Report("older than --since", label))
            else:
                path = _write(folder, item, zone, moment)
                known |= {item.key, item.fields.get("url", item.key)}
                report(Report("wrote", label, path))
    return result


# --- fetching ------------------------------------------------------------------------------


def fetch(url: str, policy: FetchPolicy) -> Fetched:
    """GET ``url`` (http or https, redirects bounded), at most ``policy.max_bytes`` read and
    as many once decompressed, the whole fetch (headers too) within ``policy.timeout``
    seconds; any failure is one ``FetchError``."""
    outcome: list[Fetched | BaseException] = []

    def run() -> None:
        try:
            outcome.append(_fetch(url, policy))
        except BaseException as exc:  # handed to the caller's thread as it is
            outcome.append(exc)

    # A server can trickle its headers a line at a time, each within httpx's read timeout:
    # only a clock around the whole fetch bounds it. The worker is a daemon: a process that
    # gives up on it is not held by it.
    worker = threading.Thread(target=run, name="mailer-import-fetch", daemon=True)
    worker.start()
    worker.join(policy.timeout + 1)
    if not outcome:
        raise FetchError(f"{_host(url)}: no full answer within {policy.timeout:g} s")
    found = outcome[0]
    if isinstance(found, BaseException):
        raise found
    return found


def _fetch(url: str, policy: FetchPolicy) -> Fetched:
    where = _host(url)
    deadline = time.monotonic() + policy.timeout
    try:
        with (
            httpx.Client(
                timeout=httpx.Timeout(policy.timeout),
                follow_redirects=True,
                max_redirects=policy.max_redirects,
                headers={
                    "User-Agent": USER_AGENT,
                    "Accept": _ACCEPT,
                    "Accept-Encoding": "gzip, deflate",
                },
            ) as client,
            client.stream("GET", url) as response,
        ):
            where = _host(str(response.url))
            if response.status_code >= 400:
                reason = response.reason_phrase or "error"
                raise FetchError(f"{where}: HTTP {response.status_code} {reason} for {url}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > policy.max_bytes:
                raise FetchError(f"{where}: the response is larger than {policy.max_bytes:,} bytes")
            too_large = f"{where}: the response is larger than {policy.max_bytes:,} bytes"
            inflate = _decoder(response.headers.get("content-encoding", ""), where)
            chunks: list[bytes] = []
            raw = size = 0
            # Raw bytes, decompressed here with a cap on what each chunk may become: httpx
            # would inflate a small gzip bomb whole before any count could stop it.
            for chunk in response.iter_raw():
                raw += len(chunk)
                if raw > policy.max_bytes:
                    raise FetchError(too_large)
                if time.monotonic() > deadline:
                    raise FetchError(f"{where}: no full answer within {policy.timeout:g} s")
                data = chunk
                if inflate is not None:
                    data = inflate.decompress(chunk, policy.max_bytes - size + 1)
                    if inflate.unconsumed_tail:
                        raise FetchError(too_large)
                size += len(data)
                if size > policy.max_bytes:
                    raise FetchError(too_large)
                chunks.append(data)
            if inflate is not None:
                chunks.append(inflate.flush(64 * 1024))
            return Fetched(
                url=str(response.url),
                content_type=response.headers.get("content-type", "").split(";")[0].strip(),
                charset=response.charset_encoding,
                body=b"".join(chunks),
            )
    except httpx.TimeoutException:
        raise FetchError(f"{where}: no answer within {policy.timeout:g} s") from None
    except zlib.error as exc:
        raise FetchError(f"{where}: the compressed response is broken ({exc})") from None
    except httpx.TooManyRedirects:
        raise FetchError(f"{where}: more than {policy.max_redirects} redirects") from None
    except httpx.UnsupportedProtocol as exc:
        raise FetchError(f"{where}: redirected to a URL that is not http(s) ({exc})") from None
    except httpx.ConnectError as exc:
        raise FetchError(f"{where}: cannot connect ({_reason(exc)})") from None
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise FetchError(f"{where}: {type(exc).__name__} ({_reason(exc)})") from None


def _decoder(encoding: str, where: str) -> Any:
    """A bounded decompressor for the response's one content coding, or ``None``."""
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
    codings = [c for c in codings if c != "identity"]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
        return zlib.decompressobj(zlib.MAX_WBITS | 32)  # gzip or zlib, by its header
    raise FetchError(f"{where}: the response is sent as {encoding[:40]!r}, which is not read")


def _host(url: str) -> str:
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        return "the server"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return f"{parsed.host}:{port}"


def _reason(exc: Exception) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:120]


# --- feed items and pages -> Items --------------------------------------------------------


def _items(fetched: Fetched, now: dt.datetime) -> tuple[Literal["feed", "page"], list[Item], int]:
    head = fetched.body[:4096]
    looks_html = "html" in fetched.content_type or _HTML_START_RE.match(head) is not None
    if _FEED_START_RE.match(head) or not looks_html:
        parsed = feedparser.parse(
            fetched.body,
            response_headers={
                "content-location": fetched.url,
                "content-type": fetched.content_type or "application/xml",
            },
        )
        problem = parsed.get("bozo_exception")
        detail = f" ({' '.join(str(problem).split())[:100]})" if problem else ""
        entries = list(parsed.get("entries", []))
        if parsed.get("version") and parsed.get("bozo") and not entries:
            raise InputError(f"{fetched.url}: a broken feed, with no item read{detail}")
        if parsed.get("version"):
            items = [_feed_item(entry, fetched.url) for entry in entries[:MAX_FEED_ITEMS]]
            return "feed", items, max(0, len(entries) - MAX_FEED_ITEMS)
        if not looks_html:
            raise InputError(f"{fetched.url}: neither an RSS or Atom feed nor a web page{detail}")
    return "page", [_page_item(fetched, now)], 0


def _feed_item(entry: Any, feed_url: str) -> Item:
    link = _url(entry.get("link"))
    title = entry.get("title")
    if isinstance(title, str) and "html" in str((entry.get("title_detail") or {}).get("type")):
        title = html.unescape(_TAG_RE.sub(" ", title))
    author = (entry.get("author_detail") or {}).get("name") or entry.get("author")
    published = _struct_time(entry.get("published_parsed") or entry.get("updated_parsed"))
    content = entry.get("content") or []
    content_html = content[0].get("value", "") if content and isinstance(content[0], dict) else ""
    summary_html = entry.get("summary") if isinstance(entry.get("summary"), str) else ""
    base = link or feed_url
    body, _ = html_to_markdown(content_html or summary_html or "", base=base)
    summary = None
    if content_html and summary_html:
        _, summary_text = html_to_markdown(summary_html, base=base)
        summary = clean_field(cut_at_word(summary_text, SUMMARY_CHARS), "summary")
    fields: dict[str, str | None] = {
        "title": clean_field(title, "title"),
        "date": published.isoformat().replace("+00:00", "Z") if published else None,
        "url": link,
        "author": clean_field(author, "author"),
        "image": _feed_image(entry),
        "summary": summary,
    }
    key = _key(entry.get("id")) or link or _hash_key(title, fields["date"], body)
    fields["source"] = key
    return Item(key, _present(fields), body, published)


def _page_item(fetched: Fetched, now: dt.datetime) -> Item:
    page = read_page(decode_html(fetched.body, charset=fetched.charset), url=fetched.url)
    if page is None or not page.has_story:
        raise InputError(f"{fetched.url}: no story text found in the page")
    link = page.url or _url(fetched.url)
    published = None
    if page.date:
        with contextlib.suppress(ValueError, OverflowError):
            day = parse_date_text(page.date)
            if isinstance(day, dt.datetime):
                published = day if day.tzinfo else day.replace(tzinfo=dt.UTC)
            elif isinstance(day, dt.date):
                published = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
            published = _plausible(published)
    fields: dict[str, str | None] = {
        "title": page.title,
        "date": page.date
        if published
        else now.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "url": link,
        "author": page.author,
        "image": page.image,
        "source": link,
    }
    key = link or _hash_key(page.title, page.date, page.text)
    return Item(key, _present(fields), page.markdown, published)


def _present(fields: dict[str, str | None]) -> dict[str, str]:
    return {key: value for key, value in fields.items() if value}


def _struct_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, time.struct_time):
        return None
    try:
        return _plausible(dt.datetime.fromtimestamp(calendar.timegm(value), dt.UTC))
    except (OverflowError, OSError, ValueError):
        return None


def _plausible(moment: dt.datetime | None) -> dt.datetime | None:
    """A feed's date, unless it is absurd (year 1 or 9999 would crash or block a digest in
    some time zones): then the item is taken as undated."""
    if moment is None:
        return None
    latest = dt.datetime.now(dt.UTC) + dt.timedelta(days=366)
    return moment if EARLIEST <= moment <= latest else None


def _url(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value if len(value) <= 2048 and is_web_url(value) else None


def _key(value: Any) -> str | None:
    """A feed item's id, if it is one clean line (else the link or a hash stands in)."""
    if not isinstance(value, str):
        return None
    cleaned = clean_field(value, "url")
    return cleaned if cleaned and cleaned == value.strip() else None


def _hash_key(*parts: str | None) -> str:
    digest = hashlib.sha256("\x1f".join(p or "" for p in parts).encode("utf-8"))
    return "sha256:" + digest.hexdigest()[:32]


def _feed_image(entry: Any) -> str | None:
    for group in ("media_thumbnail", "media_content"):
        for media in entry.get(group) or []:
            if isinstance(media, dict) and media.get("medium", "image") == "image":
                found = _url(media.get("url"))
                if found:
                    return found
    for link in entry.get("links") or []:
        is_image = isinstance(link, dict) and str(link.get("type", "")).startswith("image/")
        if is_image and link.get("rel") == "enclosure":
            found = _url(link.get("href"))
            if found:
                return found
    return None


# --- writing -------------------------------------------------------------------------------


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One import at a time writes to ``folder`` (a second waits up to a minute)."""
    lock = filelock.FileLock(str(folder / LOCK_NAME), timeout=60)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise MailerError(
            f"{folder}: another `mailer import` has been writing here for a minute; "
            "try again when it ends"
        ) from None
    except OSError as exc:
        raise InputError(f"{folder}: cannot lock the folder ({exc.strerror})") from exc
    try:
        yield
    finally:
        lock.release()


def _write(folder: Path, item: Item, zone: dt.tzinfo, now: dt.datetime) -> Path:
    """Write ``item`` under the first free ``YYYY-MM-DD-slug[-n].md``: the whole file
    appears at once (a hard link to a finished temporary file), and never over another."""
    day = (item.published or now).astimezone(zone).date()
    slug = slugify(item.fields["title"], "article")[:MAX_SLUG_CHARS].rstrip("-") or "article"
    first = folder / f"{day.isoformat()}-{slug}.md"
    text = markdown_article(first, item.fields, item.body)
    fd, temp = tempfile.mkstemp(dir=folder, prefix=".import-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        for number in range(1, 1000):
            path = first if number == 1 else first.with_name(f"{first.stem}-{number}.md")
            try:
                os.link(temp, path)
                fsync_dir(folder)  # the new name survives a power cut, as the file does
                return path
            except FileExistsError:
                continue
        raise InputError(f"{first}: 999 files of that name exist already")
    except OSError as exc:
        raise InputError(f"{folder}: cannot write an article ({exc.strerror})") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp)
