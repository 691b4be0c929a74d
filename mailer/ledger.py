"""The crash-safe SQLite ledger: who got which message of which campaign, and in what state.

One row per campaign and recipient moves ``pending → sending → sent | deferred | failed |
unknown``. A row is ``sending`` once its Message-ID is committed, which happens before the
message's data can go out; a row still ``sending`` when the ledger is next opened belongs to
a process that died between DATA and the recorded reply, and becomes ``unknown``.

Writes go through one background thread that owns the write connection and commits in
groups: callers enqueue a state change and await a future that resolves once the
transaction holding it has committed (``synchronous=FULL``). Every commit takes everything
queued so far, in queue order. So if a worker queues its ``record`` for one message before
its ``mark_sending`` for the next, the record is committed no later than the mark, and after
a crash at most one row per worker (the concurrency) is left ``sending``. Reads use a second
connection and see committed rows only.

How the delivery engine uses it. ``mark_sending`` must be awaited before the message's data
goes out. ``record`` queues the change when it is called; awaiting it is optional, but it
must be called by the worker that sent the message before that worker marks its next one
(a callback run synchronously when the result is known, not a consumer of a result queue
that runs later)::

    ledger = Ledger.open(settings.ledger)
    campaign = ledger.start_campaign(name, kind="digest", list_path=..., subject=...,
                                     recipients=read_list(...))
    messages = (compose(r) for r in ledger.to_send(campaign))
    before_send = lambda message, attempt: ledger.mark_sending(
        campaign, message.recipient.email, message.message_id)
    after_send = lambda result: ledger.record(campaign, result)
    ...
    await ledger.flush()
    ledger.close()
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import enum
import fcntl
import json
import os
import queue
import re
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

from mailer.errors import EXIT_FATAL, MailerError
from mailer.models import Recipient, SendResult, Status

_T = TypeVar("_T")

APPLICATION_ID: Final = 0x6D6C6472  # "mldr": tells a mailer ledger from any SQLite file
PAGE_SIZE: Final = 1000  # rows per read when streaming a campaign
MAX_BATCH: Final = 10_000  # state changes per group commit, at most
# Group commits apply their changes with one UPDATE ... FROM json_each per kind (see
# _BULK_MARK_SQL), where SQLite has it; else one statement per change.
BULK_UPDATES = sqlite3.sqlite_version_info >= (3, 33, 0)


class LedgerError(MailerError):
    """The ledger cannot be opened, read or written."""

    exit_code = EXIT_FATAL


class LedgerBusy(LedgerError):
    """Another process holds the ledger for writing (a send is running)."""


class State(enum.StrEnum):
    """The state of one delivery row."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    UNKNOWN = "unknown"


_FROM_STATUS: Final = {
    Status.SENT: State.SENT,
    Status.DEFERRED: State.DEFERRED,
    Status.FAILED: State.FAILED,
    Status.UNKNOWN: State.UNKNOWN,
}
_HARD_BOUNCE_RE: Final = re.compile(r"\s*5\.1\.\d{1,3}(?!\S)")


@dataclass(frozen=True, slots=True)
class Campaign:
    """One send with a stable identity; its audience was frozen when it was first started."""

    id: int
    name: str
    kind: str
    list_path: str
    subject: str
    frozen_count: int
    created_at: dt.datetime
    finished_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    """One recipient of one campaign, as the ledger last recorded it."""

    email: str
    name: str
    state: State
    position: int
    attempts: int
    message_id: str | None
    last_code: int | None
    last_reply: str | None
    hard_bounce: bool
    updated_at: dt.datetime
    sending_at: dt.datetime | None
    sent_at: dt.datetime | None


# --- schema ------------------------------------------------------------------------------

# Each entry is one version: the statements that take the schema from the previous
# version to this one. Append, never edit: PRAGMA user_version records how many ran.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        f"PRAGMA application_id = {APPLICATION_ID}",
        """CREATE TABLE campaigns (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            list_path TEXT NOT NULL DEFAULT '',
            subject TEXT NOT NULL DEFAULT '',
            frozen_count INTEGER NOT NULL DEFAULT 0,
            first_row INTEGER NOT NULL DEFAULT 0,
            last_row INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            finished_at TEXT
        )""",
        # Rows are stored in list order (id), so that a send in that order dirties few pages
        # per commit; (campaign_id, email) is the key every state change looks up.
        """CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
            email TEXT NOT NULL,
            address TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            fields TEXT NOT NULL DEFAULT '{}',
            line INTEGER NOT NULL DEFAULT 0,
            position INTEGER NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN
                ('pending', 'sending', 'sent', 'deferred', 'failed', 'unknown')),
            message_id TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_code INTEGER,
            last_reply TEXT,
            hard_bounce INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            sending_at TEXT,
            sent_at TEXT,
            UNIQUE (campaign_id, email)
        )""",
        # Holds only the rows in flight (at most the concurrency): recovery without a scan.
        "CREATE INDEX deliveries_sending ON deliveries (state) WHERE state = 'sending'",
        """CREATE TABLE forwards (
            id INTEGER PRIMARY KEY,
            sender TEXT NOT NULL,
            friend TEXT NOT NULL,
            article TEXT NOT NULL,
            campaign_id INTEGER NOT NULL,
            email TEXT NOT NULL,
            created_at TEXT NOT NULL,
            FOREIGN KEY (campaign_id, email) REFERENCES deliveries (campaign_id, email)
        )""",
        "CREATE INDEX forwards_sender ON forwards (sender)",
        "CREATE INDEX forwards_friend_article ON forwards (friend, article)",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

_CAMPAIGN_COLUMNS: Final = (
    "id, name, kind, list_path, subject, frozen_count, created_at, finished_at"
)
_ROW_COLUMNS: Final = (
    "address, name, state, position, attempts, message_id, last_code, last_reply, "
    "hard_bounce, updated_at, sending_at, sent_at"
)
_MARK_SQL: Final = (
    "UPDATE deliveries SET state = 'sending', message_id = ?, attempts = attempts + 1, "
    "sending_at = ?, updated_at = ? WHERE campaign_id = ? AND email = ? "
    "AND state IN ('pending', 'deferred', 'unknown', 'sending')"
)
_RECORD_SQL: Final = (
    "UPDATE deliveries SET state = ?, last_code = ?, last_reply = ?, "
    "message_id = coalesce(?, message_id), hard_bounce = ?, updated_at = ?, "
    "sent_at = coalesce(?, sent_at) WHERE campaign_id = ? AND email = ? AND state <> 'sent'"
)
# The same two changes for a whole group in one statement each: the writer thread then takes
# the GIL a few times per commit instead of twice per message, which keeps the commit's
# latency low while the event loop is busy. Needs UPDATE ... FROM (SQLite 3.33) and JSON.
_OPS = "(SELECT {} FROM json_each(?2)) AS ops"
_BULK_MARK_SQL: Final = (
    "UPDATE deliveries SET state = 'sending', message_id = ops.mid, attempts = attempts + 1, "
    "sending_at = ?1, updated_at = ?1 FROM "
    + _OPS.format(
        "json_extract(value, '$[0]') AS cid, json_extract(value, '$[1]') AS key, "
        "json_extract(value, '$[2]') AS mid"
    )
    + " WHERE deliveries.campaign_id = ops.cid AND deliveries.email = ops.key "
    "AND deliveries.state IN ('pending', 'deferred', 'unknown', 'sending')"
)
_BULK_RECORD_SQL: Final = (
    "UPDATE deliveries SET state = ops.state, last_code = ops.code, last_reply = ops.reply, "
    "message_id = coalesce(ops.mid, message_id), hard_bounce = ops.hard, updated_at = ?1, "
    "sent_at = CASE WHEN ops.state = 'sent' THEN ?1 ELSE sent_at END FROM "
    + _OPS.format(
        "json_extract(value, '$[0]') AS cid, json_extract(value, '$[1]') AS key, "
        "json_extract(value, '$[2]') AS state, json_extract(value, '$[3]') AS code, "
        "json_extract(value, '$[4]') AS reply, json_extract(value, '$[5]') AS mid, "
        "json_extract(value, '$[6]') AS hard"
    )
    + " WHERE deliveries.campaign_id = ops.cid AND deliveries.email = ops.key "
    "AND deliveries.state <> 'sent'"
)
_RECOVER_SQL: Final = (
    "UPDATE deliveries SET state = 'unknown', last_code = NULL, "
    "last_reply = 'interrupted: no reply was recorded', updated_at = ? "
    "WHERE state = 'sending'"
)


def _stamp(moment: dt.datetime) -> str:
    """Fixed-width UTC text, so that timestamps compare as strings."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


def _key(email: str) -> str:
    return email.strip().lower()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def is_hard_bounce(code: int | None, reply: str) -> bool:
    """A permanent failure whose enhanced status code is 5.1.x (bad destination address)."""
    return code is not None and 500 <= code < 600 and _HARD_BOUNCE_RE.match(reply) is not None


# --- the writer thread ---------------------------------------------------------------------

_MARK, _RECORD, _FLUSH, _JOB, _STOP = range(5)


class _Op:
    __slots__ = ("args", "future", "kind", "loop")

    def __init__(
        self,
        kind: int,
        args: tuple[Any, ...] = (),
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[None] | concurrent.futures.Future[Any] | None = None,
    ) -> None:
        self.kind = kind
        self.args = args
        self.loop = loop
        self.future = future


def _settle(items: list[tuple[asyncio.Future[None], BaseException | None]]) -> None:
    """Runs on the event loop: resolve the futures of one commit."""
    for future, error in items:
        if future.done():  # the awaiting task was cancelled
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


class _Writer:
    """The one thread that writes: it drains the queue and commits each drained group."""

    def __init__(
        self, conn: sqlite3.Connection, path: Path, clock: Callable[[], dt.datetime]
    ) -> None:
        self.conn = conn
        self.path = path
        self.clock = clock
        self.queue: queue.SimpleQueue[_Op] = queue.SimpleQueue()
        self.error: LedgerError | None = None  # a failed commit: every later write fails
        self.commits = 0
        self.bulk = BULK_UPDATES and _compiles(conn, _BULK_MARK_SQL, _BULK_RECORD_SQL)
        self.thread = threading.Thread(target=self._run, name="mailer-ledger", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.queue.put(_Op(_STOP))
        self.thread.join()

    def _run(self) -> None:
        get, get_nowait = self.queue.get, self.queue.get_nowait
        while True:
            batch = [get()]
            with contextlib.suppress(queue.Empty):
                while len(batch) < MAX_BATCH:
                    batch.append(get_nowait())
            group: list[_Op] = []
            for op in batch:
                if op.kind in (_JOB, _STOP):
                    self._commit(group)
                    group = []
                    if op.kind == _STOP:
                        return  # close() puts STOP last; nothing may follow it
                    self._job(op)
                else:
                    group.append(op)
            self._commit(group)

    def _commit(self, group: list[_Op]) -> None:
        """Apply a group of state changes in one transaction, then resolve their futures."""
        if not group:
            return
        outcomes: list[BaseException | None]
        if self.error is not None:
            outcomes = [self.error] * len(group)
        elif all(op.kind == _FLUSH for op in group):
            outcomes = [None] * len(group)  # every earlier group is committed already
        else:
            try:
                outcomes = self._apply(group)
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
                error = LedgerError(f"{self.path}: cannot write the ledger ({exc})")
                error.__cause__ = exc
                self.error = error
                outcomes = [error] * len(group)
        by_loop: dict[asyncio.AbstractEventLoop, list[Any]] = {}
        for op, outcome in zip(group, outcomes, strict=True):
            assert op.loop is not None
            by_loop.setdefault(op.loop, []).append((op.future, outcome))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_settle, items)

    def _apply(self, group: list[_Op]) -> list[BaseException | None]:
        conn = self.conn
        now = _stamp(self.clock())
        conn.execute("BEGIN IMMEDIATE")
        outcomes = self._apply_bulk(group, now) if self.bulk else None
        if outcomes is None:
            if self.bulk:  # some change was refused: redo them one by one to tell which
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
            outcomes = self._apply_each(group, now)
        conn.execute("COMMIT")
        self.commits += 1
        return outcomes

    def _apply_bulk(self, group: list[_Op], now: str) -> list[BaseException | None] | None:
        """One statement per kind of change and run of distinct rows; None if any change
        was refused (a row already sent, or missing)."""
        marks: list[tuple[Any, ...]] = []
        records: list[tuple[Any, ...]] = []
        seen: set[tuple[int, str]] = set()
        for op in group:
            if op.kind == _FLUSH:
                continue
            row = (op.args[0], op.args[1])
            if row in seen:  # the same row twice: keep the order, apply what came before
                if not self._bulk_run(marks, records, now):
                    return None
                marks, records, seen = [], [], set()
            seen.add(row)
            (marks if op.kind == _MARK else records).append(op.args)
        if not self._bulk_run(marks, records, now):
            return None
        return [None] * len(group)

    def _bulk_run(
        self, marks: list[tuple[Any, ...]], records: list[tuple[Any, ...]], now: str
    ) -> bool:
        for sql, rows in ((_BULK_MARK_SQL, marks), (_BULK_RECORD_SQL, records)):
            if rows:
                payload = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
                if self.conn.execute(sql, (now, payload)).rowcount != len(rows):
                    return False
        return True

    def _apply_each(self, group: list[_Op], now: str) -> list[BaseException | None]:
        conn = self.conn
        outcomes: list[BaseException | None] = []
        for op in group:
            if op.kind == _MARK:
                campaign_id, key, message_id = op.args
                cursor = conn.execute(_MARK_SQL, (message_id, now, now, campaign_id, key))
                outcomes.append(None if cursor.rowcount == 1 else self._refusal(op, "mark"))
            elif op.kind == _RECORD:
                campaign_id, key, state, code, reply, message_id, hard = op.args
                sent_at = now if state == State.SENT else None
                values = (state, code, reply, message_id, hard, now, sent_at, campaign_id, key)
                cursor = conn.execute(_RECORD_SQL, values)
                outcomes.append(None if cursor.rowcount == 1 else self._refusal(op, "record"))
            else:
                outcomes.append(None)
        return outcomes

    def _refusal(self, op: _Op, verb: str) -> LedgerError:
        campaign_id, key = op.args[0], op.args[1]
        row = self.conn.execute(
            "SELECT state FROM deliveries WHERE campaign_id = ? AND email = ?",
            (campaign_id, key),
        ).fetchone()
        if row is None:
            return LedgerError(f"{self.path}: {key} is not in campaign #{campaign_id}")
        return LedgerError(
            f"{self.path}: refusing to {verb} {key} in campaign #{campaign_id}: "
            f"its row is already {row[0]}"
        )

    def _job(self, op: _Op) -> None:
        future = op.future
        assert isinstance(future, concurrent.futures.Future)
        if not future.set_running_or_notify_cancel():
            return
        if self.error is not None:
            future.set_exception(self.error)
            return
        function: Callable[[sqlite3.Connection, str], Any] = op.args[0]
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = function(conn, _stamp(self.clock()))
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                error = LedgerError(f"{self.path}: cannot write the ledger ({exc})")
                error.__cause__ = exc
                future.set_exception(error)
            else:
                future.set_exception(exc)
        else:
            future.set_result(result)


# --- the ledger ----------------------------------------------------------------------------


class Ledger:
    """The delivery ledger of one SQLite file. Open it with ``Ledger.open``.

    Opening for writing takes an exclusive lock (``<path>.lock``): one sending process per
    ledger, so that rows left ``sending`` can only belong to a process that died. Readers
    (``readonly=True``, e.g. ``mailer status`` during a send) need no lock.
    """

    def __init__(
        self,
        path: Path,
        reader: sqlite3.Connection,
        writer: _Writer | None,
        lock_fd: int | None,
        recovered: int,
    ) -> None:
        self.path = path
        self._reader = reader
        self._read_lock = threading.Lock()
        self._writer = writer
        self._lock_fd = lock_fd
        self._closed = False
        self.recovered = recovered  # rows turned from sending to unknown when opened

    # --- opening and closing ---

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        readonly: bool = False,
        wait: float = 0.0,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> Ledger:
        """Open (creating if needed) the ledger at ``path``, migrate it, recover it.

        Creates a missing directory 0700 and the files 0600. Rows left ``sending`` become
        ``unknown`` (see ``recovered``). ``wait`` is how long to wait, in seconds, for another
        process's lock; then ``LedgerBusy``. ``readonly`` opens an existing ledger for
        reading only: no lock, no migration, no recovery.
        """
        path = Path(path)
        if readonly:
            return cls._open_readonly(path)
        try:
            if not path.parent.is_dir():
                path.parent.mkdir(parents=True, mode=0o700)
            lock_fd = _lock(path, wait)
        except OSError as exc:
            raise LedgerError(f"{path}: cannot create the ledger ({exc.strerror})") from exc
        conn: sqlite3.Connection | None = None
        reader: sqlite3.Connection | None = None
        try:
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            conn = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode != "wal":
                raise LedgerError(f"{path}: cannot switch the ledger to WAL mode ({mode})")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            _check_identity(conn, path)
            _migrate(conn, path)
            conn.execute("BEGIN IMMEDIATE")
            recovered = conn.execute(_RECOVER_SQL, (_stamp(clock()),)).rowcount
            conn.execute("COMMIT")
            reader = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            reader.execute("PRAGMA query_only = ON")
        except BaseException as exc:
            for each in (reader, conn):
                if each is not None:
                    each.close()
            os.close(lock_fd)
            if isinstance(exc, sqlite3.Error | OSError):
                raise LedgerError(f"{path}: cannot open the ledger ({exc})") from exc
            raise
        return cls(path, reader, _Writer(conn, path, clock), lock_fd, recovered)

    @classmethod
    def _open_readonly(cls, path: Path) -> Ledger:
        if not path.is_file():
            raise LedgerError(
                f"{path}: no ledger here", hint="nothing has been sent with this ledger yet"
            )
        uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
        try:
            reader = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise LedgerError(f"{path}: cannot open the ledger ({exc})") from exc
        try:
            _check_identity(reader, path)
            version = reader.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise LedgerError(
                    f"{path}: the ledger has schema version {version}, this mailer reads "
                    f"{SCHEMA_VERSION}",
                    hint="open it once for writing (any send) to migrate it",
                )
        except BaseException as exc:
            reader.close()
            if isinstance(exc, sqlite3.Error):
                raise LedgerError(f"{path}: cannot read the ledger ({exc})") from exc
            raise
        return cls(path, reader, None, None, 0)

    @property
    def readonly(self) -> bool:
        return self._writer is None

    @property
    def commits(self) -> int:
        """How many group commits of state changes this ledger has made."""
        return self._writer.commits if self._writer is not None else 0

    def close(self) -> None:
        """Commit everything queued, then release the files and the lock.

        Raises ``LedgerError`` if any write failed, so that a failure of a ``record`` that
        nobody awaited is not silent.
        """
        if self._closed:
            return
        self._closed = True
        writer = self._writer
        try:
            if writer is not None:
                writer.stop()
                writer.conn.close()
        finally:
            with self._read_lock:
                self._reader.close()
            if self._lock_fd is not None:
                os.close(self._lock_fd)
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
    ) -> Campaign:
        """Return the campaign ``name``, creating it with all ``recipients`` as ``pending``.

        An existing campaign is returned unchanged and ``recipients`` is not read: the
        audience was frozen when the campaign first started. A new campaign is inserted in
        one transaction, streaming ``recipients`` (any size), and becomes visible only when
        complete; an address seen twice (case-insensitively) keeps its first row. An error
        raised while reading ``recipients`` leaves no trace.
        """

        def insert(conn: sqlite3.Connection, now: str) -> tuple[Any, ...]:
            existing = conn.execute(
                f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE name = ?", (name,)
            ).fetchone()
            if existing is not None:
                if existing[2] != kind:
                    raise LedgerError(
                        f"campaign {name!r} already exists as a {existing[2]} campaign"
                    )
                return tuple(existing)
            campaign_id = conn.execute(
                "INSERT INTO campaigns (name, kind, list_path, subject, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (name, kind, str(list_path), subject, now),
            ).lastrowid
            before = conn.total_changes
            (first,) = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM deliveries").fetchone()
            conn.executemany(
                "INSERT OR IGNORE INTO deliveries (campaign_id, email, address, name, fields, "
                "line, position, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        campaign_id,
                        _key(r.email),
                        r.email,
                        r.name,
                        json.dumps(dict(r.fields), ensure_ascii=False, separators=(",", ":")),
                        r.line,
                        position,
                        now,
                        now,
                    )
                    for position, r in enumerate(recipients, 1)
                ),
            )
            count = conn.total_changes - before
            conn.execute(
                "UPDATE campaigns SET frozen_count = ?, first_row = ?, last_row = ? WHERE id = ?",
                (count, first, first + count - 1, campaign_id),
            )
            return (campaign_id, name, kind, str(list_path), subject, count, now, None)

        return _campaign(self._job(insert))

    def finish(self, campaign: Campaign) -> Campaign:
        """Record that a run of the campaign ended with nothing left to send."""

        def update(conn: sqlite3.Connection, now: str) -> tuple[Any, ...]:
            conn.execute("UPDATE campaigns SET finished_at = ? WHERE id = ?", (now, campaign.id))
            row = conn.execute(
                f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ?", (campaign.id,)
            ).fetchone()
            return tuple(row)

        return _campaign(self._job(update))

    def recover(self, campaign: Campaign | None = None) -> int:
        """Turn rows left ``sending`` into ``unknown``; returns how many.

        ``open`` does this for every campaign. Call it only when nothing is in flight.
        """
        sql = _RECOVER_SQL + (" AND campaign_id = ?" if campaign is not None else "")

        def update(conn: sqlite3.Connection, now: str) -> int:
            params = (now,) if campaign is None else (now, campaign.id)
            return conn.execute(sql, params).rowcount

        return int(self._job(update))

    def record_forward(self, campaign: Campaign, *, sender: str, friend: str, article: str) -> None:
        """Link a forward (``sender`` sent ``article`` to ``friend``) to its delivery row.

        ``friend`` must be a recipient of ``campaign``. The forward counts as sent when, and
        only when, that row is ``sent``: see ``forward_count_since`` and ``forward_exists``.
        """

        def insert(conn: sqlite3.Connection, now: str) -> None:
            key = _key(friend)
            conn.execute(
                "INSERT INTO forwards (sender, friend, article, campaign_id, email, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (_key(sender), key, article, campaign.id, key, now),
            )

        self._job(insert)

    # --- writes: delivery states (group-committed) ---

    def mark_sending(self, campaign: Campaign, email: str, message_id: str) -> asyncio.Future[None]:
        """Queue ``email``'s row to ``sending`` with its Message-ID; await before sending.

        The returned future resolves when the change is durable, or raises ``LedgerError``
        (the row is already sent or failed, is not in the campaign, or the ledger failed):
        then the message must not go out. Each call counts one attempt.
        """
        return self._enqueue(_MARK, (campaign.id, _key(email), message_id))

    def record(self, campaign: Campaign, result: SendResult) -> asyncio.Future[None]:
        """Queue the outcome of one recipient; awaiting the returned future is optional.

        The change is queued when this is called, so it commits no later than any change
        queued after it. ``Status.SKIPPED`` is not a delivery outcome: ``ValueError``.
        A 5xx reply with an enhanced code 5.1.x marks the row as a hard bounce.
        """
        state = _FROM_STATUS.get(result.status)
        if state is None:
            raise ValueError(f"{result.status} is not a delivery outcome")
        hard = state is State.FAILED and is_hard_bounce(result.code, result.reply)
        args = (
            campaign.id,
            _key(result.email),
            state,
            result.code,
            result.reply,
            result.message_id or None,
            int(hard),
        )
        return self._enqueue(_RECORD, args)

    async def flush(self) -> None:
        """Wait until every change queued so far is committed."""
        await self._enqueue(_FLUSH, ())

    def _enqueue(self, kind: int, args: tuple[Any, ...]) -> asyncio.Future[None]:
        writer = self._writable()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if writer.error is not None:
            future.set_exception(writer.error)
        else:
            writer.queue.put(_Op(kind, args, loop, future))
        return future

    def _job(self, function: Callable[[sqlite3.Connection, str], _T]) -> _T:
        writer = self._writable()
        future: concurrent.futures.Future[_T] = concurrent.futures.Future()
        writer.queue.put(_Op(_JOB, (function,), None, future))
        return future.result()

    def _writable(self) -> _Writer:
        if self._closed:
            raise LedgerError(f"{self.path}: the ledger is closed")
        if self._writer is None:
            raise LedgerError(f"{self.path}: the ledger is open read-only")
        return self._writer

    # --- reads (committed rows only) ---

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        if self._closed:
            raise LedgerError(f"{self.path}: the ledger is closed")
        try:
            with self._read_lock:
                return self._reader.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: cannot read the ledger ({exc})") from exc

    def campaign(self, name: str) -> Campaign | None:
        rows = self._read(f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE name = ?", (name,))
        return _campaign(rows[0]) if rows else None

    def campaigns(self, *, kind: str | None = None) -> list[Campaign]:
        """Every campaign (of ``kind``), newest first."""
        where, params = ("WHERE kind = ?", (kind,)) if kind is not None else ("", ())
        rows = self._read(
            f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns {where} ORDER BY created_at DESC, id DESC",
            params,
        )
        return [_campaign(row) for row in rows]

    def latest_campaign(self, *, kind: str | None = None) -> Campaign | None:
        where, params = ("WHERE kind = ?", (kind,)) if kind is not None else ("", ())
        rows = self._read(
            f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns {where} "
            "ORDER BY created_at DESC, id DESC LIMIT 1",
            params,
        )
        return _campaign(rows[0]) if rows else None

    def _rows_of(self, campaign: Campaign) -> tuple[int, int]:
        """The first and last row ids of the campaign: its rows are that contiguous range."""
        found = self._read("SELECT first_row, last_row FROM campaigns WHERE id = ?", (campaign.id,))
        if not found:
            raise LedgerError(f"{self.path}: no campaign #{campaign.id}")
        first, last = found[0]
        return int(first), int(last)

    def counts(self, campaign: Campaign) -> dict[State, int]:
        """Rows per state, every state present (zero if none)."""
        counts = dict.fromkeys(State, 0)
        sql = (
            "SELECT state, count(*) FROM deliveries NOT INDEXED "
            "WHERE id BETWEEN ? AND ? GROUP BY state"
        )
        for state, count in self._read(sql, self._rows_of(campaign)):
            counts[State(state)] = count
        return counts

    def to_send(self, campaign: Campaign, *, resend_unknown: bool = False) -> Iterator[Recipient]:
        """Stream, in list order, the recipients still to send: ``pending`` and ``deferred``
        rows, and ``unknown`` ones with ``resend_unknown``. ``sent`` and ``failed`` are skipped.
        """
        states = [State.PENDING, State.DEFERRED] + ([State.UNKNOWN] if resend_unknown else [])
        columns = "address, name, fields, line"
        for _id, address, name, fields, line in self._pages(columns, campaign, states):
            values = json.loads(fields) if fields != "{}" else {}
            yield Recipient(email=address, name=name, fields=values, line=line)

    def addresses(self, campaign: Campaign, state: State | str) -> Iterator[str]:
        """Stream, in list order, the addresses whose row is in ``state``."""
        for _id, address in self._pages("address", campaign, [State(state)]):
            yield address

    def _pages(self, columns: str, campaign: Campaign, states: list[State]) -> Iterator[Any]:
        """Rows in list order, one page per read, so memory stays flat."""
        sql = (
            f"SELECT id, {columns} FROM deliveries NOT INDEXED WHERE id > ? AND id <= ? "
            f"AND state IN ({', '.join('?' * len(states))}) ORDER BY id LIMIT ?"
        )
        first, last = self._rows_of(campaign)
        after = first - 1
        while True:
            rows = self._read(sql, (after, last, *states, PAGE_SIZE))
            yield from rows
            if len(rows) < PAGE_SIZE:
                return
            after = rows[-1][0]

    def rows(
        self, campaign: Campaign, states: Iterable[State | str], limit: int
    ) -> list[DeliveryRow]:
        """The ``limit`` rows in ``states`` updated last, newest first."""
        wanted = [State(state) for state in states]
        sql = (
            f"SELECT {_ROW_COLUMNS} FROM deliveries NOT INDEXED WHERE id BETWEEN ? AND ? "
            f"AND state IN ({', '.join('?' * len(wanted))}) "
            "ORDER BY updated_at DESC, id DESC LIMIT ?"
        )
        return [_row(row) for row in self._read(sql, (*self._rows_of(campaign), *wanted, limit))]

    def recent_failures(self, campaign: Campaign, n: int = 10) -> list[DeliveryRow]:
        """The ``n`` latest ``failed`` and ``deferred`` rows, with their last SMTP reply."""
        return self.rows(campaign, (State.FAILED, State.DEFERRED), n)

    def hard_bounces(self, campaign: Campaign) -> list[DeliveryRow]:
        """Rows that failed with a 5xx reply whose enhanced code is 5.1.x, in list order."""
        sql = (
            f"SELECT {_ROW_COLUMNS} FROM deliveries NOT INDEXED WHERE id BETWEEN ? AND ? "
            "AND state = 'failed' AND hard_bounce = 1 ORDER BY id"
        )
        return [_row(row) for row in self._read(sql, self._rows_of(campaign))]

    def forward_count_since(self, sender: str, since: dt.datetime) -> int:
        """Forwards by ``sender`` actually sent (row ``sent``) at or after ``since`` (aware)."""
        if since.tzinfo is None:
            raise ValueError("since must be timezone-aware")
        sql = (
            "SELECT count(*) FROM forwards JOIN deliveries USING (campaign_id, email) "
            "WHERE forwards.sender = ? AND deliveries.state = 'sent' AND deliveries.sent_at >= ?"
        )
        return int(self._read(sql, (_key(sender), _stamp(since)))[0][0])

    def forward_exists(self, friend: str, article: str) -> bool:
        """Whether ``article`` was sent to ``friend``, or may have been (``sending`` or
        ``unknown``): a second copy is worse than a missing one."""
        sql = (
            "SELECT 1 FROM forwards JOIN deliveries USING (campaign_id, email) "
            "WHERE forwards.friend = ? AND forwards.article = ? "
            "AND deliveries.state IN ('sent', 'sending', 'unknown') LIMIT 1"
        )
        return bool(self._read(sql, (_key(friend), article)))


# --- helpers ---------------------------------------------------------------------------------


def _campaign(row: Sequence[Any]) -> Campaign:
    created = _parse(row[6])
    assert created is not None
    return Campaign(
        id=row[0],
        name=row[1],
        kind=row[2],
        list_path=row[3],
        subject=row[4],
        frozen_count=row[5],
        created_at=created,
        finished_at=_parse(row[7]),
    )


def _row(row: Sequence[Any]) -> DeliveryRow:
    updated = _parse(row[9])
    assert updated is not None
    return DeliveryRow(
        email=row[0],
        name=row[1],
        state=State(row[2]),
        position=row[3],
        attempts=row[4],
        message_id=row[5],
        last_code=row[6],
        last_reply=row[7],
        hard_bounce=bool(row[8]),
        updated_at=updated,
        sending_at=_parse(row[10]),
        sent_at=_parse(row[11]),
    )


def _lock(path: Path, wait: float) -> int:
    """Take the exclusive writer lock ``<path>.lock`` (0600); ``LedgerBusy`` if held."""
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
                os.close(fd)
                who = f" (pid {holder})" if holder.isdigit() else ""
                raise LedgerBusy(
                    f"{path}: the ledger is in use by another mailer run{who}",
                    hint="wait for that run to finish, or stop it with Ctrl-C",
                ) from None
            time.sleep(0.05)
        except BaseException:
            os.close(fd)
            raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def _compiles(conn: sqlite3.Connection, *statements: str) -> bool:
    """Whether this SQLite can prepare the statements (UPDATE ... FROM, JSON functions)."""
    try:
        for statement in statements:
            conn.execute("EXPLAIN " + statement, ("", "[]")).fetchall()
    except sqlite3.Error:
        return False
    return True


def _check_identity(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a SQLite file that is not a mailer ledger, or one from a newer mailer."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id not in (0, APPLICATION_ID) or (app_id == 0 and (version or tables)):
        raise LedgerError(f"{path}: not a mailer ledger")
    if version > SCHEMA_VERSION:
        raise LedgerError(
            f"{path}: the ledger has schema version {version}, newer than this mailer's "
            f"{SCHEMA_VERSION}",
            hint="upgrade mailer",
        )


def _migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Run the missing migration steps, each in its own transaction with its version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    for number in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in MIGRATIONS[number - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
