"""The archive's routes: /issues/, /issues/<date>/, /articles/<slug>/ and /feed.xml, and
/media/<path>, the images kept beside the articles that messages and pages show."""

from __future__ import annotations

import hashlib
import logging
import threading
import time

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from mailer.archive import Pages, Store, local_media
from mailer.articles import image_type, load_articles, read_image
from mailer.errors import MailerError
from mailer.headers import issue_date_from_text, page_slug
from mailer.pipeline import local_images, newsletter_context
from mailer.render import make_environment
from mailer.settings import Settings

log = logging.getLogger("mailer.web")

HTML = "text/html; charset=utf-8"
ATOM = "application/atom+xml; charset=utf-8"
# Archive pages hold nothing personal: proxies and browsers may keep them a little while.
CACHE = {"Cache-Control": "public, max-age=300"}
# An image keeps its path when it is replaced: a day, then a check with its ETag.
MEDIA_CACHE = "public, max-age=86400"
# How long the list of the current articles' images is kept before the folder is read again.
CURRENT_SECONDS = 60.0


class Media:
    """What ``/media/`` serves: only the local images that an archived issue or a current
    article names, read from the articles folder (checked again: inside it, a regular file
    of at most 5 MiB, an image of its type by its first bytes). Any other path is not found,
    whatever is in the folder: a picture that no article names yet is not published."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self._lock = threading.Lock()
        self._current: frozenset[str] = frozenset()
        self._read_at: float | None = None

    def read(self, path: str) -> bytes | None:
        """The image at ``path`` (decoded, relative to ``/media/``), or ``None``."""
        if path not in self._current_images() and path not in self._archived():
            return None
        try:
            return read_image(self.settings.articles_dir, path)
        except ValueError as exc:
            log.warning("media: image %s", exc)
            return None

    def _archived(self) -> set[str]:
        found: set[str] = set()
        for day in self.store.dates():
            try:
                issue = self.store.load(day)
            except MailerError:  # a damaged record: its pages say so; its images are not ours
                continue
            found.update(local_media([issue] if issue is not None else []))
        return found

    def _current_images(self) -> frozenset[str]:
        with self._lock:
            now = time.monotonic()
            if self._read_at is None or now - self._read_at > CURRENT_SECONDS:
                self._read_at = now
                settings = self.settings
                try:
                    articles = load_articles(
                        settings.articles_dir,
                        extra_clutter=settings.clutter_patterns,
                        base_url=settings.article_base_url,
                        zone=settings.zone,
                    )
                except MailerError as exc:  # a broken file: `mailer digest` names it too
                    log.warning("media: %s", exc.message)
                    articles = []
                self._current = frozenset(a.image or "" for a in local_images(articles))
            return self._current


def routes(settings: Settings) -> list[BaseRoute]:
    """GET (and HEAD) routes serving the archive from ``settings.archive_dir``; the records
    are read again when their files change, so a new issue shows without a restart. Images
    come from ``settings.articles_dir`` (see ``Media``)."""
    newsletter = newsletter_context(settings)
    store = Store(settings.archive_dir)
    pages = Pages(store, make_environment(settings.templates_dir), newsletter)
    media_files = Media(settings, store)
    root = f"{settings.public_url}/" if settings.public_url else "/"

    def missing() -> Response:
        try:
            body = pages.missing(root)
        except MailerError:
            return PlainTextResponse("Not found\n", status_code=404)
        return Response(body, status_code=404, media_type=HTML)

    def page(render: str | None) -> Response:
        if render is None:
            return missing()
        return Response(render, media_type=HTML, headers=CACHE)

    def broken(exc: MailerError) -> Response:
        # The record or template is at fault, not the reader: say so plainly, log the line.
        log.error("archive: %s", exc.message)
        return PlainTextResponse("The archive cannot be shown right now.\n", status_code=500)

    def index(request: Request) -> Response:
        try:
            return page(pages.index())
        except MailerError as exc:
            return broken(exc)

    def issue(request: Request) -> Response:
        day = issue_date_from_text(str(request.path_params["day"]))
        if day is None:
            return missing()
        try:
            return page(pages.issue(day))
        except MailerError as exc:
            return broken(exc)

    def article(request: Request) -> Response:
        try:
            return page(pages.article(str(request.path_params["slug"])))
        except MailerError as exc:
            return broken(exc)

    def feed(request: Request) -> Response:
        try:
            return Response(pages.feed(), media_type=ATOM, headers=CACHE)
        except MailerError as exc:
            return broken(exc)

    def media(request: Request) -> Response:
        path = str(request.path_params["path"])
        data = media_files.read(path)
        if data is None:
            return missing()
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        headers = {"Cache-Control": MEDIA_CACHE, "ETag": etag}
        asked = request.headers.get("if-none-match", "")
        if etag in (tag.strip().removeprefix("W/") for tag in asked.split(",")):
            return Response(status_code=304, headers=headers)
        return Response(data, media_type=image_type(path), headers=headers)

    def slash(request: Request) -> Response:
        # Relative links between pages need the trailing slash; only for a valid address.
        day = request.path_params.get("day")
        slug = request.path_params.get("slug")
        if day is not None and issue_date_from_text(str(day)) is None:
            return missing()
        if slug is not None and page_slug(str(slug)) != slug:
            return missing()
        # Relative, so that it is right behind a proxy that serves the site under a path.
        last = request.url.path.rstrip("/").rpartition("/")[2]
        return RedirectResponse(last + "/", status_code=308)

    get = ["GET"]  # Starlette answers HEAD wherever it answers GET
    return [
        Route("/issues/", index, methods=get),
        Route("/issues", slash, methods=get),
        Route("/issues/{day}/", issue, methods=get),
        Route("/issues/{day}", slash, methods=get),
        Route("/articles/{slug}/", article, methods=get),
        Route("/articles/{slug}", slash, methods=get),
        Route("/feed.xml", feed, methods=get),
        Route("/media/{path:path}", media, methods=get),
    ]
