"""The suppression list in a PostgreSQL ledger's database (see ``mailer.ledger.suppression``).

``suppressions`` holds the list; ``suppression_log`` every change, numbered in commit order
(each writer holds ``SUPPRESSION_LOCK`` until it commits). A process reads the list once,
then only the changes numbered after the last it read. A connection the server dropped (a
restart, a failover, an idle timeout) is made again once per call; every change is
idempotent, and the changes missed meanwhile are read from the log.

A local ``lists/suppressed.csv`` whose entries the database does not account for (it never
had them, or its last word on them is older) is never ignored: those addresses count as
suppressed in this process, and a send refuses to start until they are moved in.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import psycopg

from mailer.errors import ConfigError, LedgerError
from mailer.headers import address_key
from mailer.ledger import postgres_schema as schema
from mailer.ledger.postgres_url import location_of, redact
from mailer.suppression import Suppression
from mailer.suppression_list import (
    RECHECK_EVERY,
    Reason,
    Suppressed,
    SuppressionList,
    checked_items,
)

Conn = psycopg.Connection[tuple[Any, ...]]
MIGRATE_HINT = "run `mailer ledger migrate-suppressions` to move them in"
CONNECT_TIMEOUT = 10  # seconds
_T = TypeVar("_T")


class SharedSuppression(SuppressionList):
    """The suppression list in a PostgreSQL ledger's database (see the module's notes).
    Safe to use from several threads (``mailer serve`` writes from a worker thread)."""

    def __init__(
        self, url: str, conn: Conn, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.url = url
        self.location = location_of(url)
        self.path = f"{self.location} (table suppressions)"
        self.log_path = f"{self.location} (table suppression_log)"
        self._conn = conn
        self._lock = threading.RLock()
        self._entries: dict[str, Suppressed] = {}
        self._local: dict[str, Suppressed] = {}  # in the local file, not yet in the database
        self._seq = 0  # the last change read
        self._clock = clock
        self._checked = clock()
        # A command holds its list to the end: the connection closes with the object.
        self._closer = weakref.finalize(self, conn.close)

    @classmethod
    def open(
        cls, url: str, *, local: Path | None = None, refuse: bool = False
    ) -> SharedSuppression:
        """Connect, migrate, read the list. With ``local`` (``lists/suppressed.csv``), the
        entries of that file the database does not account for count as suppressed here
        (``not_moved_in``), and ``refuse`` makes them a ``ConfigError`` (for a send)."""
        shared = cls(url, _connect(url, location_of(url)))
        try:
            shared._work("read", lambda conn: schema.migrate(conn, shared.location))
            shared._reload()
            if local is not None and (local.exists() or local.with_suffix(".journal").exists()):
                left = shared.not_accounted_for(Suppression.load(local))
                shared._local = {address_key(e.email): e for e in left}
                if refuse and left:
                    raise ConfigError(
                        f"{local}: {len(left)} suppressed address(es) (first {left[0].email}) "
                        f"are not in the shared suppression list of {shared.location}, so a "
                        "send could mail them",
                        hint=MIGRATE_HINT,
                    )
        except BaseException:
            shared.close()
            raise
        return shared

    @property
    def not_moved_in(self) -> list[Suppressed]:
        return list(self._local.values())

    def close(self) -> None:
        with self._lock:
            self._closer()

    # --- the connection ---------------------------------------------------------------

    def _work(self, doing: str, job: Callable[[Conn], _T]) -> _T:
        """``job`` on the connection, under the lock; once more on a new connection if the
        server dropped this one. Any failure is one ``LedgerError`` naming the database."""
        with self._lock:
            for attempt in (1, 2):
                try:
                    return job(self._conn)
                except psycopg.Error as exc:
                    if attempt == 1 and (self._conn.broken or self._conn.closed):
                        self._closer()
                        self._conn = _connect(self.url, self.location)
                        self._closer = weakref.finalize(self, self._conn.close)
                        continue
                    why = redact(str(exc), self.url)
                    raise LedgerError(
                        f"{self.location}: cannot {doing} the suppression list ({why})"
                    ) from exc
        raise AssertionError("unreachable")

    # --- reading ----------------------------------------------------------------------

    def _reload(self) -> None:
        def read(conn: Conn) -> tuple[int, list[tuple[Any, ...]]]:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                row = conn.execute("SELECT coalesce(max(seq), 0) FROM suppression_log")
                seq = int((row.fetchone() or (0,))[0])
                return seq, conn.execute("SELECT email, reason, day FROM suppressions").fetchall()

        with self._lock:
            seq, rows = self._work("read", read)
            self._entries = {address_key(e): Suppressed(e, r, d) for e, r, d in rows}
            self._seq = seq

    def _catch_up(self) -> bool:
        """Apply the changes committed since the last read; whether there were any."""
        with self._lock:
            rows = self._work(
                "read",
                lambda conn: conn.execute(
                    "SELECT seq, action, email, reason, day FROM suppression_log "
                    "WHERE seq > %s ORDER BY seq",
                    (self._seq,),
                ).fetchall(),
            )
            for seq, action, email, reason, day in rows:
                if action == "suppress":
                    self._entries[address_key(email)] = Suppressed(email, reason, day)
                else:
                    self._entries.pop(address_key(email), None)
                self._seq = seq
            return bool(rows)

    def refresh(self, *, force: bool = False) -> bool:
        now = self._clock()
        if not force and now - self._checked < RECHECK_EVERY:
            return False
        self._checked = now
        return self._catch_up()

    def get(self, email: str) -> Suppressed | None:
        key = address_key(email)
        return self._entries.get(key) or self._local.get(key)

    # --- changes ----------------------------------------------------------------------

    def add_each(
        self,
        items: Iterable[tuple[str, Reason]],
        *,
        date: dt.date | None = None,
        note: str = "",
        journal: bool = False,
    ) -> list[Suppressed]:
        """Suppress addresses in one transaction; the entries this call made (an address
        already suppressed keeps its first entry). ``journal`` is the files' concern."""
        day = date or dt.date.today()
        return self.insert([Suppressed(a, r, day) for a, r in checked_items(items)], note=note)

    def insert(self, entries: Iterable[Suppressed], *, note: str) -> list[Suppressed]:
        """Add entries as they are (dates included), in one transaction: those it added."""
        wanted: dict[str, Suppressed] = {}
        for entry in entries:
            wanted.setdefault(address_key(entry.email), entry)
        if not wanted:
            return []
        keys = list(wanted)

        def write(conn: Conn) -> list[Suppressed]:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (schema.SUPPRESSION_LOCK,))
                added = conn.execute(
                    "INSERT INTO suppressions (key, email, reason, day) "
                    "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::date[]) "
                    "ON CONFLICT (key) DO NOTHING RETURNING key",
                    (
                        keys,
                        [e.email for e in wanted.values()],
                        [e.reason for e in wanted.values()],
                        [e.date for e in wanted.values()],
                    ),
                ).fetchall()
                made = [wanted[k] for (k,) in added]
                conn.execute(
                    "INSERT INTO suppression_log (action, key, email, reason, day, note) "
                    "SELECT 'suppress', * , %s FROM unnest(%s::text[], %s::text[], "
                    "%s::text[], %s::date[])",
                    (
                        _clean(note),
                        [address_key(e.email) for e in made],
                        [e.email for e in made],
                        [e.reason for e in made],
                        [e.date for e in made],
                    ),
                )
                return made

        made = self._work("write", write)
        for key in keys:  # the database has each now (this entry or an earlier one)
            self._local.pop(key, None)
        self._catch_up()
        return made

    def remove(
        self, email: str, *, note: str = "", only: Reason | None = None, journal: bool = False
    ) -> Suppressed | None:
        """Lift an address's suppression (only one for ``only``, if given): its entry."""
        (address, _), *_ = checked_items([(email, "manual")])
        key = address_key(address)

        def write(conn: Conn) -> Suppressed | None:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (schema.SUPPRESSION_LOCK,))
                row = conn.execute(
                    "SELECT email, reason, day FROM suppressions WHERE key = %s FOR UPDATE",
                    (key,),
                ).fetchone()
                if row is None or (only is not None and row[1] != only):
                    return None
                entry = Suppressed(row[0], row[1], row[2])
                conn.execute("DELETE FROM suppressions WHERE key = %s", (key,))
                conn.execute(
                    "INSERT INTO suppression_log (action, key, email, reason, day, note) "
                    "VALUES ('resubscribe', %s, %s, %s, %s, %s)",
                    (key, entry.email, entry.reason, entry.date, _clean(note)),
                )
                return entry

        entry = self._work("write", write)
        if entry is None and only is None and key in self._local:
            entry = self._local.pop(key)  # only this process counted it: nothing to write
        self._catch_up()
        return entry

    # --- the files it replaces --------------------------------------------------------

    def not_accounted_for(self, entries: Iterable[Suppressed]) -> list[Suppressed]:
        """Of ``entries`` (a local list's), those the database does not account for: not
        suppressed there, and its changes neither record a suppression of that address as
        recent as the entry nor a resubscribe made after the entry's day. (An entry of the
        same day as a resubscribe counts: better suppressed than mailed.)"""
        missing = {address_key(e.email): e for e in entries if address_key(e.email)}
        missing = {k: e for k, e in missing.items() if k not in self._entries}
        if not missing:
            return []
        rows = self._work(
            "read",
            lambda conn: conn.execute(
                "SELECT key, max(day) FILTER (WHERE action = 'suppress'), "
                "max(at) FILTER (WHERE action = 'resubscribe') "
                "FROM suppression_log WHERE key = ANY(%s) GROUP BY key",
                (list(missing),),
            ).fetchall(),
        )
        for key, suppressed_on, resubscribed_at in rows:
            local = missing[key].date
            if local is None:  # undated: the database has heard of it, and spoke since
                missing.pop(key)
            elif suppressed_on is not None and suppressed_on >= local:
                missing.pop(key)  # this suppression, or a later one, is in the log
            elif resubscribed_at is not None and resubscribed_at.date() > local:
                missing.pop(key)  # the reader came back after it
        return list(missing.values())


def move_in(shared: SharedSuppression, local: Path) -> tuple[int, int]:
    """Copy the local list (``lists/suppressed.csv`` and its journal) into the shared one,
    keeping each entry's reason and date: ``(added, left)``. Left are the addresses the
    shared list accounts for (a later resubscribe there is not undone by an old file). The file is
    left as it is; nothing reads it while the list is shared."""
    entries = list(Suppression.load(local))
    added = shared.insert(shared.not_accounted_for(entries), note=f"moved in from {local}")
    return len(added), len(entries) - len(added)


def _clean(note: str) -> str:
    return " ".join(note.split())[:500]


def _connect(url: str, location: str) -> Conn:
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.Error as exc:
        why = redact(str(exc), url)
        raise LedgerError(f"{location}: cannot open the suppression list ({why})") from exc
