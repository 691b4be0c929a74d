"""What the ledger holds, as values: row states, campaigns, delivery rows, timestamps."""

from __future__ import annotations

import datetime as dt
import enum
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from mailer.models import Recipient, Status

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

FROM_STATUS: Final = {
    Status.SENT: State.SENT,
    Status.DEFERRED: State.DEFERRED,
    Status.FAILED: State.FAILED,
    Status.UNKNOWN: State.UNKNOWN,
    Status.SKIPPED: State.SKIPPED,
    Status.UNSENT: State.PENDING,
}

RECOVERED_REPLY: Final = "interrupted: no reply was recorded"


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
class CampaignSpec:
    """What a new campaign is, as its starter gives it (everything but the audience)."""

    name: str
    kind: str
    list_path: str = ""
    subject: str = ""
    issue_date: dt.date | None = None
    cutoff: dt.datetime | None = None
    fingerprint: str = ""
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CampaignQuery:
    """Which campaigns to find: every filter given must hold; newest first."""

    name: str | None = None
    kind: str | None = None
    list_path: str | None = None
    fingerprint: str | None = None
    unfinished: bool = False
    exclude: int | None = None  # a campaign id to leave out
    limit: int | None = None

    def sql(self, param: Callable[[str], str]) -> tuple[str, dict[str, Any]]:
        """The SELECT and its parameters; ``param(name)`` spells a named placeholder."""
        values: dict[str, Any] = {"name": self.name, "kind": self.kind, "list_path": self.list_path}
        values |= {"fingerprint": self.fingerprint, "exclude": self.exclude}
        where = [f"{c} = {param(c)}" for c, v in values.items() if v is not None and c != "exclude"]
        if self.unfinished:
            where.append("finished_at IS NULL")
        if self.exclude is not None:
            where.append(f"id <> {param('exclude')}")
        sql = (
            f"SELECT {CAMPAIGN_COLUMNS} FROM campaigns "
            + (f"WHERE {' AND '.join(where)} " if where else "")
            + "ORDER BY created_at DESC, id DESC"
            + (f" LIMIT {int(self.limit)}" if self.limit is not None else "")
        )
        return sql, values


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


@dataclass(frozen=True, slots=True)
class WorkerProgress:
    """One sender of a shared ledger, as seen in one campaign: its rows per state."""

    worker: str  # host:pid:tag
    alive: bool
    counts: dict[State, int]


# The columns the two row types are read from, in the order of their fields.
CAMPAIGN_COLUMNS: Final = (
    "id, name, kind, list_path, subject, frozen_count, created_at, finished_at, "
    "issue_date, cutoff, fingerprint, fields"
)
ROW_COLUMNS: Final = (
    "address, name, state, position, attempts, message_id, last_code, last_reply, "
    "hard_bounce, updated_at, sending_at, sent_at"
)


def stamp(moment: dt.datetime | None = None) -> str:
    """``moment`` (aware; default now) as the ledger's fixed-width UTC text, so that
    timestamps compare as strings."""
    moment = dt.datetime.now(dt.UTC) if moment is None else moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_stamp(text: str | None) -> dt.datetime | None:
    return None if text is None else dt.datetime.fromisoformat(text)


def key(email: str) -> str:
    """The row key of an address: addresses are matched case-insensitively."""
    return email.strip().lower()


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def campaign_from_row(row: Sequence[Any]) -> Campaign:
    created = parse_stamp(row[6])
    assert created is not None
    return Campaign(
        id=row[0],
        name=row[1],
        kind=row[2],
        list_path=row[3],
        subject=row[4],
        frozen_count=row[5],
        created_at=created,
        finished_at=parse_stamp(row[7]),
        issue_date=dt.date.fromisoformat(row[8]) if row[8] else None,
        cutoff=parse_stamp(row[9]),
        fingerprint=row[10],
        fields=tuple(json.loads(row[11])),
    )


def delivery_from_row(row: Sequence[Any]) -> DeliveryRow:
    updated = parse_stamp(row[9])
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
        sending_at=parse_stamp(row[10]),
        sent_at=parse_stamp(row[11]),
    )


_fields_json: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def audience(
    recipients: Iterable[Recipient], skip: Callable[[str], str | None] | None
) -> Iterator[tuple[Any, ...]]:
    """The rows of a new campaign's audience: (key, address, name, fields, line, position,
    state, reason), streamed; a recipient ``skip`` gives a reason for is frozen skipped."""
    for position, r in enumerate(recipients, 1):
        reason = skip(r.email) if skip is not None else None
        yield (
            key(r.email),
            r.email,
            r.name,
            _fields_json(dict(r.fields)) if r.fields else "{}",
            r.line,
            position,
            State.SKIPPED.value if reason else State.PENDING.value,
            reason,
        )
