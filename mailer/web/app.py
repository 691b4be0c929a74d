"""The Starlette application of ``mailer serve``: routes, error pages and shared state."""

from __future__ import annotations

import contextlib
import logging
import posixpath
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from mailer.errors import MailerError
from mailer.ledger.suppression import open_suppression
from mailer.settings import Settings
from mailer.web import archive
from mailer.web.forward import ForwardPages
from mailer.web.pages import Pages
from mailer.web.security import MAX_BODY, Guard
from mailer.web.unsubscribe import UnsubscribePages, UnsubscribeQueue

log = logging.getLogger("mailer.web")


def paths(settings: Settings) -> tuple[str, str, str]:
    """``(unsubscribe, resubscribe, prefix)``: the one-click path is the path of
    MAILER_UNSUBSCRIBE_URL; resubscribe sits beside it; the other pages live under the
    path of MAILER_PUBLIC_URL (``""`` at the root), as the reverse proxy passes them on."""
    unsubscribe = urlsplit(settings.unsubscribe_url).path or "/"
    folder = posixpath.dirname(unsubscribe.rstrip("/")) or "/"
    resubscribe = posixpath.join(folder, "resubscribe")
    prefix = urlsplit(settings.public_url).path.rstrip("/") if settings.public_url else ""
    return unsubscribe, resubscribe, prefix


def create_app(settings: Settings, *, max_body: int = MAX_BODY) -> Starlette:
    """The app over the same settings, lists, suppression list, ledger and articles as the
    CLI. Refuses the public sample secret key (tokens would prove nothing); a broken
    suppression file is a ``MailerError`` here, before anything listens."""
    settings.require_real_secret(
        ", so the links' tokens prove nothing; refusing to serve",
        hint="set MAILER_SECRET_KEY to the key the messages were signed with",
    )
    pages = Pages(settings)
    suppression = open_suppression(settings)
    queue = UnsubscribeQueue(suppression)
    unsubscribe, resubscribe, prefix = paths(settings)
    routes: list[BaseRoute] = []
    routes += UnsubscribePages(settings, pages, queue, resubscribe_path=resubscribe).routes(
        unsubscribe
    )
    routes += ForwardPages(settings, pages, suppression).routes(prefix)
    routes += archive.routes(settings, prefix)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        response = pages.error(exc.status_code)
        if exc.status_code == 405 and exc.headers:
            response.headers["Allow"] = exc.headers.get("Allow", "")
        return response

    async def server_error(request: Request, exc: Exception) -> Response:
        # The path only: a token lives in the query, and the query is never logged.
        message = exc.message if isinstance(exc, MailerError) else repr(exc)
        log.error("%s %s failed: %s", request.method, request.url.path, message)
        return pages.error(500)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await queue.close()  # every unsubscribe answered is on disk; finish any in flight
        suppression.close()

    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: server_error},
        lifespan=lifespan,
    )
    app.add_middleware(Guard, max_body=max_body)
    app.state.suppression = suppression
    return app
