"""The archive's routes: /issues/, /issues/<date>/, /articles/<slug>/ and /feed.xml, and
/media/<path>, the images kept beside the articles that messages and pages show."""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from mailer.archive import Pages, Store
from mailer.errors import MailerError
from mailer.headers import issue_date_from_text, page_slug
from mailer.pipeline import newsletter_context
from mailer.render import make_environment
from mailer.settings import Settings
from mailer.web.media import Media

log = logging.getLogger("mailer.web")

HTML = "text/html; charset=utf-8"
ATOM = "application/atom+xml; charset=utf-8"
# Archive pages hold nothing personal: proxies and browsers may keep them a little while.
CACHE = {"Cache-Control": "public, max-age=300"}


def routes(settings: Settings, prefix: str = "") -> list[BaseRoute]:
    """GET (and HEAD) routes serving the archive from ``settings.archive_dir``, under
    ``prefix`` (the path of MAILER_PUBLIC_URL, as the reverse proxy passes it on); the records
    are read again when their files change, so a new issue shows without a restart. Images
    come from ``settings.articles_dir`` (see ``mailer.web.media``)."""
    newsletter = newsletter_context(settings)
    store = Store(settings.archive_dir)
    pages = Pages(store, make_environment(settings.templates_dir), newsletter)
    media = Media(settings, store)
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

    def image(request: Request) -> Response:
        return media.answer(request) or missing()

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
        Route(prefix + path, endpoint, methods=get)
        for path, endpoint in [
            ("/issues/", index),
            ("/issues", slash),
            ("/issues/{day}/", issue),
            ("/issues/{day}", slash),
            ("/articles/{slug}/", article),
            ("/articles/{slug}", slash),
            ("/feed.xml", feed),
            ("/media/{path:path}", image),
        ]
    ]
