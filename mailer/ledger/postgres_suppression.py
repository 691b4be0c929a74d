"""The suppression list in a PostgreSQL ledger's database (see ``mailer.ledger.suppression``).

``suppressions`` holds the list; ``suppression_log`` every change, numbered in commit order
(each writer holds ``SUPPRESSION_LOCK`` until it commits). A process reads the list once,
then only the changes numbered after the last it read.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import psycopg

from mailer.errors import ConfigError, LedgerError
from mailer.headers import address_key
from mailer.ledger import postgres_schema as schema
from mailer.ledger.postgres import location_of
from mailer.suppression import RECHECK_EVERY, Reason, Suppressed, Suppression, checked_items

Conn = psycopg.Connection[tuple[Any, ...]]
MIGRATE_HINT = "run `mailer ledger migrate-suppressions` to move them in"


class SharedSuppression:
    """The suppression list in a PostgreSQL ledger's database (see the module's notes).
    Safe to use from several threads (``mailer serve`` writes from a worker thread)."""

    def __init__(
        self, url: str, conn: Conn, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.location = location_of(url)
        self.path = f"{self.location} (table suppressions)"
        self.log_path = f"{self.location} (table suppression_log)"
        self._conn = conn
        self._lock = threading.RLock()
        self._entries: dict[str, Suppressed] = {}
        self._seq = 0  # the last change read
        self._clock = clock
        self._checked = clock()
        # A command holds its list to the end: the connection closes with the object.
        self._closer = weakref.finalize(self, conn.close)

    @classmethod
    def open(cls, url: str, *, local: Path | None = None) -> SharedSuppression:
        """Connect, migrate, read the list; with ``local`` (``lists/suppressed.csv``), refuse
        if that file holds addresses the database never had (``ConfigError``)."""
        location = location_of(url)
        try:
            conn: Conn = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise LedgerError(f"{location}: cannot open the suppression list ({exc})") from exc
        shared = cls(url, conn)
        try:
            with shared._guard("read"):
                schema.migrate(conn, location)
            shared._reload()
            if local is not None:
                shared._check_moved_in(local)
        except BaseException:
            conn.close()
            raise
        return shared

    def close(self) -> None:
        with self._lock:
            self._closer()

    # --- reading ----------------------------------------------------------------------

    def _guard(self, doing: str) -> _Guard:
        return _Guard(self.location, doing)

    def _reload(self) -> None:
        with self._lock, self._guard("read"), self._conn.transaction():
            self._conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            row = self._conn.execute("SELECT coalesce(max(seq), 0) FROM suppression_log")
            seq = int((row.fetchone() or (0,))[0])
            rows = self._conn.execute("SELECT email, reason, day FROM suppressions").fetchall()
            self._entries = {address_key(e): Suppressed(e, r, d) for e, r, d in rows}
            self._seq = seq

    def _catch_up(self) -> bool:
        """Apply the changes committed since the last read; whether there were any."""
        with self._lock, self._guard("read"):
            rows = self._conn.execute(
                "SELECT seq, action, email, reason, day FROM suppression_log "
                "WHERE seq > %s ORDER BY seq",
                (self._seq,),
            ).fetchall()
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

    def reason(self, email: str) -> str | None:
        self.refresh()
        entry = self._entries.get(address_key(email))
        return None if entry is None else f"suppressed: {entry.describe()}"

    def is_suppressed(self, email: str) -> bool:
        return address_key(email) in self._entries

    def get(self, email: str) -> Suppressed | None:
        return self._entries.get(address_key(email))

    def __contains__(self, email: object) -> bool:
        return isinstance(email, str) and self.is_suppressed(email)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Suppressed]:
        return iter(list(self._entries.values()))

    # --- changes ----------------------------------------------------------------------

    def add(
        self,
        email: str,
        reason: Reason,
        *,
        date: dt.date | None = None,
        note: str = "",
        journal: bool = False,
    ) -> bool:
        return bool(self.add_each([(email, reason)], date=date, note=note))

    def add_many(
        self,
        items: Iterable[tuple[str, Reason]],
        *,
        date: dt.date | None = None,
        note: str = "",
        journal: bool = False,
    ) -> int:
        return len(self.add_each(items, date=date, note=note))

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
        with self._lock, self._guard("write"), self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (schema.SUPPRESSION_LOCK,))
            added = self._conn.execute(
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
            self._conn.execute(
                "INSERT INTO suppression_log (action, key, email, reason, day, note) "
                "SELECT 'suppress', * , %s FROM unnest(%s::text[], %s::text[], %s::text[], "
                "%s::date[])",
                (
                    _clean(note),
                    [address_key(e.email) for e in made],
                    [e.email for e in made],
                    [e.reason for e in made],
                    [e.date for e in made],
                ),
            )
        self._catch_up()
        return made

    def remove(
        self, email: str, *, note: str = "", only: Reason | None = None, journal: bool = False
    ) -> Suppressed | None:
        """Lift an address's suppression (only one for ``only``, if given): its entry."""
        (address, _), *_ = checked_items([(email, "manual")])
        with self._lock, self._guard("write"), self._conn.transaction():
            self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (schema.SUPPRESSION_LOCK,))
            row = self._conn.execute(
                "SELECT email, reason, day FROM suppressions WHERE key = %s FOR UPDATE",
                (address_key(address),),
            ).fetchone()
            if row is None or (only is not None and row[1] != only):
                entry = None
            else:
                entry = Suppressed(row[0], row[1], row[2])
                self._conn.execute(
                    "DELETE FROM suppressions WHERE key = %s", (address_key(address),)
                )
                self._conn.execute(
                    "INSERT INTO suppression_log (action, key, email, reason, day, note) "
                    "VALUES ('resubscribe', %s, %s, %s, %s, %s)",
                    (address_key(address), entry.email, entry.reason, entry.date, _clean(note)),
                )
        self._catch_up()
        return entry

    # --- the files it replaces --------------------------------------------------------

    def never_had(self, entries: Iterable[Suppressed]) -> list[Suppressed]:
        """Of ``entries``, those this list has not and never had (no change names them)."""
        missing = {address_key(e.email): e for e in entries if not self.is_suppressed(e.email)}
        if not missing:
            return []
        with self._lock, self._guard("read"):
            known = self._conn.execute(
                "SELECT DISTINCT key FROM suppression_log WHERE key = ANY(%s)", (list(missing),)
            ).fetchall()
        for (seen,) in known:
            missing.pop(seen, None)
        return list(missing.values())

    def _check_moved_in(self, local: Path) -> None:
        if not local.exists() and not local.with_suffix(".journal").exists():
            return
        left = self.never_had(Suppression.load(local))
        if left:
            raise ConfigError(
                f"{local}: {len(left)} suppressed address(es) (first {left[0].email}) are not "
                f"in the shared suppression list of {self.location}, so a send could mail them",
                hint=MIGRATE_HINT,
            )


def move_in(shared: SharedSuppression, local: Path) -> tuple[int, int]:
    """Copy the local list (``lists/suppressed.csv`` and its journal) into the shared one,
    keeping each entry's reason and date: ``(added, left)``. Left are the addresses the
    shared list has, or had (a resubscribe there is not undone by an old file). The file is
    left as it is; nothing reads it while the list is shared."""
    entries = list(Suppression.load(local))
    added = shared.insert(shared.never_had(entries), note=f"moved in from {local}")
    return len(added), len(entries) - len(added)


def _clean(note: str) -> str:
    return " ".join(note.split())[:500]


class _Guard:
    """A database failure as one ``LedgerError`` line naming the database."""

    def __init__(self, location: str, doing: str) -> None:
        self.location = location
        self.doing = doing

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, psycopg.Error):
            raise LedgerError(
                f"{self.location}: cannot {self.doing} the suppression list ({exc})"
            ) from exc
