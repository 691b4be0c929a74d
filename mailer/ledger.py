"""The crash-safe SQLite ledger: who got which message of which campaign, and in what state.

One row per campaign and recipient moves ``pending → sending → sent | deferred | failed |
unknown``. A row is ``sending`` once its Message-ID is committed, which happens before the
message's data can go out; a row still ``sending`` when the ledger is next opened belongs to
a process that died between DATA and the recorded reply, and becomes ``unknown``.

State changes are written by a child process, the ledger writer (``mailer.ledger_writer``),
which owns the write connection and commits in groups (``synchronous=FULL``). Callers queue
a change and may await it: the wait ends once the transaction holding it has committed.
Every commit takes everything queued so far, in queue order. So if a worker queues its
``record`` for one message before its ``mark_sending`` for the next, the record is committed
no later than the mark, and after a crash at most one row per worker (the concurrency) is
left ``sending``. Reads, and the synchronous campaign jobs, use connections of their own.

Why a process: at thousands of messages a second, a writer thread spent more time passing
the GIL back and forth with the event loop than writing, and it took that time from the
loop. The writer process costs the sender one pipe write per group and one read per commit.
It holds the ledger's lock as well, so if the sender is killed, it commits what it had been
sent and exits before another run can open the ledger.

How the delivery engine uses it. ``mark_sending`` is called when a message is handed to a
connection and awaited once its DATA command is accepted, before the body, so that the
commit overlaps the MAIL, RCPT and DATA round trips and the marks of several connections
share one commit. ``record`` queues the change when it
is called; awaiting it is optional, but it must be called by the worker that sent the
message before that worker marks its next one (a callback run synchronously when the result
is known, not a consumer of a result queue that runs later)::

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
import contextlib
import datetime as dt
import enum
import fcntl
import json
import os
import select
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

from mailer.errors import EmptyAudience, LedgerBusy, LedgerError
from mailer.ledger_writer import MARK, RECORD
from mailer.ledger_writer import stamp as _stamp
from mailer.models import Recipient, SendResult, Status

_T = TypeVar("_T")

APPLICATION_ID: Final = 0x6D6C6472  # "mldr": tells a mailer ledger from any SQLite file
PAGE_SIZE: Final = 1000  # rows per read when streaming a campaign


class State(enum.StrEnum):
    """The state of one delivery row."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"  # final: not sent on purpose (suppressed); the reason is in last_reply


# States a campaign can still act on; with none of them left, it is finished.
OPEN_STATES: Final = (State.PENDING, State.SENDING, State.DEFERRED)

_FROM_STATUS: Final = {
    Status.SENT: State.SENT,
    Status.DEFERRED: State.DEFERRED,
    Status.FAILED: State.FAILED,
    Status.UNKNOWN: State.UNKNOWN,
    Status.SKIPPED: State.SKIPPED,
    Status.UNSENT: State.PENDING,
}


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
    issue_date: dt.date | None = None  # a digest's issue date
    cutoff: dt.datetime | None = None  # the instant its articles were chosen at
    fingerprint: str = ""  # what was sent: a hash of the rendered issue and its envelope
    fields: tuple[str, ...] = ()  # the list's extra columns when the audience was frozen


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
    # 2: a final 'skipped' state (suppressed during a campaign); what a campaign is (its
    # issue date, cut-off instant, content fingerprint and list columns), so that a resume
    # can tell a different issue or list from the one it started. SQLite cannot alter a
    # CHECK constraint, so the deliveries table is rebuilt (foreign keys are off meanwhile).
    (
        """CREATE TABLE deliveries_v2 (
            id INTEGER PRIMARY KEY,
            campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
            email TEXT NOT NULL,
            address TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            fields TEXT NOT NULL DEFAULT '{}',
            line INTEGER NOT NULL DEFAULT 0,
            position INTEGER NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN
                ('pending', 'sending', 'sent', 'deferred', 'failed', 'unknown', 'skipped')),
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
        "INSERT INTO deliveries_v2 SELECT * FROM deliveries",
        "DROP TABLE deliveries",
        "ALTER TABLE deliveries_v2 RENAME TO deliveries",
        "CREATE INDEX deliveries_sending ON deliveries (state) WHERE state = 'sending'",
        "ALTER TABLE campaigns ADD COLUMN issue_date TEXT",
        "ALTER TABLE campaigns ADD COLUMN cutoff TEXT",
        "ALTER TABLE campaigns ADD COLUMN fingerprint TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE campaigns ADD COLUMN fields TEXT NOT NULL DEFAULT '[]'",
    ),
    # 3: how many times a row was refused with a 5xx that was held for judgment, so that a
    # campaign gives up on it after enough refusals (not after enough attempts: 4xx retries
    # and refusals about us must not count).
    ("ALTER TABLE deliveries ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0",),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

_CAMPAIGN_COLUMNS: Final = (
    "id, name, kind, list_path, subject, frozen_count, created_at, finished_at, "
    "issue_date, cutoff, fingerprint, fields"
)
_ROW_COLUMNS: Final = (
    "address, name, state, position, attempts, message_id, last_code, last_reply, "
    "hard_bounce, updated_at, sending_at, sent_at"
)
_RECOVER_SQL: Final = (
    "UPDATE deliveries SET state = 'unknown', last_code = NULL, "
    "last_reply = 'interrupted: no reply was recorded', updated_at = ? "
    "WHERE state = 'sending'"
)


def _parse(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


def _key(email: str) -> str:
    return email.strip().lower()


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- the writer process ----------------------------------------------------------------------

WRITER_SCRIPT: Final = Path(__file__).with_name("ledger_writer.py")
MAX_BATCH: Final = 10_000  # queued changes that are sent without waiting for an await


class Durable:
    """A queued state change; awaiting it waits for its commit (and sends its batch to the
    writer now if it has not gone yet). Not awaiting it is fine: it goes with its batch."""

    __slots__ = ("_future", "_seq", "_writer")

    def __init__(self, writer: _Writer, future: asyncio.Future[None], seq: int) -> None:
        self._writer = writer
        self._future = future
        self._seq = seq

    def __await__(self) -> Generator[Any, None, None]:
        self._writer.need(self._seq)
        return self._future.__await__()


class _Writer:
    """The sending side of the writer process (see ``mailer.ledger_writer``).

    Group commit, one commit at a time: state changes are queued on the event loop, and
    the batch gathered so far goes to the writer process when a mark is queued while the
    writer is idle, when the commit in flight is acknowledged and marks have gathered
    meanwhile, or when someone awaits a change of it. So under load every commit takes the
    marks of all the connections that reached MAIL while the previous one was being written,
    and records ride along with them. Each change's future resolves when the writer
    acknowledges the commit that holds it.

    Everything here runs on the event loop's thread, except ``drain``, the synchronous path
    used by ``close`` and the campaign jobs, which waits on the pipes directly.
    """

    def __init__(self, path: Path, lock_fd: int, clock: Callable[[], dt.datetime] | None) -> None:
        self.path = path
        self.clock = clock  # None: the writer process stamps each commit with its own clock
        # -I: isolated from PYTHON* variables, the user's site and the working folder; the
        # writer needs the standard library only.
        argv = [sys.executable, "-I", str(WRITER_SCRIPT), str(path)]
        try:
            # Its own session: a Ctrl-C at the terminal reaches the sender only, which
            # drains and closes; the writer ends when its input does. It holds the lock
            # too, so no other run can open the ledger until its last commit is done.
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(lock_fd,),
                start_new_session=True,
            )
        except OSError as exc:
            raise LedgerError(f"{path}: cannot start the ledger writer ({exc})") from exc
        assert self.process.stdin and self.process.stdout
        self.fd_out = self.process.stdin.fileno()  # batches go out here
        self.fd_in = self.process.stdout.fileno()  # acknowledgements come back here
        os.set_blocking(self.fd_out, False)
        os.set_blocking(self.fd_in, False)
        self.error: LedgerError | None = None  # a failed commit: every later write fails
        self.commits = 0
        self._ops: list[list[Any]] = []  # the batch being gathered: number self._seq + 1
        self._futures: list[asyncio.Future[None]] = []
        self._scheduled = False
        self._marks = 0  # marks in the batch being gathered
        self._wanted = False  # someone awaits a change of it
        self._seq = 0  # batches sent
        self._acked = 0  # batches committed
        self._outstanding: dict[int, list[asyncio.Future[None]]] = {}
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []  # flush() calls
        self._out = bytearray()  # batches the pipe has not taken yet
        self._in = bytearray()  # a partial acknowledgement line
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing = False

    # --- on the event loop ---

    def enqueue(self, op: list[Any]) -> Durable:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self.error is None and self._loop is not loop:
            self._bind(loop)
        durable = Durable(self, future, self._seq + 1)  # it goes in the next batch
        if self.error is not None:
            _resolve(future, self.error)
            return durable
        self._ops.append(op)
        self._futures.append(future)
        if op[0] == MARK:
            self._marks += 1
        if len(self._ops) >= MAX_BATCH or (op[0] == MARK and self._acked == self._seq):
            self._send_batch()  # a big batch, or a mark while the writer is idle: now
        elif self._acked < self._seq:
            # An outcome while a commit is in flight: it goes with the next batch, sent as
            # soon as that commit is acknowledged, not whenever the next mark comes.
            self._wanted = True
        elif not self._scheduled and self._loop is not None:
            # An outcome while the writer is idle (the send is quiet, or waiting for a slow
            # relay): commit it at the end of this loop iteration rather than whenever the
            # next mark comes, so that a crash meanwhile cannot turn it into 'unknown'.
            self._scheduled = True
            self._loop.call_soon(self._send_batch)
        return durable

    def need(self, seq: int) -> None:
        """Someone waits for a change of batch ``seq``: send it at the end of this loop
        iteration (so that changes queued meanwhile join it), or as soon as the commit in
        flight is acknowledged."""
        if seq <= self._seq:
            return
        if self._acked < self._seq:
            self._wanted = True
        elif not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._send_batch)

    async def flush(self) -> None:
        if self.error is not None:
            raise self.error
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._bind(loop)
        self._send_batch()
        if self.error is not None:
            raise self.error
        if self._acked >= self._seq:
            return
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append((self._seq, waiter))
        await waiter

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is not None:
            self.drain()  # changes queued on another loop: settle them first (unbinds it)
        self._loop = loop
        loop.add_reader(self.fd_in, self._on_readable)

    def _unbind(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self.fd_in)
            if self._writing:
                loop.remove_writer(self.fd_out)
        self._writing = False

    def _send_batch(self) -> None:
        self._scheduled = False
        if self.error is not None:
            self._fail_all()  # nothing gathered may wait for a writer that will not write
            return
        if not self._ops:
            return
        self._seq += 1
        self._marks = 0
        self._wanted = False
        self._outstanding[self._seq] = self._futures
        now = None if self.clock is None else _stamp(self.clock())
        self._out += _encode([self._seq, now, self._ops]).encode("ascii") + b"\n"
        self._ops, self._futures = [], []
        if not self._writing:
            self._on_writable()

    def _write_some(self) -> None:
        try:
            sent = os.write(self.fd_out, self._out)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._fail(self._exit_reason())
            return
        del self._out[:sent]

    def _on_writable(self) -> None:
        self._write_some()
        loop = self._loop
        if self.error is not None or loop is None or loop.is_closed():
            return
        if self._out and not self._writing:
            loop.add_writer(self.fd_out, self._on_writable)
            self._writing = True
        elif not self._out and self._writing:
            loop.remove_writer(self.fd_out)
            self._writing = False

    def _on_readable(self) -> None:
        try:
            chunk = os.read(self.fd_in, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            self._fail(self._exit_reason())
            return
        if not chunk:
            self._fail(self._exit_reason())
            return
        self._in += chunk
        while self.error is None and (end := self._in.find(b"\n")) >= 0:
            line = bytes(self._in[:end])
            try:
                if line.startswith(b"{"):  # refusals or an error: rare
                    ack = json.loads(line)
                else:  # "upto commits": the common case
                    upto, commits = line.split()
                    ack = {"upto": int(upto), "commits": int(commits)}
            except ValueError:
                shown = line[:80].decode("ascii", "replace")
                self._fail(f"unexpected output from the ledger writer: {shown!r}")
                return
            del self._in[: end + 1]
            self._acknowledge(ack)

    def _acknowledge(self, ack: dict[str, Any]) -> None:
        upto: int = ack["upto"]
        self.commits = ack.get("commits", self.commits)
        refused = {(seq, index): why for seq, index, why in ack.get("refused", ())}
        if "error" in ack and self.error is None:
            self.error = LedgerError(f"{self.path}: cannot write the ledger ({ack['error']})")
        for seq in range(self._acked + 1, upto + 1):
            futures = self._outstanding.pop(seq, ())
            for index, future in enumerate(futures):
                if self.error is not None:
                    _resolve(future, self.error)
                elif (why := refused.get((seq, index))) is not None:
                    _resolve(future, LedgerError(f"{self.path}: {why}"))
                else:
                    _resolve(future, None)
        self._acked = max(self._acked, upto)
        if self._waiters:
            still: list[tuple[int, asyncio.Future[None]]] = []
            for seq, waiter in self._waiters:
                if seq <= self._acked:
                    _resolve(waiter, self.error)
                else:
                    still.append((seq, waiter))
            self._waiters = still
        if self.error is not None:
            self._fail_all()  # a failed commit fails everything after it, at once
        elif (self._marks or self._wanted) and self._acked == self._seq:
            self._send_batch()  # what gathered during that commit: the next group

    def _fail(self, why: str) -> None:
        if self.error is None:
            self.error = LedgerError(f"{self.path}: {why}")
        self._fail_all()

    def _fail_all(self) -> None:
        """Fail every change not yet committed, and every flush, with ``self.error``."""
        error = self.error
        assert error is not None
        for futures in self._outstanding.values():
            for future in futures:
                _resolve(future, error)
        for future in self._futures:
            _resolve(future, error)
        for _seq, waiter in self._waiters:
            _resolve(waiter, error)
        self._outstanding, self._ops, self._futures, self._waiters = {}, [], [], []
        self._out.clear()
        self._unbind()

    def _exit_reason(self) -> str:
        try:
            code: int | None = self.process.wait(timeout=1)  # its output ended: it is exiting
        except subprocess.TimeoutExpired:
            code = None
        detail = ""
        with contextlib.suppress(OSError, ValueError):
            assert self.process.stderr is not None
            os.set_blocking(self.process.stderr.fileno(), False)
            lines = (self.process.stderr.read() or b"").decode("utf-8", "replace").splitlines()
            detail = f": {lines[-1].strip()}" if lines else ""
        if code is None:
            status = ""
        elif code < 0:
            status = f" (killed by signal {-code})"
        else:
            status = f" (exit status {code})"
        return f"the ledger writer stopped unexpectedly{status}{detail}"

    # --- synchronous ---

    def drain(self) -> None:
        """Send everything queued and wait, blocking, until all of it is committed. It
        detaches from the event loop (the next change queued re-attaches), so that it works
        the same after that loop has ended."""
        self._unbind()
        self._send_batch()
        poller = select.poll()
        while self.error is None and (self._out or self._acked < self._seq):
            poller.register(self.fd_in, select.POLLIN)
            if self._out:
                poller.register(self.fd_out, select.POLLOUT)
            else:
                with contextlib.suppress(KeyError):
                    poller.unregister(self.fd_out)
            for fd, _events in poller.poll():
                if fd == self.fd_out:
                    self._write_some()
                elif self.error is None:
                    self._on_readable()

    def stop(self) -> None:
        """Drain, end the writer's input and wait for it to exit. Sets ``error`` if anything
        queued may not have been committed."""
        try:
            self.drain()
        except Exception as exc:  # e.g. interrupted: what was queued is not known committed
            if self.error is None:
                self.error = LedgerError(f"{self.path}: cannot write the ledger ({exc})")
        finally:
            self._unbind()
            assert self.process.stdin is not None and self.process.stdout is not None
            with contextlib.suppress(OSError):
                self.process.stdin.close()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            if self.process.returncode != 0 and self.error is None:
                self.error = LedgerError(f"{self.path}: {self._exit_reason()}")
            self.process.stdout.close()
            if self.process.stderr is not None:
                self.process.stderr.close()


_encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":")).encode


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled
        return
    with contextlib.suppress(RuntimeError):  # its loop is closed: nobody waits any more
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
            future.exception()  # retrieved: a change nobody awaited must not log it


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
        conn: sqlite3.Connection | None,
        lock_fd: int | None,
        recovered: int,
        clock: Callable[[], dt.datetime] = _utcnow,
    ) -> None:
        self.path = path
        self._reader = reader
        self._read_lock = threading.Lock()
        self._conn = conn  # campaign jobs write here; state changes go to the writer process
        self._writer: _Writer | None = None  # started by the first state change
        self._clock = clock
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
            conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
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
        return cls(path, reader, conn, lock_fd, recovered, clock)

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
        return self._conn is None

    @property
    def writer_pid(self) -> int | None:
        """The pid of the writer process, once a state change has started it."""
        return self._writer.process.pid if self._writer is not None else None

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
        finally:
            if self._conn is not None:
                self._conn.close()
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
                "INSERT INTO campaigns (name, kind, list_path, subject, created_at, issue_date, "
                "cutoff, fingerprint, fields) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    kind,
                    str(list_path),
                    subject,
                    now,
                    issue_date.isoformat() if issue_date else None,
                    _stamp(cutoff) if cutoff else None,
                    fingerprint,
                    json.dumps(list(fields)),
                ),
            ).lastrowid
            before = conn.total_changes
            (first,) = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM deliveries").fetchone()

            def rows() -> Iterator[tuple[Any, ...]]:
                for position, r in enumerate(recipients, 1):
                    reason = skip(r.email) if skip is not None else None
                    yield (
                        campaign_id,
                        _key(r.email),
                        r.email,
                        r.name,
                        json.dumps(dict(r.fields), ensure_ascii=False, separators=(",", ":")),
                        r.line,
                        position,
                        State.SKIPPED.value if reason else State.PENDING.value,
                        reason,
                        now,
                        now,
                    )

            conn.executemany(
                "INSERT OR IGNORE INTO deliveries (campaign_id, email, address, name, fields, "
                "line, position, state, last_reply, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows(),
            )
            count = conn.total_changes - before
            last = first + count - 1
            (sendable,) = conn.execute(
                "SELECT count(*) FROM deliveries WHERE id BETWEEN ? AND ? AND state = 'pending'",
                (first, last),
            ).fetchone()
            if sendable == 0:
                raise EmptyAudience(f"campaign {name!r} has nobody to send to", hint=None)
            if fingerprint:
                # Nobody gets the same issue twice, whatever the campaign is called: a row
                # whose address was sent this very issue by another campaign (another list
                # name, a renamed file, --campaign) is frozen as skipped.
                conn.execute(
                    "UPDATE deliveries SET state = 'skipped', last_reply = "
                    "'already sent this issue by campaign ' || ("
                    "  SELECT c.name FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id"
                    "  WHERE d.email = deliveries.email AND c.fingerprint = :fp AND c.id <> :cid"
                    "  AND d.state IN ('sent', 'sending', 'unknown') LIMIT 1) "
                    "WHERE id BETWEEN :first AND :last AND state = 'pending' AND email IN ("
                    "  SELECT d.email FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id"
                    "  WHERE c.fingerprint = :fp AND c.id <> :cid"
                    "  AND d.state IN ('sent', 'sending', 'unknown'))",
                    {"fp": fingerprint, "cid": campaign_id, "first": first, "last": last},
                )
            conn.execute(
                "UPDATE campaigns SET frozen_count = ?, first_row = ?, last_row = ? WHERE id = ?",
                (count, first, last, campaign_id),
            )
            return tuple(
                conn.execute(
                    f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ?", (campaign_id,)
                ).fetchone()
            )

        return _campaign(self._job(insert))

    def give_up(self, campaign: Campaign, *, refusals: int) -> list[tuple[str, bool]]:
        """Fail the deferred rows the relay has refused ``refusals`` times with a 5xx (held
        refusals, across runs): a refusal given run after run is about that recipient.
        Returns each row failed, as (address, hard bounce)."""

        def update(conn: sqlite3.Connection, now: str) -> list[tuple[str, bool]]:
            first, last = self._rows_of(campaign)
            where = (
                "WHERE id BETWEEN ? AND ? AND state = 'deferred' AND last_code >= 500 "
                "AND refusals >= ?"
            )
            rows = conn.execute(
                f"SELECT address, hard_bounce FROM deliveries {where}", (first, last, refusals)
            ).fetchall()
            conn.execute(
                f"UPDATE deliveries SET state = 'failed', updated_at = ? {where}",
                (now, first, last, refusals),
            )
            return [(address, bool(hard)) for address, hard in rows]

        return self._job(update)

    def accept_changes(self, campaign: Campaign, *, fingerprint: str, subject: str) -> Campaign:
        """Record that the rest of ``campaign`` goes out with new content (``--accept-changes``)."""

        def update(conn: sqlite3.Connection, now: str) -> tuple[Any, ...]:
            conn.execute(
                "UPDATE campaigns SET fingerprint = ?, subject = ? WHERE id = ?",
                (fingerprint, subject, campaign.id),
            )
            return tuple(
                conn.execute(
                    f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ?", (campaign.id,)
                ).fetchone()
            )

        return _campaign(self._job(update))

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

    def mark_sending(self, campaign: Campaign, email: str, message_id: str) -> Durable:
        """Queue ``email``'s row to ``sending`` with its Message-ID; await before DATA.

        Awaiting the result returns once the change is durable, or raises ``LedgerError``
        (the row is already sent or failed, is not in the campaign, or the ledger failed):
        then the message must not go out. Each call counts one attempt.
        """
        return self._writable().enqueue([MARK, campaign.id, _key(email), message_id])

    def record(self, campaign: Campaign, result: SendResult) -> Durable:
        """Queue the outcome of one recipient; awaiting the result is optional.

        The change is queued when this is called, so it commits no later than any change
        queued after it. ``Status.SKIPPED`` is final (the reply says why); ``Status.UNSENT``
        puts the row back to ``pending``. A 5xx reply with an enhanced code 5.1.x (but
        X.1.7 and X.1.8, about the sender) marks the row as a hard bounce.
        """
        state = _FROM_STATUS[result.status]
        hard = result.hard_bounce  # on a deferred row too: see give_up
        op = [
            RECORD,
            campaign.id,
            _key(result.email),
            state.value,
            result.code,
            result.reply,
            result.message_id or None,
            int(hard),
        ]
        return self._writable().enqueue(op)

    async def flush(self) -> None:
        """Wait until every change queued so far is committed."""
        if self._closed:
            raise LedgerError(f"{self.path}: the ledger is closed")
        if self._writer is not None:  # else nothing was ever queued: no writer to start
            await self._writer.flush()

    def _job(self, function: Callable[[sqlite3.Connection, str], _T]) -> _T:
        """Run ``function`` in a transaction of its own, after every queued state change."""
        if self._closed:
            raise LedgerError(f"{self.path}: the ledger is closed")
        conn = self._conn
        if conn is None:
            raise LedgerError(f"{self.path}: the ledger is open read-only")
        if self._writer is not None:
            try:
                self._writer.drain()
            except OSError as exc:
                raise LedgerError(f"{self.path}: cannot write the ledger ({exc})") from exc
            if self._writer.error is not None:
                raise self._writer.error
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = function(conn, _stamp(self._clock()))
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise LedgerError(f"{self.path}: cannot write the ledger ({exc})") from exc
            raise
        return result

    def _writable(self) -> _Writer:
        if self._closed:
            raise LedgerError(f"{self.path}: the ledger is closed")
        if self._conn is None or self._lock_fd is None:
            raise LedgerError(f"{self.path}: the ledger is open read-only")
        if self._writer is None:
            clock = None if self._clock is _utcnow else self._clock
            self._writer = _Writer(self.path, self._lock_fd, clock)
            # The lock file names the writer too, for the message of a run that waits.
            record = f"{os.getpid()}\n{self._writer.process.pid}\n".encode("ascii")
            with contextlib.suppress(OSError):
                os.pwrite(self._lock_fd, record, 0)
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

    def unfinished(self, *, kind: str, list_path: str) -> list[Campaign]:
        """Campaigns of ``kind`` to the list at ``list_path`` not yet finished, newest first."""
        rows = self._read(
            f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE kind = ? AND list_path = ? "
            "AND finished_at IS NULL ORDER BY created_at DESC, id DESC",
            (kind, list_path),
        )
        return [_campaign(row) for row in rows]

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
        """Stream the recipients still to send: ``pending`` rows in list order, then the
        retries (``deferred``, and ``unknown`` with ``resend_unknown``), so that rows a relay
        keeps refusing never stand before the rest. Final states are never sent again.

        The retries are the rows in those states when the stream starts: a row that a
        running send defers (it may be waiting out its backoff, to be retried by the
        engine) or loses after its data went out is never handed out a second time.
        """
        retries = [State.DEFERRED] + ([State.UNKNOWN] if resend_unknown else [])
        before = {key for _id, key in self._pages("email", campaign, retries)}
        columns = "email, address, name, fields, line"
        for states in ([State.PENDING], retries):  # retries last: they cannot starve the rest
            for _id, key, address, name, fields, line in self._pages(columns, campaign, states):
                if states is retries and key not in before:
                    continue
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
        """Failed rows whose RCPT was refused with 5.1.x (no such address), in list order."""
        sql = (
            f"SELECT {_ROW_COLUMNS} FROM deliveries NOT INDEXED WHERE id BETWEEN ? AND ? "
            "AND state = 'failed' AND hard_bounce = 1 ORDER BY id"
        )
        return [_row(row) for row in self._read(sql, self._rows_of(campaign))]

    def same_issue(self, campaign: Campaign) -> list[Campaign]:
        """The other campaigns that send the very same issue (the same fingerprint)."""
        if not campaign.fingerprint:
            return []
        rows = self._read(
            f"SELECT {_CAMPAIGN_COLUMNS} FROM campaigns WHERE fingerprint = ? AND id <> ?",
            (campaign.fingerprint, campaign.id),
        )
        return [_campaign(row) for row in rows]

    def got_it_from(self, campaigns: Sequence[Campaign], email: str) -> Campaign | None:
        """Which of ``campaigns`` sent (or may have sent) ``email`` its message already."""
        for other in campaigns:
            found = self._read(
                "SELECT 1 FROM deliveries WHERE campaign_id = ? AND email = ? "
                "AND state IN ('sent', 'sending', 'unknown')",
                (other.id, _key(email)),
            )
            if found:
                return other
        return None

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
        issue_date=dt.date.fromisoformat(row[8]) if row[8] else None,
        cutoff=_parse(row[9]),
        fingerprint=row[10],
        fields=tuple(json.loads(row[11])),
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


ORPHAN_WAIT: Final = 15.0  # seconds to let a dead run's writer process finish its commit


def _lock(path: Path, wait: float) -> int:
    """Take the exclusive writer lock ``<path>.lock`` (0600); ``LedgerBusy`` if held.

    The lock file names the process that took it. The writer process of a run holds the lock
    too, so a run killed with SIGKILL leaves it held until that writer has committed what it
    had been sent, which takes milliseconds: when the named process is gone, this waits up
    to ``ORPHAN_WAIT`` seconds, whatever ``wait`` says.
    """
    first = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        # Above 0-2 (a cron job may start with them closed), where the writer process
        # inherits it as it is rather than over its own standard streams.
        fd = fcntl.fcntl(first, fcntl.F_DUPFD_CLOEXEC, 3)
    finally:
        os.close(first)
    started = time.monotonic()
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            holder, _, writer = os.pread(fd, 64, 0).decode("ascii", "replace").partition("\n")
            holder, writer = holder.strip(), writer.strip()
            waited = time.monotonic() - started
            if waited >= wait and (_alive(holder) or waited >= ORPHAN_WAIT):
                os.close(fd)
                if _alive(holder):
                    who = f" (pid {holder})" if holder.isdigit() else ""
                    message = f"{path}: the ledger is in use by another mailer run{who}"
                    hint = "wait for that run to finish, or stop it with Ctrl-C"
                else:
                    who = f" (pid {writer})" if writer.isdigit() else ""
                    message = (
                        f"{path}: the ledger writer{who} of a mailer run that was killed "
                        f"has not finished after {ORPHAN_WAIT:g} s"
                    )
                    hint = "it ends once its last commit is written; try again shortly"
                raise LedgerBusy(message, hint=hint) from None
            time.sleep(0.02)
        except BaseException:
            os.close(fd)
            raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def _alive(pid: str) -> bool:
    """Whether the process ``pid`` (text from the lock file) may still be running."""
    if not pid.isdigit():
        return True  # nobody named: assume a live holder
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # e.g. another user's process
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
    if version >= SCHEMA_VERSION:
        return
    # A step may rebuild a table that others reference; the foreign keys are checked once
    # the step is done, inside its transaction (the pragma is a no-op inside one).
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        for number in range(version + 1, SCHEMA_VERSION + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[number - 1]:
                    conn.execute(statement)
                if conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
                    raise LedgerError(f"{path}: migration {number} broke a foreign key")
                conn.execute(f"PRAGMA user_version = {number}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # an interrupt may land before BEGIN or after COMMIT
                    conn.execute("ROLLBACK")
                raise
    finally:
        conn.execute("PRAGMA foreign_keys = ON")
