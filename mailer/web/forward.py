"""The forward form: ``/forward/<article-slug>?token=<forward token>``, for subscribers only.

The token (signed for forwarding only) names the list and the sender's address; the sender
must still be on that list and not suppressed. Submitting runs ``mailer forward``'s guards
and delivery (``mailer.forward``), under a global rate limit and a honeypot field. A friend
who cannot receive it (suppressed, or already sent this article) sees the same "Sent".
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
from anyio import to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailer.articles import ARTICLE_SUFFIXES
from mailer.errors import (
    GuardError,
    InputError,
    LedgerBusy,
    MailerError,
    TemplateError,
    TokenError,
)
from mailer.forward import (
    MAX_NAME_CHARS,
    MAX_NOTE_CHARS,
    CannotForward,
    Delivered,
    Forward,
    Sender,
    check_name,
    check_quota,
    deliver_forward,
    find_article,
    prepare_forward,
    render_forward,
)
from mailer.headers import address_key, page_slug
from mailer.ledger import Ledger
from mailer.models import Article, Status
from mailer.render import make_environment
from mailer.settings import Settings
from mailer.subscribers import is_list_name, read_list
from mailer.suppression_list import SuppressionList
from mailer.tokens import token_address
from mailer.web.pages import NO_STORE, Pages

log = logging.getLogger("mailer.web")
HONEYPOT = "website"
# The CLI's words for its flags, as the form's fields say them.
_FIELDS = (
    ("--to: ", "Your friend’s address: "),
    ("--note: ", "The note: "),
    ("--sender name: ", "Your name: "),
    ("--sender: ", "Your name: "),
)


class RateLimit:
    """At most ``per_minute`` events in any 60 seconds, for the whole site."""

    def __init__(self, per_minute: int, *, clock: Any = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._times: deque[float] = deque()

    def allow(self) -> bool:
        now = self._clock()
        while self._times and now - self._times[0] >= 60.0:
            self._times.popleft()
        if len(self._times) >= self.per_minute:
            return False
        self._times.append(now)
        return True


class Subscribers:
    """Subscriber names by address, per list, re-read when the list file changes."""

    def __init__(self, lists_dir: Path) -> None:
        self.lists_dir = lists_dir
        self._cache: dict[str, tuple[tuple[int, int, int], dict[str, str]]] = {}

    def name_of(self, list_name: str, address: str) -> str | None:
        """The display name of ``address`` on the list (``""`` if none), or ``None`` if the
        address is not on it (or the list is gone)."""
        if not is_list_name(list_name):
            return None
        path = self.lists_dir / f"{list_name}.csv"
        try:
            st = os.stat(path)
        except OSError:
            return None
        stamp = (st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._cache.get(list_name)
        if cached is None or cached[0] != stamp:
            names = {address_key(r.email): r.name for r in read_list(path)}
            cached = self._cache[list_name] = (stamp, names)
        return cached[1].get(address_key(address))


@dataclass
class Asker:
    """Who the token says is asking: their list, address and name on that list."""

    list_name: str
    address: str
    name: str


class ForwardPages:
    """The forward form's routes."""

    def __init__(self, settings: Settings, pages: Pages, suppression: SuppressionList) -> None:
        self.settings = settings
        self.secret = settings.secret_key.get_secret_value()
        self.pages = pages
        self.suppression = suppression
        self.subscribers = Subscribers(settings.lists_dir)
        self.rate = RateLimit(settings.forward_rate)
        self.env = make_environment(settings.templates_dir)
        self._one_at_a_time = anyio.Lock()  # the ledger takes one writer at a time

    def routes(self, prefix: str) -> list[Route]:
        return [
            Route(prefix + "/forward/{slug}", self.show, methods=["GET"]),
            Route(prefix + "/forward/{slug}", self.send, methods=["POST"]),
        ]

    # --- checks shared by both -----------------------------------------------------------

    async def _checked(self, request: Request) -> tuple[Article, Asker] | Response:
        """The article and the asker, or the error page to answer with."""
        tokens = request.query_params.getlist("token")
        try:
            if len(tokens) != 1:
                raise TokenError("no token")
            list_name, address = token_address(self.secret, tokens[0], purpose="forward")
        except TokenError:
            return self.pages.error(400)
        slug = request.path_params["slug"]
        article = await to_thread.run_sync(self._article, slug)
        if article is None:
            return self.pages.error(404)
        try:
            name = await to_thread.run_sync(self._asker_name, list_name, address)
        except MailerError as exc:
            log.error("forward form: %s", exc.message)
            return self.pages.error(500)
        if name is None:
            return self.pages.error(403)
        return article, Asker(list_name, address, name)

    def _asker_name(self, list_name: str, address: str) -> str | None:
        self.suppression.refresh(force=True)
        if self.suppression.is_suppressed(address):
            return None
        return self.subscribers.name_of(list_name, address)

    def _article(self, slug: str) -> Article | None:
        """The published article whose page slug is ``slug`` (only a page slug: never a
        path); one dated in the future is not out yet, and is not found."""
        found = self._find(slug)
        if found is None or found.published > dt.datetime.now(dt.UTC):
            return None
        return found

    def _find(self, slug: str) -> Article | None:
        if page_slug(slug) != slug or Path(slug).suffix.lower() in ARTICLE_SUFFIXES:
            return None
        settings = self.settings
        try:
            return find_article(
                slug,
                settings.articles_dir,
                clutter_patterns=settings.clutter_patterns,
                base_url=settings.article_base_url,
                zone=settings.zone,
            )
        except MailerError:  # none: the same 404 whatever the reason
            return None

    def _form(
        self,
        request: Request,
        article: Article,
        values: dict[str, str],
        *,
        problem: str | None = None,
        status: int = 200,
    ) -> Response:
        token = request.query_params["token"]
        return self.pages.render(
            "forward",
            status=status,
            headers=NO_STORE,
            article=article,
            form=values,
            problem=problem,
            max_note=MAX_NOTE_CHARS,
            max_name=MAX_NAME_CHARS,
            action=f"{request.url.path}?token={quote(token, safe='')}",
        )

    # --- the routes ----------------------------------------------------------------------

    async def show(self, request: Request) -> Response:
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        article, asker = checked
        return self._form(request, article, {"friend": "", "name": asker.name, "note": ""})

    async def send(self, request: Request) -> Response:
        checked = await self._checked(request)
        if isinstance(checked, Response):
            return checked
        article, asker = checked
        try:
            form = await request.form(max_files=0, max_fields=16)
        except Exception:  # a malformed body
            return self.pages.error(400)
        values = {k: str(form.get(k) or "") for k in ("friend", "name", "note")}
        trap = str(form.get(HONEYPOT) or "")
        await form.close()
        if trap:  # a robot: it is told what a person would be, and nothing is sent
            return self.pages.render("forwarded", headers=NO_STORE, article=article)
        friend = values["friend"].strip()
        if not friend:
            return self._form(
                request, article, values, problem="Please give your friend’s address.", status=400
            )
        try:
            # Every check that needs no lock first, so that a bad form never waits for one.
            prepared = await to_thread.run_sync(self._prepare, article, asker, values)
            if not self.rate.allow():  # charged for forwards that would go out, not typos
                return self.pages.error(429)
            async with self._one_at_a_time:
                delivered = await to_thread.run_sync(self._deliver, prepared)
        except GuardError as exc:
            if isinstance(exc, CannotForward):
                # suppressed, or already sent this article: never said as such
                return self.pages.render("forwarded", headers=NO_STORE, article=article)
            return self._form(request, article, values, problem=_plain(exc), status=400)
        except LedgerBusy:
            return self.pages.error(503)
        except MailerError as exc:
            if isinstance(exc, InputError) and not isinstance(exc, TemplateError):
                return self._form(request, article, values, problem=_plain(exc), status=400)
            log.error("forward not sent: %s", exc.message)
            return self.pages.error(503)
        problem = _outcome_problem(delivered)
        if problem is not None:
            return self._form(request, article, values, problem=problem, status=503)
        return self.pages.render("forwarded", headers=NO_STORE, article=article)

    def _prepare(self, article: Article, asker: Asker, values: dict[str, str]) -> Forward:
        """In a worker thread: the guards of ``mailer forward`` that need no lock.

        The sender's quota comes first: once it is spent, every friend gets the same
        answer, so the form cannot be used to learn who is on the suppression list."""
        self._check_quota(asker.address)
        name = check_name(values["name"]) if values["name"].strip() else ""
        self.suppression.refresh(force=True)
        return prepare_forward(
            self.settings,
            article=article,
            friends=[values["friend"].strip()],
            sender=Sender(name, asker.address),
            note=values["note"],
            is_suppressed=self.suppression.is_suppressed,
        )

    def _check_quota(self, address: str) -> None:
        settings = self.settings
        if settings.ledger_is_there():
            with Ledger.open(settings.ledger, readonly=True) as ledger:
                check_quota(ledger, address, 1, quota=settings.forward_daily_quota)

    def _deliver(self, request: Forward) -> Delivered:
        """In a worker thread, under the lock: the ledger's guards and the delivery of
        ``mailer forward``, exactly."""
        rendered = render_forward(request, env=self.env, newsletter=self.pages.newsletter)
        return deliver_forward(self.settings, request, rendered, self.suppression)


def _plain(exc: MailerError) -> str:
    """A guard's message in the form's words rather than the command line's."""
    message = exc.message
    for flag, words in _FIELDS:
        if message.startswith(flag):
            message = words + message[len(flag) :]
            break
    return message + ("" if message.endswith(".") else ".")


def _outcome_problem(delivered: Delivered) -> str | None:
    """``None`` when the message went out (or was skipped: suppressed meanwhile)."""
    for outcome in delivered.outcomes:
        if outcome.results[Status.FAILED]:
            return "The mail server refused this message. It was not sent."
        if outcome.stopped or any(
            outcome.results[s] for s in (Status.DEFERRED, Status.UNKNOWN, Status.UNSENT)
        ):
            return "The message could not be sent just now. Please try again later."
    return None
