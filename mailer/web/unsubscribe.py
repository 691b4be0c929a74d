"""One-click unsubscribe (RFC 8058) at the path of MAILER_UNSUBSCRIBE_URL, and resubscribe.

``GET`` and ``HEAD`` only show a page (link scanners fetch every link); a ``POST`` with
``List-Unsubscribe=One-Click`` suppresses at once and answers 200, never a redirect. The token
in the query is the only credential. Concurrent unsubscribes are written together: one
journal append and one fsync for all that arrive while the previous write runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from urllib.parse import parse_qsl, quote

from anyio import to_thread
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailer.errors import MailerError, TokenError
from mailer.headers import address_key, normalise_email
from mailer.settings import Settings
from mailer.suppression_list import Reason, Suppressed, SuppressionList
from mailer.tokens import make_token, token_address, token_payload
from mailer.web.pages import NO_STORE, Pages, mask_address

log = logging.getLogger("mailer.web")
ONE_CLICK = ("List-Unsubscribe", "One-Click")


class UnsubscribeQueue:
    """Gathers the unsubscribes that arrive together into one locked, fsync'd journal write,
    made in a worker thread so the event loop never waits on the disk or the lock. A
    request is answered only once its address is on disk; a client that hangs up meanwhile
    does not stop the write. Each waiter learns the entry its request made, or ``None``
    if the address was already suppressed (read under the same lock as the write)."""

    def __init__(self, suppression: SuppressionList) -> None:
        self.suppression = suppression
        self._pending: list[tuple[str, str, asyncio.Future[Suppressed | None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def suppress(self, address: str, note: str) -> Suppressed | None:
        done: asyncio.Future[Suppressed | None] = asyncio.get_running_loop().create_future()
        self._pending.append((address, note, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await asyncio.shield(done)

    async def _drain(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                made = await to_thread.run_sync(self._write, [(a, n) for a, n, _ in batch])
            except Exception as exc:  # each waiter hears of it
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for (_, _, done), entry in zip(batch, made, strict=True):
                    if not done.done():
                        done.set_result(entry)

    def _write(self, items: list[tuple[str, str]]) -> list[Suppressed | None]:
        """Per item, the entry it made; the first item for an address makes it."""
        by_note: dict[str, list[tuple[str, Reason]]] = defaultdict(list)
        for address, note in items:
            by_note[note].append((address, "unsubscribed"))
        made: dict[str, Suppressed] = {}
        for note, batch in by_note.items():
            for entry in self.suppression.add_each(batch, note=note, journal=True):
                made[address_key(entry.email)] = entry
        return [made.pop(address_key(normalise_email(address)), None) for address, _ in items]

    async def close(self) -> None:
        if self._writer is not None:
            await asyncio.gather(self._writer, return_exceptions=True)


class UnsubscribePages:
    """The routes: the page, the one-click POST and the resubscribe POST."""

    def __init__(
        self, settings: Settings, pages: Pages, queue: UnsubscribeQueue, *, resubscribe_path: str
    ) -> None:
        self.secret = settings.secret_key.get_secret_value()
        self.pages = pages
        self.queue = queue
        self.resubscribe_path = resubscribe_path

    def routes(self, path: str) -> list[Route]:
        return [
            Route(path, self.show, methods=["GET"]),
            Route(path, self.unsubscribe, methods=["POST"]),
            Route(self.resubscribe_path, self.resubscribe, methods=["POST"]),
        ]

    def _token(self, request: Request) -> tuple[str, str, str] | None:
        """``(token, list name, address)`` of the one genuine token in the query, else None."""
        tokens = request.query_params.getlist("token")
        if len(tokens) != 1:
            return None
        try:
            list_name, address = token_address(self.secret, tokens[0], purpose="unsubscribe")
        except TokenError:
            return None
        return tokens[0], list_name, address

    def _resubscribe_token(
        self, request: Request, suppression: SuppressionList
    ) -> tuple[str, str] | None:
        """``(list name, address)`` of a genuine resubscribe token for the suppression the
        address has now; else None (forged, or that suppression is gone or another)."""
        tokens = request.query_params.getlist("token")
        said = token_payload(tokens[0]) if len(tokens) == 1 else None
        if said is None:
            return None
        try:
            entry = _current(suppression, normalise_email(said[1]))
        except (MailerError, ValueError):
            return None
        if entry is None or entry.reason != "unsubscribed":
            return None
        try:
            return token_address(self.secret, tokens[0], purpose="resubscribe", scope=_scope(entry))
        except TokenError:
            return None

    async def show(self, request: Request) -> Response:
        found = self._token(request)
        if found is None:
            return self.pages.error(400)
        token, list_name, address = found
        return self.pages.render(
            "unsubscribe",
            headers=NO_STORE,
            list_name=list_name,
            masked=mask_address(address),
            action=f"{request.url.path}?token={quote(token, safe='')}",
        )

    async def unsubscribe(self, request: Request) -> Response:
        found = self._token(request)
        if found is None or not await _one_click(request):
            return self.pages.error(400)
        _, list_name, address = found
        try:
            entry = await self.queue.suppress(address, f"one-click from list {list_name!r}")
        except MailerError as exc:
            log.error("unsubscribe not recorded: %s", exc.message)
            return self.pages.error(500)
        # The undo is offered only by the click that made this suppression: a token of its
        # own, scoped to it, on this page alone (an old message cannot undo anything).
        action = None
        if entry is not None:
            again = make_token(
                self.secret, list_name, address, purpose="resubscribe", scope=_scope(entry)
            )
            action = f"{self.resubscribe_path}?token={quote(again, safe='')}"
        return self.pages.render(
            "unsubscribed",
            headers=NO_STORE,
            list_name=list_name,
            masked=mask_address(address),
            action=action,
        )

    async def resubscribe(self, request: Request) -> Response:
        suppression = self.queue.suppression
        found = await to_thread.run_sync(lambda: self._resubscribe_token(request, suppression))
        if found is None:
            return self.pages.error(400)
        list_name, address = found
        note = f"web resubscribe from list {list_name!r}"
        try:
            # Only what this address's own unsubscribe did: never a bounce or a complaint.
            entry = await to_thread.run_sync(
                lambda: suppression.remove(address, note=note, only="unsubscribed", journal=True)
            )
        except MailerError as exc:
            log.error("resubscribe not recorded: %s", exc.message)
            return self.pages.error(500)
        return self.pages.render(
            "resubscribed",
            headers=NO_STORE,
            list_name=list_name,
            masked=mask_address(address),
            done=entry is not None,
        )


async def _one_click(request: Request) -> bool:
    """Whether the body is ``List-Unsubscribe=One-Click``, urlencoded or multipart."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":  # what Gmail sends: the quick way
        try:
            fields = parse_qsl((await request.body()).decode("ascii"), max_num_fields=8)
        except ValueError:  # not ASCII, or too many fields
            return False
        return (ONE_CLICK[0], ONE_CLICK[1]) in fields
    try:
        form: FormData = await request.form(max_files=0, max_fields=8)
    except Exception:  # a malformed body, whatever the parser says about it
        return False
    try:
        return form.get(ONE_CLICK[0]) == ONE_CLICK[1]
    finally:
        await form.close()


def _current(suppression: SuppressionList, address: str) -> Suppressed | None:
    """The address's suppression as the files say now (what other processes wrote too)."""
    suppression.refresh(force=True)
    return suppression.get(address)


def _scope(entry: Suppressed) -> str:
    """What a resubscribe token is bound to: this one suppression."""
    return f"{entry.reason}:{entry.date.isoformat() if entry.date else ''}"
