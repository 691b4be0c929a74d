"""Acting on bounce readings once: suppress hard bounces, count soft ones per address.

A hard bounce is suppressed before it is recorded, so that a crash in between repeats the
(idempotent) suppression; a soft one is recorded first, and the count is compared with
``>=``, so a suppression missed by a crash comes with the address's next soft bounce.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, Protocol

from mailer.bounces.reader import Bounce, BounceReader, Reading, clean
from mailer.errors import LedgerError

SOFT_LIMIT = 3
RECORD_FILE = "bounces.sqlite3"  # beside the ledger, unless told otherwise


class BounceStore(Protocol):
    """What a scan remembers: messages already read, and soft bounces per address."""

    def seen(self, source_id: str) -> bool: ...

    def record(self, reading: Reading) -> None: ...

    def soft_count(self, email: str) -> int:
        """How many different campaigns soft-bounced ``email`` (case-insensitive)."""
        ...


class Suppressor(Protocol):
    """The part of ``mailer.suppression.Suppression`` a scan uses."""

    def add(self, email: str, reason: Literal["bounced"], *, note: str = "") -> bool: ...


def _soft_key(bounce: Bounce) -> str:
    return f"c{bounce.campaign}" if bounce.campaign is not None else f"s{bounce.source_id}"


class MemoryStore:
    """A ``BounceStore`` that forgets at exit (tests, dry runs)."""

    def __init__(self) -> None:
        self.readings: dict[str, Reading] = {}
        self._soft: dict[str, set[str]] = {}

    def seen(self, source_id: str) -> bool:
        return source_id in self.readings

    def record(self, reading: Reading) -> None:
        self.readings[reading.source_id] = reading
        for bounce in reading.bounces:
            if bounce.kind == "soft":
                self._soft.setdefault(bounce.email.lower(), set()).add(_soft_key(bounce))

    def soft_count(self, email: str) -> int:
        return len(self._soft.get(email.lower(), ()))


_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS readings (
        source_id TEXT PRIMARY KEY,
        verdict TEXT NOT NULL,
        note TEXT NOT NULL,
        read_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS bounces (
        source_id TEXT NOT NULL REFERENCES readings (source_id),
        kind TEXT NOT NULL,
        email TEXT NOT NULL,
        address TEXT NOT NULL,
        campaign INTEGER,
        soft_key TEXT NOT NULL,
        message_id TEXT,
        status TEXT NOT NULL,
        diagnostic TEXT NOT NULL,
        matched_by TEXT NOT NULL,
        PRIMARY KEY (source_id, address)
    )""",
    "CREATE INDEX IF NOT EXISTS bounces_address ON bounces (address, kind)",
)


class SqliteStore:
    """A ``BounceStore`` in its own SQLite file (0600), beside the ledger by default
    (``RECORD_FILE``); ``bounce_counts`` reads it for ``mailer status``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            self._db = sqlite3.connect(path, isolation_level=None)
            with self._db:
                self._db.execute("BEGIN")
                for statement in _SCHEMA:
                    self._db.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            raise LedgerError(f"{path}: cannot open the bounce record ({exc})") from exc

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    def _query(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: cannot read the bounce record ({exc})") from exc

    def seen(self, source_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM readings WHERE source_id = ?", (source_id,)))

    def record(self, reading: Reading) -> None:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute(
                    "INSERT OR IGNORE INTO readings VALUES (?, ?, ?, ?)",
                    (reading.source_id, reading.verdict, reading.note, now),
                )
                self._db.executemany(
                    "INSERT OR IGNORE INTO bounces VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (b.source_id, b.kind, b.email, b.email.lower(), b.campaign, _soft_key(b),
                         b.message_id, b.status, b.diagnostic, b.matched_by)
                        for b in reading.bounces
                    ],
                )  # fmt: skip
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: cannot write the bounce record ({exc})") from exc

    def soft_count(self, email: str) -> int:
        rows = self._query(
            "SELECT count(DISTINCT soft_key) FROM bounces WHERE address = ? AND kind = 'soft'",
            (email.lower(),),
        )
        return int(str(rows[0][0]))


@dataclass(frozen=True, slots=True)
class BounceCounts:
    """How many addresses of one campaign bounce mail reported, hard and soft."""

    hard: int = 0
    soft: int = 0


def bounce_counts(path: Path) -> dict[int, BounceCounts] | None:
    """Addresses reported bouncing per campaign (by VERP tag or Message-ID), from the record
    a scan keeps, opened read-only; None when no scan has written ``path`` yet."""
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            rows = db.execute(
                "SELECT campaign, kind, count(DISTINCT address) FROM bounces "
                "WHERE campaign IS NOT NULL GROUP BY campaign, kind"
            ).fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise LedgerError(f"{path}: cannot read the bounce record ({exc})") from exc
    out: dict[int, BounceCounts] = {}
    for campaign, kind, count in rows:
        known = out.get(int(campaign), BounceCounts())
        if kind == "hard":
            out[int(campaign)] = BounceCounts(int(count), known.soft)
        elif kind == "soft":
            out[int(campaign)] = BounceCounts(known.hard, int(count))
    return out


@dataclass
class Summary:
    """What one scan did; ``line`` for people, ``as_dict`` for ``--json``."""

    messages: int = 0
    already_seen: int = 0
    hard: int = 0
    soft: int = 0
    auto_replies: int = 0
    unmatched: int = 0
    other: int = 0
    suppressed: list[str] = field(default_factory=list)
    bounces: list[Bounce] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.messages} messages read ({self.already_seen} seen before): "
            f"{self.hard} hard bounces, {self.soft} soft, {self.auto_replies} auto-replies "
            f"ignored, {self.unmatched} unmatched, {self.other} other; "
            f"{len(self.suppressed)} addresses suppressed"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "messages": self.messages,
            "already_seen": self.already_seen,
            "hard": self.hard,
            "soft": self.soft,
            "auto_replies": self.auto_replies,
            "unmatched": self.unmatched,
            "other": self.other,
            "suppressed": list(self.suppressed),
            "bounces": [
                {
                    "kind": b.kind,
                    "email": b.email,
                    "campaign": b.campaign,
                    "message_id": b.message_id,
                    "status": b.status,
                    "diagnostic": b.diagnostic,
                    "matched_by": b.matched_by,
                    "source_id": b.source_id,
                }
                for b in self.bounces
            ],
        }


def scan(
    messages: Iterable[bytes],
    reader: BounceReader,
    store: BounceStore,
    suppression: Suppressor,
    *,
    soft_limit: int = SOFT_LIMIT,
) -> Summary:
    """Read every message, act on those not seen before, and say what was done."""
    summary = Summary()

    def suppress(bounce: Bounce, why: str) -> None:
        note = f"{why}; campaign {bounce.campaign}; {bounce.status} {bounce.diagnostic}"
        try:
            added = suppression.add(bounce.email, "bounced", note=clean(note, 200))
        except ValueError:  # not an address we could have mailed: nothing to suppress
            return
        if added:
            summary.suppressed.append(bounce.email)

    for raw in messages:
        summary.messages += 1
        reading = reader.read(raw)
        if store.seen(reading.source_id):
            summary.already_seen += 1
            continue
        if reading.verdict == "auto-reply":
            summary.auto_replies += 1
        elif reading.verdict == "unmatched":
            summary.unmatched += 1
        elif reading.verdict == "other":
            summary.other += 1
        for bounce in reading.bounces:
            summary.bounces.append(bounce)
            if bounce.kind == "hard":
                summary.hard += 1
                suppress(bounce, "hard bounce")
            else:
                summary.soft += 1
        store.record(reading)
        for bounce in reading.bounces:
            if bounce.kind == "soft" and store.soft_count(bounce.email) >= soft_limit:
                suppress(bounce, f"soft bounces from {soft_limit} campaigns")
    return summary
