"""The storage seam of the ledger: what a backend (SQLite, PostgreSQL) does for ``Ledger``.

``Ledger`` (api.py) keeps the rules that do not depend on where rows live: the clock, the
order of state changes and their group commits, the resume order of ``to_send``. A store
keeps the rows. Every method is one transaction of its own; ``now`` is the ledger's
timestamp text for what it writes. State changes do not go through here one by one: a
writer applies them in group commits through the store's ``Applier``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Protocol

from mailer.ledger.model import (
    Campaign,
    CampaignQuery,
    CampaignSpec,
    DeliveryRow,
    State,
    WorkerProgress,
)
from mailer.models import Recipient

MARK: Final = 0
RECORD: Final = 1

# One change as queued: [MARK, campaign_id, key, message_id] or
# [RECORD, campaign_id, key, state, code, reply, message_id, hard_bounce].
Change = list[Any]
# A group commit: batches of (seq, now, changes), applied in order in one transaction.
Batches = list[tuple[int, str, list[Change]]]
# A row handed out to send or listed: (position key, email key, address, name, fields, line).
Page = list[tuple[Any, ...]]


class Applier(Protocol):
    """Applies group commits of state changes on a connection of its own."""

    commits: int

    def commit(self, batches: Batches) -> list[tuple[int, int, str]]:
        """Apply every change in order in one durable transaction; return the refused ones
        as ``(seq, index, why)`` (a row already sent or failed, or not in the campaign).
        Raises ``LedgerError`` if the transaction failed: then nothing of it was applied."""

    def close(self) -> None: ...


class Store(Protocol):
    """Where a ledger's campaigns and delivery rows live."""

    location: str  # shown in messages: a path, or a URL without its password
    readonly: bool
    recovered: int  # rows turned from sending to unknown when it was opened

    def close(self) -> None: ...

    def applier(self) -> Applier:
        """A new applier for the writer (called on the writer's own thread)."""

    # --- campaigns ---

    def start_campaign(
        self,
        spec: CampaignSpec,
        recipients: Iterable[Recipient],
        skip: Callable[[str], str | None] | None,
        now: str,
    ) -> Campaign:
        """Return the campaign ``spec.name``, inserting it with its frozen audience in one
        transaction if it does not exist (``EmptyAudience`` when nobody could be sent to)."""

    def update_campaign(self, campaign: Campaign, changes: dict[str, str | None]) -> Campaign:
        """Set columns of the campaign row (fingerprint, subject, finished_at)."""

    def give_up(self, campaign: Campaign, refusals: int, now: str) -> list[tuple[str, bool]]: ...

    def recover(self, campaign: Campaign | None, now: str) -> int:
        """Turn rows left ``sending`` by no live sender into ``unknown``."""

    def record_forward(
        self, campaign: Campaign, sender: str, friend: str, article: str, now: str
    ) -> None: ...

    # --- reads ---

    def find_campaigns(self, query: CampaignQuery) -> list[Campaign]: ...

    def counts(self, campaign: Campaign) -> dict[State, int]: ...

    def page(self, campaign: Campaign, states: Sequence[State], after: Any, limit: int) -> Page:
        """Up to ``limit`` rows in ``states``, in list order, after the position key
        ``after`` (None: from the start)."""

    def claim(self, campaign: Campaign, states: Sequence[State], after: Any, limit: int) -> Page:
        """Like ``page``, for rows this process is about to send: a shared store leases
        them to this sender, so that no other sender hands them out meanwhile."""

    def rows(
        self,
        campaign: Campaign,
        states: Sequence[State],
        limit: int | None,
        *,
        hard_only: bool = False,
    ) -> list[DeliveryRow]:
        """Rows in ``states``: the ``limit`` updated last, newest first; or with
        ``limit=None`` all of them in list order."""

    def sent_by(self, campaign_ids: Sequence[int], key: str) -> int | None:
        """The first of ``campaign_ids`` whose row for ``key`` is sent, sending or unknown."""

    def forward_count_since(self, sender: str, since: str) -> int: ...

    def forward_exists(self, friend: str, article: str) -> bool: ...

    def workers(self, campaign: Campaign) -> list[WorkerProgress]:
        """The senders that have handled rows of ``campaign`` (none for a one-sender store)."""


def why_refused(kind: int, campaign_id: int, key: str, state: str | None) -> str:
    """Why a change to the row ``key`` (now in ``state``, None if there is none) was refused."""
    if state is None:
        return f"{key} is not in campaign #{campaign_id}"
    verb = "mark" if kind == MARK else "record"
    return f"refusing to {verb} {key} in campaign #{campaign_id}: its row is already {state}"
