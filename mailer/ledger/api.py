"""The public ledger: who got which message of which campaign, and in what state.

One row per campaign and recipient moves ``pending → sending → sent | deferred | failed |
unknown``. A row is ``sending`` once its Message-ID is committed, which happens before the
message's data can go out; a row still ``sending`` when its sender is gone belongs to a
process that died between DATA and the recorded reply, and becomes ``unknown``.

State changes are queued on the event loop and written by the ledger's writer (a child
process for SQLite, a thread for PostgreSQL) in group commits (``synchronous=FULL`` on
SQLite, a durable commit on PostgreSQL). Callers may await a change: the wait ends once the
transaction holding it has committed. Every commit takes everything queued so far, in queue
order. So if a worker queues its ``record`` for
one message before its ``mark_sending`` for the next, the record is committed no later than
the mark, and after a crash at most one row per worker (the concurrency) is left
``sending``. Reads, and the synchronous campaign jobs, use connections of their own.

How the delivery engine uses it. ``mark_sending`` is called when a message is handed to a
connection and awaited once its DATA command is accepted, before the body, so that the
commit overlaps the MAIL, RCPT and DATA round trips and the marks of several connections
share one commit. ``record`` queues the change when it is called; awaiting it is optional,
but it must be called by the worker that sent the message before that worker marks its
next one (a callback run synchronously when the result is known, not a consumer of a
result queue that runs later). docs/ledger.md shows the whole cycle.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from mailer.errors import LedgerError
from mailer.ledger.model import (
    FROM_STATUS,
    PAGE_SIZE,
    Campaign,
    CampaignQuery,
    CampaignSpec,
    DeliveryRow,
    State,
    WorkerProgress,
    key,
    stamp,
    utcnow,
)
from mailer.ledger.sqlite import SQLiteStore
from mailer.ledger.store import MARK, RECORD, Page, Store
from mailer.ledger.writer import Durable, ThreadWriter
from mailer.models import Recipient, SendResult

_T = TypeVar("_T")


class Ledger:
    """The delivery ledger of one store. Open it with ``Ledger.open``.

    On SQLite, opening for writing takes an exclusive lock (``<path>.lock``): one sending
    process per ledger, so that rows left ``sending`` can only belong to a process that died.
    On PostgreSQL, every ledger opened for writing is a sender of its own, and senders share
    campaigns by claiming rows (see ``mailer.ledger.postgres``). Readers (``readonly=True``,
    e.g. ``mailer status`` during a send) need no lock.
    """

    def __init__(self, store: Store, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.store = store
        self.path: Path | str = store.path if isinstance(store, SQLiteStore) else store.location
        self._writer: ThreadWriter | None = None  # started by the first state change
        self._clock = clock
        self._closed = False
        self.recovered = store.recovered  # rows turned from sending to unknown when opened

    # --- opening and closing ---

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        wait: float = 0.0,
        clock: Callable[[], dt.datetime] = utcnow,
        lease: float | None = None,
    ) -> Ledger:
        """Open (creating if needed) the ledger at ``path``, migrate it, recover it.

        Creates a missing directory 0700 and the files 0600. Rows left ``sending`` become
        ``unknown`` (see ``recovered``). ``wait`` is how long to wait, in seconds, for another
        process's lock; then ``LedgerBusy``. ``readonly`` opens an existing ledger for
        reading only: no lock, no migration, no recovery.

        ``path`` may be a ``postgresql://`` URL (see ``mailer.ledger.postgres``): then many
        senders share the ledger, and ``lease`` is how many seconds a sender and its claims
        outlive its last renewal.
        """
        if is_url(path):
            from mailer.ledger.postgres import LEASE, PostgresStore  # psycopg: only when used

            url, now = str(path), stamp(clock())
            store = PostgresStore.open(url, readonly=readonly, now=now, lease=lease or LEASE)
            return cls(store, clock)
        file = Path(path)
        if readonly:
            return cls(SQLiteStore.open_readonly(file))
        return cls(SQLiteStore.open(file, wait=wait, now=stamp(clock())), clock)

    @property
    def readonly(self) -> bool:
        return self.store.readonly

    @property
    def commits(self) -> int:
        """How many group commits of state changes this ledger has made."""
        return self._writer.commits if self._writer is not None else 0

    def close(self) -> None:
        """Commit everything queued, then release the store and its lock.

        Raises ``LedgerError`` if any write failed: a failed ``record`` nobody awaited too.
        """
        if self._closed:
            return
        self._closed = True
        writer = self._writer
        try:
            if writer is not None:
                writer.stop()
        finally:
            self.store.close()
        if writer is not None and writer.error is not None:
            raise writer.error

    def __enter__(self) -> Ledger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- writes: campaigns (synchronous, each in its own transaction) ---

    def start_campaign(
        self,
        name: str,
        *,
        kind: str,
        list_path: str | os.PathLike[str] = "",
        subject: str = "",
        recipients: Iterable[Recipient],
        skip: Callable[[str], str | None] | None = None,
        issue_date: dt.date | None = None,
        cutoff: dt.datetime | None = None,
        fingerprint: str = "",
        fields: Sequence[str] = (),
    ) -> Campaign:
        """Return the campaign ``name``, creating it with all ``recipients`` as ``pending``.

        An existing campaign is returned unchanged and ``recipients`` is not read: the
        audience was frozen when the campaign first started. A new campaign is inserted in
        one transaction, streaming ``recipients`` (any size), and becomes visible only when
        complete; an address seen twice (case-insensitively) keeps its first row. A
        recipient for whom ``skip`` gives a reason (suppressed) is frozen as ``skipped``
        with that reason. An error raised while reading ``recipients`` leaves no trace, and
        so does an audience with nobody to send to (``EmptyAudience``).
        """
        spec = CampaignSpec(
            name, kind, str(list_path), subject, issue_date, cutoff, fingerprint, tuple(fields)
        )
        return self._job(lambda now: self.store.start_campaign(spec, recipients, skip, now))

    def give_up(self, campaign: Campaign, *, refusals: int) -> list[tuple[str, bool]]:
        """Fail the deferred rows the relay has refused ``refusals`` times with a 5xx (held
        refusals, across runs): a refusal given run after run is about that recipient.
        Returns each row failed, as (address, hard bounce)."""
        return self._job(lambda now: self.store.give_up(campaign, refusals, now))

    def accept_changes(self, campaign: Campaign, *, fingerprint: str, subject: str) -> Campaign:
        """Record that the rest of ``campaign`` goes out with new content (``--accept-changes``)."""
        changes: dict[str, str | None] = {"fingerprint": fingerprint, "subject": subject}
        return self._job(lambda now: self.store.update_campaign(campaign, changes))

    def finish(self, campaign: Campaign) -> Campaign:
        """Record that a run of the campaign ended with nothing left to send."""
        return self._job(lambda now: self.store.update_campaign(campaign, {"finished_at": now}))

    def recover(self, campaign: Campaign | None = None) -> int:
        """Turn rows left ``sending`` into ``unknown``; returns how many.

        ``open`` does this for every campaign. Call it only when nothing is in flight.
        """
        return self._job(lambda now: self.store.recover(campaign, now))

    def record_forward(self, campaign: Campaign, *, sender: str, friend: str, article: str) -> None:
        """Link a forward (``sender`` sent ``article`` to ``friend``) to its delivery row.

        ``friend`` must be a recipient of ``campaign``. The forward counts as sent when, and
        only when, that row is ``sent``: see ``forward_count_since`` and ``forward_exists``.
        """
        self._job(lambda now: self.store.record_forward(campaign, sender, friend, article, now))

    def _job(self, function: Callable[[str], _T]) -> _T:
        """Run ``function`` (one transaction of the store) after every queued state change."""
        self._check_open()
        if self.store.readonly:
            raise LedgerError(f"{self.path}: the ledger is open read-only")
        if self._writer is not None:
            self._writer.drain()
            if self._writer.error is not None:
                raise self._writer.error
        return function(stamp(self._clock()))

    # --- writes: delivery states (group-committed) ---

    def mark_sending(self, campaign: Campaign, email: str, message_id: str) -> Durable:
        """Queue ``email``'s row to ``sending`` with its Message-ID; await before DATA.

        Awaiting the result returns once the change is durable, or raises ``LedgerError``
        (the row is already sent or failed, is not in the campaign, or the ledger failed):
        then the message must not go out. Each call counts one attempt.
        """
        return self._writable().enqueue([MARK, campaign.id, key(email), message_id])

    def record(self, campaign: Campaign, result: SendResult) -> Durable:
        """Queue the outcome of one recipient; awaiting the result is optional.

        The change is queued when this is called, so it commits no later than any change
        queued after it. ``Status.SKIPPED`` is final (the reply says why); ``Status.UNSENT``
        puts the row back to ``pending``. A 5xx reply with an enhanced code 5.1.x (but
        X.1.7 and X.1.8, about the sender) marks the row as a hard bounce.
        """
        state = FROM_STATUS[result.status]
        hard = result.hard_bounce  # on a deferred row too: see give_up
        op = [
            RECORD,
            campaign.id,
            key(result.email),
            state.value,
            result.code,
            result.reply,
            result.message_id or None,
            int(hard),
        ]
        return self._writable().enqueue(op)

    async def flush(self) -> None:
        """Wait until every change queued so far is committed."""
        self._check_open()
        if self._writer is not None:  # else nothing was ever queued: no writer to start
            await self._writer.flush()

    def _writable(self) -> ThreadWriter:
        self._check_open()
        if self.store.readonly:
            raise LedgerError(f"{self.path}: the ledger is open read-only")
        if self._writer is None:
            clock = None if self._clock is utcnow else self._clock
            store = self.store
            if isinstance(store, SQLiteStore):  # see mailer.ledger.writer_process: why
                from mailer.ledger.writer_process import ProcessWriter

                self._writer = ProcessWriter(store.location, store.path, store.lock_fd, clock)
            else:  # PostgreSQL
                self._writer = ThreadWriter(store.location, store.applier, clock)
        return self._writer

    def _check_open(self) -> None:
        if self._closed:
            raise LedgerError(f"{self.path}: the ledger is closed")

    # --- reads (committed rows only) ---

    def campaign(self, name: str) -> Campaign | None:
        self._check_open()
        found = self.store.find_campaigns(CampaignQuery(name=name))
        return found[0] if found else None

    def campaigns(self, *, kind: str | None = None) -> list[Campaign]:
        """Every campaign (of ``kind``), newest first."""
        self._check_open()
        return self.store.find_campaigns(CampaignQuery(kind=kind))

    def latest_campaign(self, *, kind: str | None = None) -> Campaign | None:
        self._check_open()
        found = self.store.find_campaigns(CampaignQuery(kind=kind, limit=1))
        return found[0] if found else None

    def unfinished(self, *, kind: str, list_path: str) -> list[Campaign]:
        """Campaigns of ``kind`` to the list at ``list_path`` not yet finished, newest first."""
        self._check_open()
        return self.store.find_campaigns(
            CampaignQuery(kind=kind, list_path=list_path, unfinished=True)
        )

    def counts(self, campaign: Campaign) -> dict[State, int]:
        """Rows per state, every state present (zero if none)."""
        self._check_open()
        return self.store.counts(campaign)

    def to_send(self, campaign: Campaign, *, resend_unknown: bool = False) -> Iterator[Recipient]:
        """Stream the recipients still to send: ``pending`` rows in list order, then the
        retries (``deferred``, and ``unknown`` with ``resend_unknown``), so that rows a relay
        keeps refusing never stand before the rest. Final states are never sent again.

        The retries are the rows in those states when the stream starts: a row that a
        running send defers (it may be waiting out its backoff, to be retried by the
        engine) or loses after its data went out is never handed out a second time.
        """
        retries = [State.DEFERRED] + ([State.UNKNOWN] if resend_unknown else [])
        before = {row[1] for row in self._pages(self.store.page, campaign, retries)}
        for states in ([State.PENDING], retries):  # retries last: they cannot starve the rest
            for _pos, email, address, name, fields, line in self._pages(
                self.store.claim, campaign, states
            ):
                if states is retries and email not in before:
                    continue
                values = json.loads(fields) if fields != "{}" else {}
                yield Recipient(email=address, name=name, fields=values, line=line)

    def addresses(self, campaign: Campaign, state: State | str) -> Iterator[str]:
        """Stream, in list order, the addresses whose row is in ``state``."""
        for row in self._pages(self.store.page, campaign, [State(state)]):
            yield row[2]

    def _pages(
        self,
        read: Callable[[Campaign, Sequence[State], Any, int], Page],
        campaign: Campaign,
        states: list[State],
    ) -> Iterator[tuple[Any, ...]]:
        """Rows in list order, one page per read, so memory stays flat."""
        after = None
        while True:
            self._check_open()
            rows = read(campaign, states, after, PAGE_SIZE)
            if not rows:  # a shared store's claim may hand out fewer rows than asked
                return
            yield from rows
            after = rows[-1][0]

    def rows(
        self, campaign: Campaign, states: Iterable[State | str], limit: int
    ) -> list[DeliveryRow]:
        """The ``limit`` rows in ``states`` updated last, newest first."""
        self._check_open()
        return self.store.rows(campaign, [State(state) for state in states], limit)

    def recent_failures(self, campaign: Campaign, n: int = 10) -> list[DeliveryRow]:
        """The ``n`` latest ``failed`` and ``deferred`` rows, with their last SMTP reply."""
        return self.rows(campaign, (State.FAILED, State.DEFERRED), n)

    def hard_bounces(self, campaign: Campaign) -> list[DeliveryRow]:
        """Failed rows whose RCPT was refused with 5.1.x (no such address), in list order."""
        self._check_open()
        return self.store.rows(campaign, [State.FAILED], None, hard_only=True)

    def same_issue(self, campaign: Campaign) -> list[Campaign]:
        """The other campaigns that send the very same issue (the same fingerprint)."""
        self._check_open()
        if not campaign.fingerprint:
            return []
        return self.store.find_campaigns(
            CampaignQuery(fingerprint=campaign.fingerprint, exclude=campaign.id)
        )

    def got_it_from(self, campaigns: Sequence[Campaign], email: str) -> Campaign | None:
        """Which of ``campaigns`` sent (or may have sent) ``email`` its message already."""
        self._check_open()
        found = self.store.sent_by([c.id for c in campaigns], key(email))
        return next((c for c in campaigns if c.id == found), None)

    def workers(self, campaign: Campaign) -> list[WorkerProgress]:
        """Each sender of a shared (PostgreSQL) ledger that has handled rows of ``campaign``,
        alive or not, with its rows per state; empty on SQLite, which has one sender."""
        self._check_open()
        return self.store.workers(campaign)

    def forward_count_since(self, sender: str, since: dt.datetime) -> int:
        """Forwards by ``sender`` actually sent (row ``sent``) at or after ``since`` (aware)."""
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        self._check_open()
        return self.store.forward_count_since(key(sender), stamp(since))

    def forward_exists(self, friend: str, article: str) -> bool:
        """Whether ``article`` was sent to ``friend``, or may have been (``sending`` or
        ``unknown``): a second copy is worse than a missing one."""
        self._check_open()
        return self.store.forward_exists(key(friend), article)


def is_url(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a PostgreSQL ledger rather than a SQLite file."""
    return isinstance(path, str) and path.startswith(("postgresql://", "postgres://"))
