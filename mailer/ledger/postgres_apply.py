"""The statements that move rows of the PostgreSQL ledger: claims, marks, outcomes (applied a
group commit at a time), recovery."""

from __future__ import annotations

from typing import Any, Final

import psycopg

from mailer.errors import LedgerError
from mailer.ledger.model import RECOVERED_REPLY
from mailer.ledger.postgres_url import redact
from mailer.ledger.store import MARK, Batches, why_refused

# Whether the worker of the row ``d`` is alive: it renewed its expiry and has not stopped.
LIVE: Final = (
    "EXISTS (SELECT 1 FROM workers w WHERE w.id = d.worker AND w.expires_at > now() "
    "AND w.stopped_at IS NULL)"
)
# Whether the row ``d`` is free to take: nobody holds it, or its worker is gone. A claim is
# held as long as its worker renews its own lease (see postgres.py).
FREE: Final = f"(d.worker IS NULL OR d.lease_until IS NULL AND d.state = 'pending' OR NOT {LIVE})"
# A worker marks a row it holds, or one nobody live holds (a sender may mark a row it did
# not claim, as a forward does); never a row another worker left sending. If its worker
# died and another took the row over, the mark is refused and the message does not go out.
MARK_SQL: Final = (
    "UPDATE deliveries d SET state = 'sending', message_id = %s, attempts = attempts + 1, "
    "sending_at = %s, updated_at = %s, worker = %s, lease_until = NULL WHERE campaign_id = %s "
    "AND email = %s AND (state IN ('pending', 'deferred', 'unknown') OR state = 'sending' "
    f"AND worker = %s) AND (worker = %s OR {FREE})"
)
RECORD_SQL: Final = (
    "UPDATE deliveries SET state = %s, last_code = %s, last_reply = %s, "
    "message_id = coalesce(%s, message_id), hard_bounce = %s, updated_at = %s, "
    "sent_at = CASE WHEN %s = 'sent' THEN %s ELSE sent_at END, "
    "refusals = refusals + (%s = 'deferred' AND coalesce(%s, 0) >= 500)::int, "
    "lease_until = NULL WHERE campaign_id = %s AND email = %s AND state <> 'sent'"
)

# Rows left 'sending' by a worker that is gone (or by none) become 'unknown'. Rows another
# sender is recovering are skipped, not waited for: no two recoveries deadlock.
RECOVER_SQL: Final = (
    "UPDATE deliveries SET state = 'unknown', last_code = NULL, "
    f"last_reply = '{RECOVERED_REPLY}', updated_at = %(now)s WHERE id IN ("
    "  SELECT id FROM deliveries d WHERE state = 'sending' AND campaign_id = "
    "  coalesce(%(cid)s, campaign_id) AND (worker IS NULL OR worker = %(me)s OR NOT "
    f"  {LIVE}) FOR UPDATE SKIP LOCKED)"
)
CLAIM_SQL: Final = (
    "UPDATE deliveries SET worker = %(me)s, "
    "lease_until = now() + make_interval(secs => %(lease)s) WHERE id IN ("
    "  SELECT id FROM deliveries d WHERE campaign_id = %(cid)s AND state = ANY(%(states)s)"
    f"  AND id > %(after)s AND (worker = %(me)s OR {FREE})"
    "  ORDER BY id LIMIT %(n)s FOR UPDATE SKIP LOCKED) "
    "RETURNING id, email, address, name, fields, line"
)


class PostgresApplier:
    """Applies group commits to the delivery rows on a connection of its own, one
    transaction per group, committed durably (the server's ``synchronous_commit``)."""

    def __init__(self, url: str, worker: str) -> None:
        self.commits = 0
        self.worker = worker
        try:
            self.conn: psycopg.Connection[tuple[Any, ...]] = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise LedgerError(redact(str(exc), url)) from exc
        self.url = url

    def close(self) -> None:
        self.conn.close()

    def commit(self, batches: Batches) -> list[tuple[int, int, str]]:
        conn = self.conn
        refused: list[tuple[int, int, str]] = []
        try:
            cursors = []
            # BEGIN, every change and COMMIT in one round trip; the commit is durable
            # (synchronous_commit) when the pipeline's sync returns.
            with conn.pipeline(), conn.transaction():
                for seq, now, ops in batches:
                    for index, (kind, cid, key, *rest) in enumerate(ops):
                        if kind == MARK:
                            me = self.worker
                            values: tuple[Any, ...] = (rest[0], now, now, me, cid, key, me, me)
                            cursor = conn.execute(MARK_SQL, values)
                        else:
                            state, code, reply, mid, hard = rest
                            values = (state, code, reply, mid, hard, now, state, now, state)
                            cursor = conn.execute(RECORD_SQL, (*values, code, cid, key))
                        cursors.append((seq, index, kind, cid, key, cursor))
            for seq, index, kind, cid, key, cursor in cursors:
                if cursor.rowcount != 1:
                    refused.append((seq, index, self._why(kind, cid, key)))
        except psycopg.Error as exc:
            raise LedgerError(redact(str(exc), self.url) or type(exc).__name__) from exc
        self.commits += 1
        return refused

    def _why(self, kind: int, campaign_id: int, key: str) -> str:
        row = self.conn.execute(
            "SELECT state, worker FROM deliveries WHERE campaign_id = %s AND email = %s",
            (campaign_id, key),
        ).fetchone()
        if row is not None and kind == MARK and row[1] != self.worker and row[0] != "sent":
            return f"refusing to mark {key} in campaign #{campaign_id}: another sender holds it"
        return why_refused(kind, campaign_id, key, None if row is None else row[0])
