"""The embedded ledger: one SQLite file in WAL mode, ``synchronous=FULL``, one sender at a time.

A campaign's rows are one contiguous range of ids, in list order, so that a send in that
order dirties few pages per commit, and reads scan that range rather than an index.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from mailer.errors import EmptyAudience, LedgerError
from mailer.ledger import lock, schema
from mailer.ledger.model import (
    CAMPAIGN_COLUMNS,
    RECOVERED_REPLY,
    ROW_COLUMNS,
    Campaign,
    CampaignQuery,
    CampaignSpec,
    DeliveryRow,
    State,
    WorkerProgress,
    audience,
    campaign_from_row,
    delivery_from_row,
    key,
    stamp,
)
from mailer.ledger.sqlite_apply import SQLiteApplier
from mailer.ledger.store import Page
from mailer.models import Recipient

_T = TypeVar("_T")

RECOVER_SQL: Final = (
    "UPDATE deliveries SET state = 'unknown', last_code = NULL, "
    f"last_reply = '{RECOVERED_REPLY}', updated_at = ? WHERE state = 'sending'"
)


class SQLiteStore:
    """The rows of one SQLite ledger file (see ``mailer.ledger.store.Store``).

    Opened for writing, it holds the exclusive lock ``<path>.lock``: one sending process per
    ledger, so that rows left ``sending`` can only belong to a process that died. Readers
    (``readonly``, e.g. ``mailer status`` during a send) take no lock.
    """

    def __init__(
        self,
        path: Path,
        reader: sqlite3.Connection,
        conn: sqlite3.Connection | None,
        held: lock.WriterLock | None,
        recovered: int,
    ) -> None:
        self.path = path
        self.location = str(path)
        self._reader = reader
        self._read_lock = threading.Lock()
        self._conn = conn  # campaign jobs write here; state changes go to the writer
        self._lock = held
        self.readonly = conn is None
        self.recovered = recovered

    @classmethod
    def open(cls, path: Path, *, wait: float, now: str) -> SQLiteStore:
        """Open (creating if needed) the ledger at ``path`` for writing: migrate, recover.

        Creates a missing directory 0700 and the files 0600. Rows left ``sending`` become
        ``unknown``.
        """
        try:
            if not path.parent.is_dir():
                path.parent.mkdir(parents=True, mode=0o700)
            held = lock.take(path, wait)
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
            schema.check_identity(conn, path)
            schema.migrate(conn, path)
            conn.execute("BEGIN IMMEDIATE")
            recovered = conn.execute(RECOVER_SQL, (now,)).rowcount
            conn.execute("COMMIT")
            reader = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            reader.execute("PRAGMA query_only = ON")
        except BaseException as exc:
            for each in (reader, conn):
                if each is not None:
                    each.close()
            held.release()
            if isinstance(exc, sqlite3.Error | OSError):
                raise LedgerError(f"{path}: cannot open the ledger ({exc})") from exc
            raise
        return cls(path, reader, conn, held, recovered)

    @classmethod
    def open_readonly(cls, path: Path) -> SQLiteStore:
        """Open an existing ledger for reading only: no lock, no migration, no recovery."""
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
            schema.check_identity(reader, path)
            version = reader.execute("PRAGMA user_version").fetchone()[0]
            if version != schema.SCHEMA_VERSION:
                raise LedgerError(
                    f"{path}: the ledger has schema version {version}, this mailer reads "
                    f"{schema.SCHEMA_VERSION}",
                    hint="open it once for writing (any send) to migrate it",
                )
        except BaseException as exc:
            reader.close()
            if isinstance(exc, sqlite3.Error):
                raise LedgerError(f"{path}: cannot read the ledger ({exc})") from exc
            raise
        return cls(path, reader, None, None, 0)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        with self._read_lock:
            self._reader.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def applier(self) -> SQLiteApplier:
        return SQLiteApplier(self.path)

    @property
    def lock_fd(self) -> int | None:
        """The writer lock's descriptor, for the writer child to hold it too."""
        return self._lock.fd if self._lock is not None else None

    # --- campaigns (each in a transaction of its own) ---

    def _job(self, function: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self._conn
        if conn is None:
            raise LedgerError(f"{self.path}: the ledger is open read-only")
        try:
            conn.execute("BEGIN IMMEDIATE")
            result = function(conn)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise LedgerError(f"{self.path}: cannot write the ledger ({exc})") from exc
            raise
        return result

    def start_campaign(
        self,
        spec: CampaignSpec,
        recipients: Iterable[Recipient],
        skip: Callable[[str], str | None] | None,
        now: str,
    ) -> Campaign:
        def insert(conn: sqlite3.Connection) -> tuple[Any, ...]:
            existing = conn.execute(
                f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE name = ?", (spec.name,)
            ).fetchone()
            if existing is not None:
                if existing[2] != spec.kind:
                    raise LedgerError(
                        f"campaign {spec.name!r} already exists as a {existing[2]} campaign"
                    )
                return tuple(existing)
            campaign_id = conn.execute(
                "INSERT INTO campaigns (name, kind, list_path, subject, created_at, issue_date, "
                "cutoff, fingerprint, fields) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    spec.name,
                    spec.kind,
                    spec.list_path,
                    spec.subject,
                    now,
                    spec.issue_date.isoformat() if spec.issue_date else None,
                    stamp(spec.cutoff) if spec.cutoff else None,
                    spec.fingerprint,
                    json.dumps(list(spec.fields)),
                ),
            ).lastrowid
            before = conn.total_changes
            (first,) = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM deliveries").fetchone()
            conn.executemany(
                "INSERT OR IGNORE INTO deliveries (campaign_id, email, address, name, fields, "
                "line, position, state, last_reply, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                ((campaign_id, *row, now, now) for row in audience(recipients, skip)),
            )
            count = conn.total_changes - before
            last = first + count - 1
            (sendable,) = conn.execute(
                "SELECT count(*) FROM deliveries WHERE id BETWEEN ? AND ? AND state = 'pending'",
                (first, last),
            ).fetchone()
            if sendable == 0:
                raise EmptyAudience(f"campaign {spec.name!r} has nobody to send to", hint=None)
            if spec.fingerprint:
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
                    {"fp": spec.fingerprint, "cid": campaign_id, "first": first, "last": last},
                )
            conn.execute(
                "UPDATE campaigns SET frozen_count = ?, first_row = ?, last_row = ? WHERE id = ?",
                (count, first, last, campaign_id),
            )
            return tuple(
                conn.execute(
                    f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ?", (campaign_id,)
                ).fetchone()
            )

        return campaign_from_row(self._job(insert))

    def update_campaign(self, campaign: Campaign, changes: dict[str, str | None]) -> Campaign:
        def update(conn: sqlite3.Connection) -> tuple[Any, ...]:
            assignments = ", ".join(f"{column} = :{column}" for column in changes)
            conn.execute(
                f"UPDATE campaigns SET {assignments} WHERE id = :id", {**changes, "id": campaign.id}
            )
            return tuple(
                conn.execute(
                    f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = ?", (campaign.id,)
                ).fetchone()
            )

        return campaign_from_row(self._job(update))

    def give_up(self, campaign: Campaign, refusals: int, now: str) -> list[tuple[str, bool]]:
        def update(conn: sqlite3.Connection) -> list[tuple[str, bool]]:
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

    def recover(self, campaign: Campaign | None, now: str) -> int:
        sql = RECOVER_SQL + (" AND campaign_id = ?" if campaign is not None else "")
        params = (now,) if campaign is None else (now, campaign.id)
        return int(self._job(lambda conn: conn.execute(sql, params).rowcount))

    def record_forward(
        self, campaign: Campaign, sender: str, friend: str, article: str, now: str
    ) -> None:
        self._job(
            lambda conn: conn.execute(
                "INSERT INTO forwards (sender, friend, article, campaign_id, email, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (key(sender), key(friend), article, campaign.id, key(friend), now),
            )
        )

    # --- reads (committed rows only) ---

    def _read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        try:
            with self._read_lock:
                return self._reader.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: cannot read the ledger ({exc})") from exc

    def find_campaigns(self, query: CampaignQuery) -> list[Campaign]:
        sql, params = query.sql(lambda c: f":{c}")
        return [campaign_from_row(row) for row in self._read(sql, params)]

    def _rows_of(self, campaign: Campaign) -> tuple[int, int]:
        """The first and last row ids of the campaign: its rows are that contiguous range."""
        found = self._read("SELECT first_row, last_row FROM campaigns WHERE id = ?", (campaign.id,))
        if not found:
            raise LedgerError(f"{self.path}: no campaign #{campaign.id}")
        first, last = found[0]
        return int(first), int(last)

    def counts(self, campaign: Campaign) -> dict[State, int]:
        counts = dict.fromkeys(State, 0)
        sql = (
            "SELECT state, count(*) FROM deliveries NOT INDEXED "
            "WHERE id BETWEEN ? AND ? GROUP BY state"
        )
        for state, count in self._read(sql, self._rows_of(campaign)):
            counts[State(state)] = count
        return counts

    def page(self, campaign: Campaign, states: Sequence[State], after: Any, limit: int) -> Page:
        first, last = self._rows_of(campaign)
        sql = (
            "SELECT id, email, address, name, fields, line FROM deliveries NOT INDEXED "
            f"WHERE id > ? AND id <= ? AND state IN ({', '.join('?' * len(states))}) "
            "ORDER BY id LIMIT ?"
        )
        return self._read(sql, (first - 1 if after is None else after, last, *states, limit))

    claim = page  # one sender at a time: nobody else hands rows out meanwhile

    def rows(
        self,
        campaign: Campaign,
        states: Sequence[State],
        limit: int | None,
        *,
        hard_only: bool = False,
    ) -> list[DeliveryRow]:
        order = "ORDER BY id" if limit is None else "ORDER BY updated_at DESC, id DESC LIMIT ?"
        sql = (
            f"SELECT {ROW_COLUMNS} FROM deliveries NOT INDEXED WHERE id BETWEEN ? AND ? "
            f"AND state IN ({', '.join('?' * len(states))}) "
            + ("AND hard_bounce = 1 " if hard_only else "")
            + order
        )
        params = (*self._rows_of(campaign), *states, *(() if limit is None else (limit,)))
        return [delivery_from_row(row) for row in self._read(sql, params)]

    def sent_by(self, campaign_ids: Sequence[int], key: str) -> int | None:
        for campaign_id in campaign_ids:
            found = self._read(
                "SELECT 1 FROM deliveries WHERE campaign_id = ? AND email = ? "
                "AND state IN ('sent', 'sending', 'unknown')",
                (campaign_id, key),
            )
            if found:
                return campaign_id
        return None

    def forward_count_since(self, sender: str, since: str) -> int:
        sql = (
            "SELECT count(*) FROM forwards JOIN deliveries USING (campaign_id, email) "
            "WHERE forwards.sender = ? AND deliveries.state = 'sent' AND deliveries.sent_at >= ?"
        )
        return int(self._read(sql, (sender, since))[0][0])

    def forward_exists(self, friend: str, article: str) -> bool:
        sql = (
            "SELECT 1 FROM forwards JOIN deliveries USING (campaign_id, email) "
            "WHERE forwards.friend = ? AND forwards.article = ? "
            "AND deliveries.state IN ('sent', 'sending', 'unknown') LIMIT 1"
        )
        return bool(self._read(sql, (friend, article)))

    def workers(self, campaign: Campaign) -> list[WorkerProgress]:
        return []  # one sender at a time: its progress is the counts
