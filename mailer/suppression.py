"""The global suppression list: addresses no command may mail, whatever list they are on."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from mailer.csvfile import ROW_ERROR, append_rows, csv_layout, locked, records, rewrite_rows, widen
from mailer.errors import InputError
from mailer.headers import address_key, normalise_email
from mailer.subscribers import SUPPRESSION_FILENAME

Reason = Literal["unsubscribed", "bounced", "complaint", "manual"]
REASONS: tuple[Reason, ...] = get_args(Reason)
COLUMNS = ("email", "reason", "date")
LOG_SUFFIX = ".log"


def suppression_path(lists_dir: Path) -> Path:
    """``lists/suppressed.csv``: one file for every list in the folder."""
    return lists_dir / SUPPRESSION_FILENAME


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


# How often, at most, a running send looks at the suppression file for changes (seconds).
# An unsubscribe reaches a running send within this, plus the messages already in flight.
RECHECK_EVERY = 1.0

_FileStamp = tuple[int, int, int, int]


def _file_stamp(path: Path) -> _FileStamp:
    """What changes when the file is rewritten (a new inode) or appended to; zeros if absent."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return (0, 0, 0, 0)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Suppression:
    """The suppression file; ``is_suppressed`` is a dictionary look-up.

    ``add`` and ``remove`` re-read the file under its lock, rewrite it atomically, and log
    the change in ``suppressed.log``. ``reason``, asked before each message of a send,
    re-reads a changed file at most every ``RECHECK_EVERY`` seconds, so an unsubscribe made
    during a send is honoured by it.
    """

    def __init__(
        self,
        path: Path,
        entries: dict[str, Suppressed] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._entries: dict[str, Suppressed] = dict(entries or {})
        self._clock = clock
        self._stamp: _FileStamp | None = None
        self._checked = clock()

    @classmethod
    def load(cls, path: Path) -> Suppression:
        """Read the file (a missing file is an empty list); a bad row raises ``InputError``."""
        stamp = _file_stamp(path)
        suppression = cls(path, _read(path))
        suppression._stamp = stamp
        return suppression

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read the file if it changed since it was read; ``True`` if it did. A file
        broken meanwhile raises ``InputError`` (a send must stop rather than guess)."""
        now = self._clock()
        if not force and now - self._checked < RECHECK_EVERY:
            return False
        self._checked = now
        if _file_stamp(self.path) == self._stamp:
            return False
        with locked(self.path):  # no writer is between its reads of a file being replaced
            stamp = _file_stamp(self.path)
            self._entries = _read(self.path)
        self._stamp = stamp
        return True

    def reason(self, email: str) -> str | None:
        """Why ``email`` must not be mailed now (``suppressed: unsubscribed on …``), or None."""
        self.refresh()
        entry = self._entries.get(address_key(email))
        return None if entry is None else f"suppressed: {entry.describe()}"

    @classmethod
    def for_lists_dir(cls, lists_dir: Path) -> Suppression:
        return cls.load(suppression_path(lists_dir))

    @property
    def log_path(self) -> Path:
        return self.path.with_suffix(LOG_SUFFIX)

    def is_suppressed(self, email: str) -> bool:
        """Whether a normalised address (as in ``Recipient.email``) must not be mailed."""
        return address_key(email) in self._entries

    def get(self, email: str) -> Suppressed | None:
        return self._entries.get(address_key(email))

    def __contains__(self, email: object) -> bool:
        return isinstance(email, str) and self.is_suppressed(email)

    def __len__(self) -> int:
        return len(self._entries)

    def add(
        self,
        email: str,
        reason: Reason,
        *,
        date: dt.date | None = None,
        note: str = "",
    ) -> bool:
        """Suppress an address; ``False`` if it already was (its first entry is kept).

        ``email`` is checked and normalised (``ValueError`` if it is not an address).
        """
        return self.add_many([(email, reason)], date=date, note=note) == 1

    def add_many(
        self,
        items: Iterable[tuple[str, Reason]],
        *,
        date: dt.date | None = None,
        note: str = "",
    ) -> int:
        """Suppress several addresses in one locked rewrite (for example a run's hard bounces).

        Returns how many were newly suppressed. Every address is checked before anything is
        written (``ValueError`` names the first bad one).
        """
        wanted: list[tuple[str, Reason]] = []
        for email, reason in items:
            if reason not in REASONS:
                raise ValueError(f"reason must be one of {', '.join(REASONS)}, not {reason!r}")
            wanted.append((normalise_email(email), reason))
        if not wanted:
            return 0
        day = date or dt.date.today()
        with locked(self.path):
            self._entries = _read(self.path)
            fresh: dict[str, Suppressed] = {}
            for address, reason in wanted:
                key = address_key(address)
                if key not in self._entries and key not in fresh:
                    fresh[key] = Suppressed(address, reason, day)
            if not fresh:
                return 0
            layout = csv_layout(self.path)
            columns = layout.columns if layout else list(COLUMNS)
            missing = [c for c in COLUMNS if c not in columns]
            columns += missing
            rows = [
                [
                    {"email": e.email, "reason": e.reason, "date": day.isoformat()}.get(c, "")
                    for c in columns
                ]
                for e in fresh.values()
            ]
            if missing and layout:
                widen(self.path, missing, rows)
            else:
                append_rows(self.path, rows, new_header=list(COLUMNS))
            self._entries.update(fresh)
            self._stamp = None  # changed by us: the next refresh re-reads it
            for entry in fresh.values():
                self._log("suppress", entry.email, entry.reason, note)
        return len(fresh)

    def remove(self, email: str, *, note: str = "") -> Suppressed | None:
        """Lift the suppression of an address; returns its entry, or ``None`` if it had none."""
        key = address_key(normalise_email(email))
        with locked(self.path):
            self._entries = _read(self.path)
            entry = self._entries.get(key)
            if entry is None:
                return None
            layout = csv_layout(self.path)
            assert layout is not None
            column = layout.columns.index("email")

            def keep(cells: list[str]) -> bool:
                cell = cells[column] if column < len(cells) else ""
                try:
                    return address_key(normalise_email(cell)) != key
                except ValueError:
                    return True

            rewrite_rows(self.path, keep)
            del self._entries[key]
            self._stamp = None
            self._log("resubscribe", entry.email, entry.describe(), note)
        return entry

    def _log(self, action: str, email: str, detail: str, note: str) -> None:
        """One line per change: time, action, address, reason, note (tab-separated)."""
        stamp = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        fields = [stamp, action, email, detail, note]
        line = "\t".join(" ".join(f.split()) for f in fields) + "\n"
        try:
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                os.write(fd, line.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise InputError(f"{self.log_path}: cannot write ({exc.strerror})") from exc


def _read(path: Path) -> dict[str, Suppressed]:
    if csv_layout(path) is None:  # missing, empty or blank
        return {}
    entries: dict[str, Suppressed] = {}
    for line, values in records(path):
        where = f"{path}:{line}"
        if ROW_ERROR in values:
            raise InputError(f"{where}: {values[ROW_ERROR]}")
        try:
            email = normalise_email(values.get("email", ""))
        except ValueError as exc:
            raise InputError(f"{where}: {exc}") from None
        reason = values.get("reason", "").lower() or "manual"
        if reason not in REASONS:
            raise InputError(f"{where}: reason {reason!r} is not one of {', '.join(REASONS)}")
        raw_date = values.get("date", "")
        try:
            day = dt.date.fromisoformat(raw_date[:10]) if raw_date else None
        except ValueError:
            raise InputError(f"{where}: date {raw_date!r} is not YYYY-MM-DD") from None
        entries.setdefault(address_key(email), Suppressed(email, _reason(reason), day, line))
    return entries


def _reason(value: str) -> Reason:
    for reason in REASONS:
        if value == reason:
            return reason
    raise ValueError(value)
