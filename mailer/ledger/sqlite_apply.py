"""State changes on the SQLite ledger: the statements, applied a group commit at a time."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

from mailer.errors import LedgerError
from mailer.ledger.store import MARK, Batches, why_refused

MARK_SQL: Final = (
    "UPDATE deliveries SET state = 'sending', message_id = ?, attempts = attempts + 1, "
    "sending_at = ?, updated_at = ? WHERE campaign_id = ? AND email = ? "
    "AND state IN ('pending', 'deferred', 'unknown', 'sending')"
)
# A deferred outcome with a 5xx reply is a refusal held for judgment: it is counted, and
# the campaign gives up on the row after enough of them (Ledger.give_up).
RECORD_SQL: Final = (
    "UPDATE deliveries SET state = ?, last_code = ?, last_reply = ?, "
    "message_id = coalesce(?, message_id), hard_bounce = ?, updated_at = ?, "
    "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END, "
    "refusals = refusals + (? = 'deferred' AND coalesce(?, 0) >= 500) "
    "WHERE campaign_id = ? AND email = ? AND state <> 'sent'"
)


class SQLiteApplier:
    """Applies group commits to the delivery rows on a write connection of its own
    (``synchronous=FULL``), a transaction per group (see ``store.Applier``)."""

    def __init__(self, path: Path) -> None:
        self.commits = 0
        try:
            self.conn = sqlite3.connect(path, isolation_level=None, timeout=30.0)
            self.conn.execute("PRAGMA synchronous = FULL")
        except sqlite3.Error as exc:
            raise LedgerError(str(exc)) from exc

    def close(self) -> None:
        self.conn.close()

    def commit(self, batches: Batches) -> list[tuple[int, int, str]]:
        execute = self.conn.execute
        refused: list[tuple[int, int, str]] = []
        try:
            execute("BEGIN IMMEDIATE")
            try:
                for seq, now, ops in batches:
                    for index, (kind, cid, key, *rest) in enumerate(ops):
                        if kind == MARK:
                            cursor = execute(MARK_SQL, (rest[0], now, now, cid, key))
                        else:
                            state, code, reply, mid, hard = rest
                            values = (state, code, reply, mid, hard, now, state, now, state, code)
                            cursor = execute(RECORD_SQL, (*values, cid, key))
                        if cursor.rowcount != 1:
                            refused.append((seq, index, self._why(kind, cid, key)))
                execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise LedgerError(str(exc) or type(exc).__name__) from exc
        self.commits += 1
        return refused

    def _why(self, kind: int, campaign_id: int, key: str) -> str:
        row = self.conn.execute(
            "SELECT state FROM deliveries WHERE campaign_id = ? AND email = ?",
            (campaign_id, key),
        ).fetchone()
        return why_refused(kind, campaign_id, key, None if row is None else row[0])
