"""The ledger's writer process: it applies delivery state changes and group-commits them.

``Ledger`` starts it as ``python -P ledger_writer.py LEDGER`` the first time a state change
is queued, and talks to it over two pipes. It runs as a separate process, not a thread,
because a thread shares the sending process's GIL: at thousands of messages a second,
handing the GIL back and forth between the event loop and a writer thread cost more than
the SQL itself. This module imports nothing but the standard library, so that it starts in
a few milliseconds and runs from its file without the package on ``sys.path``.

The protocol is one line per batch, in each direction, in order:

- in (stdin): JSON ``[seq, now, [op, ...]]`` where an op is ``[0, campaign_id, key,
  message_id]`` (mark sending) or ``[1, campaign_id, key, state, code, reply, message_id,
  hard_bounce]`` (record an outcome); ``now`` is the UTC timestamp text for every op of the
  batch, or null for the time of the commit;
- out (stdout): ``seq commits`` once every batch up to ``seq`` is committed
  (``synchronous=FULL``) and ``commits`` transactions have been; or, when some change was
  refused or the commit failed, JSON ``{"upto": seq, "commits": n, "refused": [[seq, index,
  why], ...]}`` or ``{"upto": seq, "commits": n, "error": why}``. After an error every later
  batch gets an error too.

Each read takes every complete batch the pipe holds and commits them in one transaction:
the group commit. Batches are applied in the order they were written, so a change is never
committed after a change queued later. At end of input (the sender closed the ledger, or
died), the writer commits the complete batches it has and exits; a half-written last batch
was never acknowledged to anyone, so it is dropped. SIGINT, SIGTERM and SIGHUP are ignored:
the sender drains and closes, and its death is seen as end of input.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import select
import signal
import sqlite3
import sys
from typing import Any, Final

MARK: Final = 0
RECORD: Final = 1
READ_SIZE: Final = 1 << 20

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
# One change: (kind, campaign_id, key, now, *rest) where rest is (message_id,) for a mark and
# (state, code, reply, message_id, hard_bounce) for a record.
Change = tuple[Any, ...]


class Applier:
    """Applies group commits of changes to their delivery rows, a transaction per group."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.commits = 0

    def commit(self, batches: list[tuple[int, str, list[list[Any]]]]) -> list[tuple[int, int, str]]:
        """Apply the batches' changes in order in one transaction; return the refused ones
        as ``(seq, index, why)``. A refused change (its row already sent or failed, or not
        in the campaign) fails alone. ``sqlite3.Error`` if the transaction failed."""
        conn = self.conn
        execute = conn.execute
        refused: list[tuple[int, int, str]] = []
        execute("BEGIN IMMEDIATE")
        try:
            for seq, now, ops in batches:
                for index, (kind, cid, key, *rest) in enumerate(ops):
                    if kind == MARK:
                        cursor = execute(MARK_SQL, (rest[0], now, now, cid, key))
                    else:
                        state, code, reply, mid, hard = rest
                        values = (
                            state,
                            code,
                            reply,
                            mid,
                            hard,
                            now,
                            state,
                            now,
                            state,
                            code,
                            cid,
                            key,
                        )
                        cursor = execute(RECORD_SQL, values)
                    if cursor.rowcount != 1:
                        refused.append((seq, index, self._why(kind, cid, key)))
            execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                execute("ROLLBACK")
            raise
        self.commits += 1
        return refused

    def _why(self, kind: int, campaign_id: int, key: str) -> str:
        row = self.conn.execute(
            "SELECT state FROM deliveries WHERE campaign_id = ? AND email = ?",
            (campaign_id, key),
        ).fetchone()
        if row is None:
            return f"{key} is not in campaign #{campaign_id}"
        verb = "mark" if kind == MARK else "record"
        return f"refusing to {verb} {key} in campaign #{campaign_id}: its row is already {row[0]}"


def stamp(moment: dt.datetime | None = None) -> str:
    """``moment`` (aware; default now) as the ledger's fixed-width UTC text, so that
    timestamps compare as strings."""
    moment = dt.datetime.now(dt.UTC) if moment is None else moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(lines: list[bytes]) -> tuple[int, list[tuple[int, str, list[list[Any]]]]]:
    """The batches of complete lines and the last seq. A batch without a timestamp of its
    own gets the time of this commit."""
    batches: list[tuple[int, str, list[list[Any]]]] = []
    seq = 0
    current = None
    for line in lines:
        seq, now, ops = json.loads(line)
        if now is None:
            now = current = current or stamp()
        batches.append((seq, now, ops))
    return seq, batches


def _write_all(fd: int, data: bytes) -> bool:
    """False if the reader is gone."""
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        return False
    return True


def serve(conn: sqlite3.Connection, *, fd_in: int = 0, fd_out: int = 1) -> int:
    applier = Applier(conn)
    pending = b""
    error: str | None = None
    reader_alive = True
    eof = False
    while not eof:
        chunk = os.read(fd_in, READ_SIZE)
        eof = not chunk
        pending += chunk
        # Everything else already in the pipe joins this group commit.
        while not eof and select.select([fd_in], [], [], 0)[0]:
            chunk = os.read(fd_in, READ_SIZE)
            eof = not chunk
            pending += chunk
        complete, newline, rest = pending.rpartition(b"\n")
        if not newline:
            continue
        pending = rest
        seq, batches = parse(complete.split(b"\n"))
        refused: list[tuple[int, int, str]] = []
        if error is None:
            try:
                refused = applier.commit(batches)
            except sqlite3.Error as exc:
                error = str(exc) or type(exc).__name__
        if error is None and not refused:
            ack = f"{seq} {applier.commits}\n".encode("ascii")
        else:
            reply: dict[str, Any] = {"upto": seq, "commits": applier.commits}
            if error is not None:
                reply["error"] = error
            else:
                reply["refused"] = refused
            ack = json.dumps(reply).encode("ascii") + b"\n"
        if reader_alive:
            reader_alive = _write_all(fd_out, ack)
    return 0


def main(argv: list[str]) -> int:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    if len(argv) != 2:
        print("usage: ledger_writer.py LEDGER", file=sys.stderr)
        return 2
    conn = sqlite3.connect(argv[1], isolation_level=None, timeout=30.0)
    try:
        conn.execute("PRAGMA synchronous = FULL")
        return serve(conn)
    finally:
        conn.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
