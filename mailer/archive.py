"""The issue archive: what each sent issue carried (no personal data), and the pages made of it.

An issue is kept as one JSON record, ``<archive_dir>/issues/<YYYY-MM-DD>.json``, written
when it is sent (or by ``mailer archive build``). Pages are rendered from those records,
not from the articles folder, so the archive keeps showing what was sent when articles
change later. ``Pages`` renders the index, one page per issue and per article and the Atom
feed with the user's templates (``archive/*.html.j2``, overridable file by file), and
``write_site`` writes them as static files, with the local images they show (read from the
articles folder: those are not copied into the records).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from feedgen.feed import FeedGenerator

from mailer.articles import is_media_path, read_image
from mailer.csvfile import atomic_writer
from mailer.errors import InputError
from mailer.headers import human_date, is_web_url, issue_date_from_text, page_slug
from mailer.models import Article, Digest
from mailer.render import SiteLinks, media_path, render_page

RECORD_VERSION = 1
MAX_RECORD_BYTES = 16 * 1024 * 1024  # far above any real issue; a bigger file is not ours
FEED_ISSUES = 50  # the newest issues the feed lists


@dataclass(frozen=True, slots=True)
class ArchivedArticle:
    """An article as an issue carried it; ``slug`` is its page slug (``headers.page_slug``)."""

    slug: str
    title: str
    date: dt.date
    url: str | None
    summary: str
    body_html: str
    body_text: str
    author: str | None = None
    image: str | None = None
    image_alt: str | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Issue:
    """One issue as it went out: ``published`` is when it was first archived, ``updated``
    the last time (a resumed send archives it again)."""

    date: dt.date
    subject: str
    newsletter: str
    articles: tuple[ArchivedArticle, ...]
    published: dt.datetime
    updated: dt.datetime

    def article(self, slug: str) -> ArchivedArticle | None:
        return next((a for a in self.articles if a.slug == slug), None)


def archived_article(article: Article) -> ArchivedArticle:
    return ArchivedArticle(
        slug=page_slug(article.slug),
        title=article.title,
        date=article.date,
        url=article.url,
        summary=article.summary,
        body_html=article.body_html,
        body_text=article.body_text,
        author=article.author,
        image=article.image,
        image_alt=article.image_alt,
        tags=article.tags,
    )


def issue_of(digest: Digest, *, now: dt.datetime | None = None) -> Issue:
    """The record of ``digest``: its subject and articles, and nobody's address or name."""
    when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).replace(microsecond=0)
    return Issue(
        date=digest.issue_date,
        subject=digest.subject,
        newsletter=digest.newsletter,
        articles=tuple(archived_article(a) for a in digest.articles),
        published=when,
        updated=when,
    )


# --- the store -------------------------------------------------------------------------


class Store:
    """The records under ``folder/issues/``. Records read are kept while their file is
    unchanged (same size and modification time), so a long-running server reads each once."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.issues_dir = self.folder / "issues"
        self._cache: dict[dt.date, tuple[tuple[int, int], Issue]] = {}

    def path(self, day: dt.date) -> Path:
        return self.issues_dir / f"{day.isoformat()}.json"

    def save(self, issue: Issue) -> Path:
        """Write (or replace) the record of ``issue.date`` atomically; a record already there
        keeps its first ``published`` time."""
        path = self.path(issue.date)
        try:
            earlier = self.load(issue.date)
        except InputError:
            earlier = None  # a damaged record is replaced
        published = earlier.published if earlier is not None else issue.published
        record = _record({**_issue_fields(issue), "published": published})
        with atomic_writer(path) as handle:
            json.dump(record, handle, ensure_ascii=False, indent=1)
            handle.write("\n")
        return path

    def dates(self) -> list[dt.date]:
        """The dates of the records, newest first; other files in the folder are ignored."""
        try:
            names = os.listdir(self.issues_dir)
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise InputError(f"{self.issues_dir}: cannot read ({exc.strerror})") from None
        found = []
        for name in names:
            if name.endswith(".json"):
                day = issue_date_from_text(name[: -len(".json")])
                if day is not None:
                    found.append(day)
        return sorted(found, reverse=True)

    def load(self, day: dt.date) -> Issue | None:
        """The record of ``day``, or ``None``; ``InputError`` naming the file if it is not one."""
        path = self.path(day)
        try:
            info = path.stat()
        except FileNotFoundError:
            self._cache.pop(day, None)
            return None
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror})") from None
        stamp = (info.st_size, info.st_mtime_ns)
        cached = self._cache.get(day)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        if info.st_size > MAX_RECORD_BYTES:
            raise InputError(f"{path}: larger than {MAX_RECORD_BYTES} bytes; not an issue record")
        try:
            data = json.loads(path.read_bytes())
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror})") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InputError(f"{path}: not an issue record (invalid JSON: {exc})") from None
        issue = _issue_from_record(path, data, day)
        self._cache[day] = (stamp, issue)
        return issue

    def issues(self, limit: int | None = None) -> list[Issue]:
        """The records, newest first."""
        out = []
        for day in self.dates()[:limit]:
            issue = self.load(day)
            if issue is not None:
                out.append(issue)
        return out

    def latest_with(self, slug: str) -> tuple[Issue, ArchivedArticle] | None:
        """The newest issue that carried the article ``slug``, and the article as it was."""
        for day in self.dates():
            issue = self.load(day)
            found = issue.article(slug) if issue is not None else None
            if issue is not None and found is not None:
                return issue, found
        return None


def _issue_fields(issue: Issue) -> dict[str, Any]:
    return {
        "date": issue.date,
        "subject": issue.subject,
        "newsletter": issue.newsletter,
        "articles": issue.articles,
        "published": issue.published,
        "updated": issue.updated,
    }


def _record(fields: Mapping[str, Any]) -> dict[str, Any]:
    articles = [
        {
            "slug": a.slug,
            "title": a.title,
            "date": a.date.isoformat(),
            "url": a.url,
            "author": a.author,
            "summary": a.summary,
            "image": a.image,
            "image_alt": a.image_alt,
            "tags": list(a.tags),
            "body_html": a.body_html,
            "body_text": a.body_text,
        }
        for a in fields["articles"]
    ]
    return {
        "version": RECORD_VERSION,
        "date": fields["date"].isoformat(),
        "subject": fields["subject"],
        "newsletter": fields["newsletter"],
        "published": fields["published"].isoformat(),
        "updated": fields["updated"].isoformat(),
        "articles": articles,
    }


class _Fields:
    """Typed reads from one JSON object of a record; a wrong type names the file and key."""

    def __init__(self, path: Path, data: object, where: str = "") -> None:
        if not isinstance(data, dict):
            raise InputError(
                f"{path}: not an issue record ({where or 'top level'} is not an object)"
            )
        self.path, self.data, self.where = path, data, where

    def _bad(self, key: str, kind: str) -> InputError:
        return InputError(f"{self.path}: not an issue record ({self.where}{key!r} is not {kind})")

    def text(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str):
            raise self._bad(key, "text")
        return value

    def optional(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise self._bad(key, "text or null")
        return value or None

    def day(self, key: str) -> dt.date:
        day = issue_date_from_text(self.text(key))
        if day is None:
            raise self._bad(key, "a YYYY-MM-DD date")
        return day

    def moment(self, key: str) -> dt.datetime:
        try:
            when = dt.datetime.fromisoformat(self.text(key))
        except ValueError:
            raise self._bad(key, "a date and time") from None
        return when if when.tzinfo else when.replace(tzinfo=dt.UTC)

    def items(self, key: str) -> list[object]:
        value = self.data.get(key)
        if not isinstance(value, list):
            raise self._bad(key, "a list")
        return value


def _issue_from_record(path: Path, data: object, day: dt.date) -> Issue:
    top = _Fields(path, data)
    if top.data.get("version") != RECORD_VERSION:
        raise InputError(f"{path}: not an issue record of this mailer (version {RECORD_VERSION})")
    if top.day("date") != day:
        raise InputError(f"{path}: its 'date' is not the date of its file name")
    subject, newsletter = top.text("subject"), top.text("newsletter")
    published, updated = top.moment("published"), top.moment("updated")
    articles = []
    for n, item in enumerate(top.items("articles"), 1):
        one = _Fields(path, item, f"article {n}: ")
        tags = one.items("tags") if "tags" in one.data else []
        articles.append(
            ArchivedArticle(
                # page_slug again: a record edited by hand cannot make a path leave a folder
                slug=page_slug(one.text("slug")),
                title=one.text("title"),
                date=one.day("date"),
                url=one.optional("url"),
                summary=one.text("summary"),
                body_html=one.text("body_html"),
                body_text=one.text("body_text"),
                author=one.optional("author"),
                image=one.optional("image"),
                image_alt=one.optional("image_alt"),
                tags=tuple(str(t) for t in tags),
            )
        )
    return Issue(
        date=day,
        subject=subject,
        newsletter=newsletter,
        articles=tuple(articles),
        published=published,
        updated=updated,
    )


# --- pages -----------------------------------------------------------------------------


class Pages:
    """The archive's pages, rendered from ``store`` with ``env`` (``render.make_environment``).

    ``newsletter`` is the templates' newsletter context (``pipeline.newsletter_context``).
    Links between pages are relative (``root`` in templates is the way back to the site's
    root), so the same pages work served by ``mailer serve`` and as static files anywhere;
    the feed's links are absolute with a public URL.
    """

    def __init__(
        self, store: Store, env: jinja2.Environment, newsletter: Mapping[str, object]
    ) -> None:
        self.store = store
        self.env = env
        self.newsletter = newsletter
        links = newsletter.get("links")
        self.links = links if isinstance(links, SiteLinks) else SiteLinks()

    def _page(self, name: str, root: str, **context: object) -> str:
        fixed = {"newsletter": self.newsletter, "links": self.links, "root": root}
        return render_page(self.env, name, {**fixed, **context})

    def index(self) -> str:
        """``/issues/``: every issue, newest first."""
        return self._page("archive/index.html.j2", "../", issues=self.store.issues())

    def issue(self, day: dt.date) -> str | None:
        """``/issues/<date>/``: the issue as it was sent, without anyone's name or address."""
        issue = self.store.load(day)
        if issue is None:
            return None
        dates = self.store.dates()
        at = dates.index(day)
        newer = dates[at - 1] if at > 0 else None
        older = dates[at + 1] if at + 1 < len(dates) else None
        return self._page("archive/issue.html.j2", "../../", issue=issue, newer=newer, older=older)

    def article(self, slug: str) -> str | None:
        """``/articles/<slug>/``: an article's full text, from the newest issue that has it."""
        if page_slug(slug) != slug:
            return None
        found = self.store.latest_with(slug)
        if found is None:
            return None
        issue, article = found
        return self._page("archive/article.html.j2", "../../", issue=issue, article=article)

    def missing(self, root: str = "/") -> str:
        """The page for an address that is not in the archive."""
        return self._page("archive/missing.html.j2", root)

    def feed(self) -> str:
        """``/feed.xml``: Atom, one entry per issue (the newest ``FEED_ISSUES``)."""
        return atom_feed(self, self.store.issues(FEED_ISSUES))

    def files(self) -> Iterator[tuple[str, str]]:
        """Every page as ``(path relative to the site's root, content)``."""
        issues = self.store.issues()
        yield "issues/index.html", self._page("archive/index.html.j2", "../", issues=issues)
        slugs: dict[str, None] = {}
        for issue in issues:
            page = self.issue(issue.date)
            if page is not None:
                yield f"issues/{issue.date.isoformat()}/index.html", page
            slugs.update((a.slug, None) for a in issue.articles)
        for slug in slugs:
            page = self.article(slug)
            if page is not None:
                yield f"articles/{slug}/index.html", page
        yield "feed.xml", atom_feed(self, issues[:FEED_ISSUES])


def atom_feed(pages: Pages, issues: list[Issue]) -> str:
    """An Atom 1.0 document: one entry per issue, its articles as the entry's HTML."""
    newsletter = pages.newsletter
    name = str(newsletter.get("name") or "Newsletter")
    base = pages.links.public_url
    domain = str(newsletter.get("from_address") or "mailer.invalid").rpartition("@")[2]
    feed = FeedGenerator()
    feed.id(f"{base}/issues/" if base else f"tag:{domain},2000:issues")
    feed.title(name)
    feed.author({"name": name})
    feed.link(href=f"{base}/issues/" if base else "issues/", rel="alternate")
    if base:
        feed.link(href=f"{base}/feed.xml", rel="self")
    feed.language("en")
    latest = max((i.updated for i in issues), default=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    feed.updated(latest)
    for issue in issues:
        day = issue.date.isoformat()
        href = f"{base}/issues/{day}/" if base else f"issues/{day}/"
        root = f"{base}/" if base else ""
        entry = feed.add_entry(order="append")
        entry.id(href if base else f"tag:{domain},{day}:issues/{day}")
        entry.title(issue.subject)
        entry.link(href=href, rel="alternate")
        entry.published(issue.published)
        entry.updated(issue.updated)
        entry.summary(f"{len(issue.articles)} articles, {human_date(issue.date)}")
        html = render_page(
            pages.env,
            "archive/entry.html.j2",
            {"newsletter": newsletter, "issue": issue, "root": root},
        )
        entry.content(html, type="html")
    text: bytes = feed.atom_str(pretty=True)
    return text.decode("utf-8")


def local_media(issues: Iterable[Issue]) -> list[str]:
    """The local images the issues carry (``images/market-hall.jpg``, relative to the articles
    folder, where the site serves them from under ``/media/``), each once, sorted. A value
    that is not the form of one (a record edited by hand) is not among them."""
    found = {a.image for i in issues for a in i.articles if a.image and not is_web_url(a.image)}
    return sorted(path for path in found if is_media_path(path))


def write_site(
    pages: Pages,
    out: Path,
    *,
    articles_dir: Path | None = None,
    on_skip: Callable[[str, str], None] | None = None,
) -> list[str]:
    """Write every page under ``out`` (each file atomically); returns the paths written,
    relative to ``out``. Nothing else in ``out`` is touched; a path that would lead out of
    it (a symbolic link inside it, say) is refused before anything is written.

    With ``articles_dir``, the local images the issues carry are copied from it to
    ``media/<path>``, where the pages link to them. One that is gone or no longer an image
    is told to ``on_skip(path, reason)`` and left out: its pages show its alt text."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        root = out.resolve(strict=True)
    except OSError as exc:
        raise InputError(f"{out}: cannot create the folder ({exc.strerror})") from None
    files: list[tuple[str, str | bytes]] = list(pages.files())
    if articles_dir is not None:
        for image in local_media(pages.store.issues()):
            try:
                data = read_image(articles_dir, image)
            except ValueError as exc:
                if on_skip is not None:
                    on_skip(image, str(exc))
                continue
            files.append((media_path(image, quoted=False), data))
    for rel, _ in files:
        target = (out / rel).resolve()
        if not target.is_relative_to(root) or target == root:
            raise InputError(f"{out / rel}: leads outside {out}; nothing was written")
    for rel, content in files:
        with atomic_writer(out / rel) as handle:
            if isinstance(content, bytes):  # an image: the bytes under the text layer
                handle.buffer.write(content)
            else:
                handle.write(content)
    return [rel for rel, _ in files]


__all__ = [
    "ArchivedArticle",
    "Issue",
    "Pages",
    "Store",
    "archived_article",
    "atom_feed",
    "issue_of",
    "local_media",
    "write_site",
]
