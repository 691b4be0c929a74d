"""What every suppression list is: its entries, and what commands ask of it.

Two lists fill it: the files beside the lists (``mailer.suppression``, the default) and the
one in a PostgreSQL ledger's database (``mailer.ledger.postgres_suppression``), which
``mailer.ledger.suppression.open_suppression`` picks between.
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from mailer.headers import address_key, normalise_email

Reason = Literal["unsubscribed", "bounced", "complaint", "manual"]
REASONS: tuple[Reason, ...] = get_args(Reason)

# How often, at most, a running send looks at the suppression list for changes (seconds).
# An unsubscribe reaches a running send within this, plus the messages already in flight.
RECHECK_EVERY = 1.0


@dataclass(frozen=True, slots=True)
class Suppressed:
    """One suppressed address: why, since when, and where it is written."""

    email: str
    reason: Reason
    date: dt.date | None = None
    line: int = 0

    def describe(self) -> str:
        when = f" on {self.date.isoformat()}" if self.date else ""
        return f"{self.reason}{when}"


def checked_items(items: Iterable[tuple[str, Reason]]) -> list[tuple[str, Reason]]:
    """Addresses normalised and reasons checked, before anything is written (``ValueError``
    names the first bad one)."""
    wanted: list[tuple[str, Reason]] = []
    for email, reason in items:
        if reason not in REASONS:
            raise ValueError(f"reason must be one of {', '.join(REASONS)}, not {reason!r}")
        wanted.append((normalise_email(email), reason))
    return wanted


class SuppressionList(ABC):
    """A suppression list held in memory (``_entries``, by address key) and kept up to date
    from where it is stored. ``path`` and ``log_path`` say where, for messages."""

    path: Path | str
    log_path: Path | str
    _entries: dict[str, Suppressed]

    # --- where it is stored -----------------------------------------------------------

    @abstractmethod
    def refresh(self, *, force: bool = False) -> bool:
        """Read what changed since the last read (at most every ``RECHECK_EVERY`` seconds
        unless ``force``); ``True`` if anything did. A failure raises ``MailerError``: a
        send must stop rather than guess."""

    @abstractmethod
    def add_each(
        self,
        items: Iterable[tuple[str, Reason]],
        *,
        date: dt.date | None = None,
        note: str = "",
        journal: bool = False,
    ) -> list[Suppressed]:
        """Suppress addresses in one write; the entries this call made (an address already
        suppressed keeps its first entry). Every address is checked before anything is
        written (``ValueError`` names the first bad one). ``journal`` asks the files for a
        journal append rather than a rewrite."""

    @abstractmethod
    def remove(
        self, email: str, *, note: str = "", only: Reason | None = None, journal: bool = False
    ) -> Suppressed | None:
        """Lift the suppression of an address; its entry, or ``None`` if it had none (or,
        with ``only``, one for another reason: then nothing changes)."""

    @abstractmethod
    def close(self) -> None: ...

    # --- questions --------------------------------------------------------------------

    def reason(self, email: str) -> str | None:
        """Why ``email`` must not be mailed now (``suppressed: unsubscribed on …``), or None;
        asked before each message of a send, so it reads what changed first."""
        self.refresh()
        entry = self.get(email)
        return None if entry is None else f"suppressed: {entry.describe()}"

    def is_suppressed(self, email: str) -> bool:
        """Whether a normalised address (as in ``Recipient.email``) must not be mailed."""
        return self.get(email) is not None

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
        """Suppress an address; ``False`` if it already was (its first entry is kept).
        ``email`` is checked and normalised (``ValueError`` if it is not an address)."""
        return len(self.add_each([(email, reason)], date=date, note=note, journal=journal)) == 1

    def add_many(
        self,
        items: Iterable[tuple[str, Reason]],
        *,
        date: dt.date | None = None,
        note: str = "",
        journal: bool = False,
    ) -> int:
        """Suppress several addresses in one write (a run's hard bounces, say); how many
        were newly suppressed."""
        return len(self.add_each(items, date=date, note=note, journal=journal))
