"""The shared ledger: PostgreSQL, for several senders on several machines sending one campaign.

Selected by a ledger URL ``postgresql://…`` (psycopg 3). Each opened ledger that may send is
a worker: a row in ``workers`` that it renews every few seconds from a thread of its own.

- **The audience.** The first sender to start a campaign inserts it and freezes its audience
  in one transaction; one that starts it meanwhile waits on the campaign's unique name, then
  finds it and joins. Nobody inserts twice.
- **Claiming.** ``to_send`` claims rows a batch at a time with ``UPDATE … WHERE id IN
  (SELECT … FOR UPDATE SKIP LOCKED LIMIT n) RETURNING …``, setting the row's worker and a
  lease. A row is marked ``sending`` only by the worker that holds it. A claimed row never
  marked goes back to the pool when its lease runs out (or its worker is gone).
- **The dead.** A row left ``sending`` by a worker whose renewal has lapsed becomes
  ``unknown``: it may have been delivered, so it is never sent again unless asked.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, TypeVar

import psycopg

from mailer.errors import EmptyAudience, LedgerError
from mailer.ledger import postgres_schema as schema
from mailer.ledger.model import (
    CAMPAIGN_COLUMNS,
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
from mailer.ledger.postgres_apply import CLAIM_SQL, LIVE, RECOVER_SQL, PostgresApplier
from mailer.ledger.postgres_url import location_of, redact
from mailer.ledger.store import Page
from mailer.models import Recipient

_T = TypeVar("_T")
Conn = psycopg.Connection[tuple[Any, ...]]

CLAIM_SIZE: Final = 200  # rows one claim takes: small enough that senders share the tail
LEASE: Final = 10.0  # seconds a worker, and its claims, stay alive without a renewal


class PostgresStore:
    """The rows of one PostgreSQL ledger (see ``mailer.ledger.store.Store``)."""

    def __init__(
        self, url: str, reader: Conn, conn: Conn | None, worker: str | None, lease: float
    ) -> None:
        self.url = url
        self.location = location_of(url)
        self._reader = reader
        self._read_lock = threading.Lock()
        self._conn = conn
        self.worker = worker
        self.lease = lease
        self.readonly = conn is None
        self.recovered = 0
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @classmethod
    def open(cls, url: str, *, readonly: bool, now: str, lease: float = LEASE) -> PostgresStore:
        location = location_of(url)
        conns: list[Conn] = []
        try:
            reader = psycopg.connect(url, autocommit=True)
            conns.append(reader)
            if readonly:
                found = schema.version(reader)
                if found != schema.SCHEMA_VERSION:
                    raise LedgerError(
                        f"{location}: the ledger has schema version {found}, this mailer "
                        f"reads {schema.SCHEMA_VERSION}",
                        hint="open it once for writing (any send) to migrate it",
                    )
                return cls(url, reader, None, None, lease)
            conn = psycopg.connect(url, autocommit=True)
            conns.append(conn)
            schema.migrate(conn, location)
            worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
            conn.execute(
                "INSERT INTO workers (id, host, pid, expires_at) "
                "VALUES (%s, %s, %s, now() + make_interval(secs => %s))",
                (worker, socket.gethostname(), os.getpid(), lease),
            )
            store = cls(url, reader, conn, worker, lease)
            store.recovered = store.recover(None, now)
        except BaseException as exc:
            for each in conns:
                each.close()
            if isinstance(exc, psycopg.Error):
                raise LedgerError(
                    f"{location}: cannot open the ledger ({redact(str(exc), url)})"
                ) from exc
            raise
        store._beat = threading.Thread(target=store._renew, name="mailer-ledger-lease", daemon=True)
        store._beat.start()
        return store

    def _renew(self) -> None:
        """Keep this worker and its claims alive; release claims and unknown rows of the
        dead, so that the senders still running take them over."""
        try:
            beat = psycopg.connect(self.url, autocommit=True)
        except psycopg.Error:
            return
        with beat:
            while not self._stop.wait(self.lease / 4):
                with contextlib.suppress(psycopg.Error):
                    params = {"me": self.worker, "lease": self.lease}
                    beat.execute(
                        "UPDATE workers SET expires_at = now() + make_interval(secs => "
                        "%(lease)s) WHERE id = %(me)s",
                        params,
                    )
                    now = {"now": stamp(), "cid": None, "me": None}
                    beat.execute(RECOVER_SQL, now)

    def close(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                # What this worker claimed and did not send goes back to the pool at once.
                me = {"me": self.worker}
                self._conn.execute(
                    "UPDATE deliveries SET lease_until = NULL WHERE worker = %(me)s "
                    "AND lease_until IS NOT NULL",
                    me,
                )
                self._conn.execute(
                    "UPDATE workers SET stopped_at = now(), expires_at = now() WHERE id = %(me)s",
                    me,
                )
            self._conn.close()
        with self._read_lock:
            self._reader.close()

    def applier(self) -> PostgresApplier:
        assert self.worker is not None
        return PostgresApplier(self.url, self.worker)

    # --- campaigns (each in a transaction of its own) ---

    def _job(self, function: Callable[[Conn], _T]) -> _T:
        conn = self._conn
        if conn is None:
            raise LedgerError(f"{self.location}: the ledger is open read-only")
        try:
            with conn.transaction():
                return function(conn)
        except psycopg.Error as exc:
            raise LedgerError(
                f"{self.location}: cannot write the ledger ({redact(str(exc), self.url)})"
            ) from exc

    def start_campaign(
        self,
        spec: CampaignSpec,
        recipients: Iterable[Recipient],
        skip: Callable[[str], str | None] | None,
        now: str,
    ) -> Campaign:
        def insert(conn: Conn) -> tuple[Sequence[Any], bool]:
            # A sender starting the same campaign meanwhile holds its name: this waits for
            # it, then finds its campaign and joins it.
            created = conn.execute(
                "INSERT INTO campaigns (name, kind, list_path, subject, created_at, issue_date, "
                "cutoff, fingerprint, fields) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (name) DO NOTHING RETURNING id",
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
            ).fetchone()
            if created is None:
                existing = conn.execute(
                    f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE name = %s", (spec.name,)
                ).fetchone()
                assert existing is not None
                if existing[2] != spec.kind:
                    raise LedgerError(
                        f"campaign {spec.name!r} already exists as a {existing[2]} campaign"
                    )
                return existing, False
            cid = created[0]
            with conn.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO deliveries (campaign_id, email, address, name, fields, line, "
                    "position, state, last_reply, created_at, updated_at) VALUES (%s, %s, %s, "
                    "%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (campaign_id, email) DO NOTHING",
                    ((cid, *row, now, now) for row in audience(recipients, skip)),
                )
            count, sendable = _one(
                conn,
                "SELECT count(*), count(*) FILTER (WHERE state = 'pending') FROM deliveries "
                "WHERE campaign_id = %s",
                (cid,),
            )
            if sendable == 0:
                raise EmptyAudience(f"campaign {spec.name!r} has nobody to send to", hint=None)
            if spec.fingerprint:  # nobody gets the same issue twice (see sqlite.py)
                conn.execute(
                    "UPDATE deliveries SET state = 'skipped', last_reply = "
                    "'already sent this issue by campaign ' || ("
                    "  SELECT c.name FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id"
                    "  WHERE d.email = deliveries.email AND c.fingerprint = %(fp)s"
                    "  AND c.id <> %(cid)s AND d.state IN ('sent', 'sending', 'unknown') LIMIT 1)"
                    " WHERE campaign_id = %(cid)s AND state = 'pending' AND email IN ("
                    "  SELECT d.email FROM deliveries d JOIN campaigns c ON c.id = d.campaign_id"
                    "  WHERE c.fingerprint = %(fp)s AND c.id <> %(cid)s"
                    "  AND d.state IN ('sent', 'sending', 'unknown'))",
                    {"fp": spec.fingerprint, "cid": cid},
                )
            conn.execute("UPDATE campaigns SET frozen_count = %s WHERE id = %s", (count, cid))
            sql = f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = %s"
            return _one(conn, sql, (cid,)), True

        row, created = self._job(insert)
        if created and self._conn is not None:
            # A new audience: fresh statistics, so that claims read it in index order.
            with contextlib.suppress(psycopg.Error):
                self._conn.execute("ANALYZE deliveries")
        return campaign_from_row(row)

    def update_campaign(self, campaign: Campaign, changes: dict[str, str | None]) -> Campaign:
        def update(conn: Conn) -> Sequence[Any]:
            assignments = ", ".join(f"{column} = %({column})s" for column in changes)
            conn.execute(
                f"UPDATE campaigns SET {assignments} WHERE id = %(id)s",
                {**changes, "id": campaign.id},
            )
            sql = f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns WHERE id = %s"
            return _one(conn, sql, (campaign.id,))

        return campaign_from_row(self._job(update))

    def give_up(self, campaign: Campaign, refusals: int, now: str) -> list[tuple[str, bool]]:
        def update(conn: Conn) -> list[tuple[str, bool]]:
            rows = conn.execute(
                "UPDATE deliveries SET state = 'failed', updated_at = %s WHERE campaign_id = %s "
                "AND state = 'deferred' AND last_code >= 500 AND refusals >= %s "
                "RETURNING id, address, hard_bounce",
                (now, campaign.id, refusals),
            ).fetchall()
            return [(address, bool(hard)) for _id, address, hard in sorted(rows)]

        return self._job(update)

    def recover(self, campaign: Campaign | None, now: str) -> int:
        params = {"now": now, "me": self.worker, "cid": campaign.id if campaign else None}
        return self._job(lambda conn: conn.execute(RECOVER_SQL, params).rowcount)

    def record_forward(
        self, campaign: Campaign, sender: str, friend: str, article: str, now: str
    ) -> None:
        self._job(
            lambda conn: conn.execute(
                "INSERT INTO forwards (sender, friend, article, campaign_id, email, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s)",
                (key(sender), key(friend), article, campaign.id, key(friend), now),
            )
        )

    # --- reads (committed rows only) ---

    def _read(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[Any]:
        try:
            with self._read_lock:
                return self._reader.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            raise LedgerError(
                f"{self.location}: cannot read the ledger ({redact(str(exc), self.url)})"
            ) from exc

    def find_campaigns(self, query: CampaignQuery) -> list[Campaign]:
        sql, params = query.sql(lambda c: f"%({c})s")
        return [campaign_from_row(row) for row in self._read(sql, params)]

    def counts(self, campaign: Campaign) -> dict[State, int]:
        counts = dict.fromkeys(State, 0)
        sql = "SELECT state, count(*) FROM deliveries WHERE campaign_id = %s GROUP BY state"
        for state, count in self._read(sql, (campaign.id,)):
            counts[State(state)] = count
        return counts

    def page(self, campaign: Campaign, states: Sequence[State], after: Any, limit: int) -> Page:
        sql = (
            "SELECT id, email, address, name, fields, line FROM deliveries WHERE campaign_id = %s "
            "AND state = ANY(%s) AND id > %s ORDER BY id LIMIT %s"
        )
        return self._read(sql, (campaign.id, [str(s) for s in states], after or 0, limit))

    def claim(self, campaign: Campaign, states: Sequence[State], after: Any, limit: int) -> Page:
        params = {
            "me": self.worker,
            "lease": self.lease,
            "cid": campaign.id,
            "states": [str(s) for s in states],
            "after": after or 0,
            "n": min(limit, CLAIM_SIZE),
        }
        rows = self._job(lambda conn: conn.execute(CLAIM_SQL, params).fetchall())
        return sorted(rows)

    def rows(
        self,
        campaign: Campaign,
        states: Sequence[State],
        limit: int | None,
        *,
        hard_only: bool = False,
    ) -> list[DeliveryRow]:
        sql = (
            f"SELECT {ROW_COLUMNS} FROM deliveries WHERE campaign_id = %s AND state = ANY(%s) "
            + ("AND hard_bounce = 1 " if hard_only else "")
            + ("ORDER BY id" if limit is None else "ORDER BY updated_at DESC, id DESC LIMIT %s")
        )
        params = (campaign.id, [str(s) for s in states], *(() if limit is None else (limit,)))
        return [delivery_from_row(row) for row in self._read(sql, params)]

    def sent_by(self, campaign_ids: Sequence[int], key: str) -> int | None:
        for campaign_id in campaign_ids:
            if self._read(
                "SELECT 1 FROM deliveries WHERE campaign_id = %s AND email = %s "
                "AND state IN ('sent', 'sending', 'unknown')",
                (campaign_id, key),
            ):
                return campaign_id
        return None

    def forward_count_since(self, sender: str, since: str) -> int:
        sql = (
            "SELECT count(*) FROM forwards JOIN deliveries USING (campaign_id, email) "
            "WHERE forwards.sender = %s AND deliveries.state = 'sent' "
            "AND deliveries.sent_at >= %s"
        )
        return int(self._read(sql, (sender, since))[0][0])

    def forward_exists(self, friend: str, article: str) -> bool:
        sql = (
            "SELECT 1 FROM forwards JOIN deliveries USING (campaign_id, email) "
            "WHERE forwards.friend = %s AND forwards.article = %s "
            "AND deliveries.state IN ('sent', 'sending', 'unknown') LIMIT 1"
        )
        return bool(self._read(sql, (friend, article)))

    def workers(self, campaign: Campaign) -> list[WorkerProgress]:
        sql = (
            f"SELECT d.worker, bool_or({LIVE}), d.state, count(*) FROM deliveries d "
            "WHERE d.campaign_id = %s AND d.worker IS NOT NULL "
            "GROUP BY d.worker, d.state ORDER BY d.worker"
        )
        found: dict[str, WorkerProgress] = {}
        for worker, alive, state, count in self._read(sql, (campaign.id,)):
            entry = found.setdefault(worker, WorkerProgress(worker, alive, dict.fromkeys(State, 0)))
            entry.counts[State(state)] = count
        return list(found.values())


def _one(conn: Conn, sql: str, params: Sequence[Any]) -> Sequence[Any]:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row
