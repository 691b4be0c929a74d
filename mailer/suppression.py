"""The global suppression list: addresses no command may mail, whatever list they are on.

It is ``lists/suppressed.csv``, plus a journal beside it (``suppressed.journal``) for many
small changes such as one-click unsubscribes from the web: one fsync'd line per change,
appended under the file's lock, merged by every reader, and folded into the CSV whenever a
command rewrites it or the journal grows long. A torn last line (a crash mid-write) was
never acknowledged, so readers ignore it and the next writer cuts it off.
"""

from __future__ import annotations

import datetime as dt
import os
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path

from mailer.csvfile import (
    ROW_ERROR,
    append_rows,
    csv_layout,
    fsync_dir,
    locked,
    records,
    rewrite_rows,
    widen,
)
from mailer.errors import InputError
from mailer.headers import address_key, normalise_email
from mailer.subscribers import SUPPRESSION_FILENAME
from mailer.suppression_list import (
    REASONS,
    RECHECK_EVERY,
    Reason,
    Suppressed,
    SuppressionList,
    checked_items,
)

COLUMNS = ("email", "reason", "date")
LOG_SUFFIX = ".log"
JOURNAL_SUFFIX = ".journal"
# Journal lines after which a journal write folds the journal into the CSV.
COMPACT_AFTER = 10_000


def suppression_path(lists_dir: Path) -> Path:
    """``lists/suppressed.csv``: one file for every list in the folder."""
    return lists_dir / SUPPRESSION_FILENAME


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


class Suppression(SuppressionList):
    """The suppression file and its journal; ``is_suppressed`` is a dictionary look-up.

    ``add_many`` and ``remove`` change it under its lock and log each change in
    ``suppressed.log``: by default they rewrite the CSV atomically (folding the journal in);
    with ``journal=True`` they append one fsync'd line per change to the journal instead.
    ``reason``, asked before each message of a send, re-reads what changed at most every
    ``RECHECK_EVERY`` seconds, so an unsubscribe made during a send is honoured by it.
    """

    def __init__(
        self,
        path: Path,
        entries: dict[str, Suppressed] | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path: Path = path
        self.log_path: Path = path.with_suffix(LOG_SUFFIX)
        self._entries = dict(entries or {})
        self._clock = clock
        self._stamp: tuple[_FileStamp, _FileStamp] | None = None
        self._checked = clock()
        # What has been read, and how the journal differs from the CSV.
        self._csv_stamp: _FileStamp | None = None
        self._journal_ino = 0
        self._journal_pos = 0  # bytes of whole lines read
        self._journal_lines = 0
        self._journal_added: dict[str, Suppressed] = {}  # entries only the journal has
        self._csv_dropped: set[str] = set()  # CSV entries the journal removed

    @classmethod
    def load(cls, path: Path) -> Suppression:
        """Read the file (a missing file is an empty list); a bad row raises ``InputError``."""
        suppression = cls(path)
        suppression._reload()
        if _file_stamp(path) != suppression._csv_stamp:
            # A journal was being folded into a new CSV meanwhile: read both again, with
            # no writer in between (without the lock first, so a read-only folder reads).
            with locked(path):
                suppression._reload()
        return suppression

    @property
    def journal_path(self) -> Path:
        return self.path.with_suffix(JOURNAL_SUFFIX)

    def _stamps(self) -> tuple[_FileStamp, _FileStamp]:
        return (_file_stamp(self.path), _file_stamp(self.journal_path))

    def refresh(self, *, force: bool = False) -> bool:
        """Re-read what changed since it was read; ``True`` if anything did. A file broken
        meanwhile raises ``InputError`` (a send must stop rather than guess)."""
        now = self._clock()
        if not force and now - self._checked < RECHECK_EVERY:
            return False
        self._checked = now
        if self._stamps() == self._stamp:
            return False
        with locked(self.path):  # no writer is between its reads of a file being replaced
            self._catch_up()
        return True

    # --- reading ----------------------------------------------------------------------

    def _reload(self) -> None:
        """Read the CSV and the whole journal afresh."""
        stamps = self._stamps()
        self._entries = _read(self.path)
        self._csv_stamp = stamps[0]
        self._journal_ino = self._journal_pos = self._journal_lines = 0
        self._journal_added = {}
        self._csv_dropped = set()
        self._read_journal()
        self._stamp = stamps

    def _catch_up(self) -> None:
        """Under the lock: read only the journal lines appended since the last read, unless
        the CSV was rewritten or the journal replaced (then everything)."""
        stamps = self._stamps()
        csv_stamp, journal = stamps
        if (
            csv_stamp != self._csv_stamp
            or (self._journal_ino and journal[0] != self._journal_ino)
            or journal[1] < self._journal_pos
        ):
            self._reload()
            return
        if journal[1] > self._journal_pos:
            self._read_journal()
        self._stamp = stamps

    def _read_journal(self) -> None:
        path = self.journal_path
        try:
            with path.open("rb") as handle:
                self._journal_ino = os.fstat(handle.fileno()).st_ino
                handle.seek(self._journal_pos)
                data = handle.read()
        except FileNotFoundError:
            self._journal_ino = 0
            return
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
        whole = data[: data.rfind(b"\n") + 1]  # a torn last line was never acknowledged
        for raw in whole.splitlines():
            self._journal_lines += 1
            self._apply(_parse_journal_line(raw, f"{path}:{self._journal_lines}"))
        self._journal_pos += len(whole)

    def _apply(self, change: tuple[str, Suppressed]) -> None:
        op, entry = change
        key = address_key(entry.email)
        if op == "+":
            if key not in self._entries:
                self._entries[key] = entry
                self._journal_added[key] = entry
        elif key in self._entries:
            del self._entries[key]
            if self._journal_added.pop(key, None) is None:
                self._csv_dropped.add(key)

    # --- questions --------------------------------------------------------------------

    @classmethod
    def for_lists_dir(cls, lists_dir: Path) -> Suppression:
        return cls.load(suppression_path(lists_dir))

    # --- changes ----------------------------------------------------------------------

    def add_each(
        self,
        items: Iterable[tuple[str, Reason]],
        *,
        date: dt.date | None = None,
        note: str = "",
        journal: bool = False,
    ) -> list[Suppressed]:
        """``add_many``, returning the entries it made: what the files said just before,
        read under the same lock, tells which addresses this call suppressed."""
        wanted = checked_items(items)
        if not wanted:
            return []
        day = date or dt.date.today()
        with locked(self.path):
            self._sync(journal)
            fresh: dict[str, Suppressed] = {}
            for address, reason in wanted:
                key = address_key(address)
                if key not in self._entries and key not in fresh:
                    fresh[key] = Suppressed(address, reason, day)
            if not fresh:
                return []
            self._write([("+", entry) for entry in fresh.values()], journal=journal)
            self._log([("suppress", e.email, e.reason, note) for e in fresh.values()])
        return list(fresh.values())

    def remove(
        self, email: str, *, note: str = "", only: Reason | None = None, journal: bool = False
    ) -> Suppressed | None:
        """Lift the suppression of an address; returns its entry, or ``None`` if it had none
        (or, with ``only``, one for another reason: then nothing changes)."""
        key = address_key(normalise_email(email))
        with locked(self.path):
            self._sync(journal)
            entry = self._entries.get(key)
            if entry is None or (only is not None and entry.reason != only):
                return None
            self._write([("-", entry)], journal=journal)
            self._log([("resubscribe", entry.email, entry.describe(), note)])
        return entry

    def close(self) -> None:
        """Nothing to let go of: files are opened per read and write."""

    def compact(self) -> None:
        """Fold the journal into the CSV (one atomic rewrite) and delete the journal."""
        with locked(self.path):
            self._sync(journal=False)
            self._compact()

    def _sync(self, journal: bool) -> None:
        # A rewrite needs a full read to know the CSV as it is; a journal append, only news.
        if journal:
            self._catch_up()
        else:
            self._reload()

    def _write(self, changes: list[tuple[str, Suppressed]], *, journal: bool) -> None:
        """Hold the lock, after ``_sync``. Without a journal, a CSV rewrite (as the file's
        look was); with one, the changes go to the journal first, so that a crash at any
        point of the fold that follows leaves the same merged list."""
        if journal or self._journal_ino:
            self._append_journal(changes)
            if not journal or self._journal_lines >= COMPACT_AFTER:
                self._compact()
        else:
            for change in changes:
                self._apply(change)
            self._compact()

    def _append_journal(self, changes: list[tuple[str, Suppressed]]) -> None:
        """Hold the lock, after ``_catch_up``: cut off a torn last line, append, fsync."""
        path = self.journal_path
        data = b"".join(_journal_line(op, entry) for op, entry in changes)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                created = self._journal_ino == 0
                os.ftruncate(fd, self._journal_pos)
                os.lseek(fd, self._journal_pos, os.SEEK_SET)
                _write_all(fd, data)
                os.fsync(fd)
                self._journal_ino = os.fstat(fd).st_ino
            finally:
                os.close(fd)
            if created:
                fsync_dir(path.parent)
        except OSError as exc:
            raise InputError(f"{path}: cannot write ({exc.strerror})") from exc
        self._journal_pos += len(data)
        for change in changes:
            self._journal_lines += 1
            self._apply(change)
        self._stamp = self._stamps()

    def _compact(self) -> None:
        """Hold the lock: write the journal's changes into the CSV, then delete the journal.
        The CSV keeps its look: kept rows as their exact text, new rows appended."""
        layout = csv_layout(self.path)
        dropped = self._csv_dropped
        if layout is not None and dropped:
            column = layout.columns.index("email")

            def keep(cells: list[str]) -> bool:
                cell = cells[column] if column < len(cells) else ""
                try:
                    return address_key(normalise_email(cell)) not in dropped
                except ValueError:
                    return True

            rewrite_rows(self.path, keep)
        if self._journal_added:
            layout = csv_layout(self.path)
            columns = layout.columns if layout else list(COLUMNS)
            missing = [c for c in COLUMNS if c not in columns]
            columns += missing
            rows = [[_cells(e).get(c, "") for c in columns] for e in self._journal_added.values()]
            if missing and layout:
                widen(self.path, missing, rows)
            else:
                append_rows(self.path, rows, new_header=list(COLUMNS))
        if self._journal_ino:
            try:
                self.journal_path.unlink(missing_ok=True)
            except OSError as exc:
                raise InputError(f"{self.journal_path}: cannot delete ({exc.strerror})") from exc
            fsync_dir(self.path.parent)
        self._csv_stamp = _file_stamp(self.path)
        self._journal_ino = self._journal_pos = self._journal_lines = 0
        self._journal_added = {}
        self._csv_dropped = set()
        self._stamp = self._stamps()

    def _log(self, changes: list[tuple[str, str, str, str]]) -> None:
        """One line per change: time, action, address, reason, note (tab-separated)."""
        stamp = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
        text = "".join(
            "\t".join(" ".join(f.split()) for f in (stamp, *fields)) + "\n" for fields in changes
        )
        try:
            fd = os.open(self.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                _write_all(fd, text.encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise InputError(f"{self.log_path}: cannot write ({exc.strerror})") from exc


def _cells(entry: Suppressed) -> dict[str, str]:
    return {
        "email": entry.email,
        "reason": entry.reason,
        "date": entry.date.isoformat() if entry.date else "",
    }


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


# A journal line: op ("+" suppress, "-" lift), address, reason, date, and a CRC-32 of the
# rest, tab-separated. Addresses hold no tab or line break (email-validator refuses them).
def _journal_line(op: str, entry: Suppressed) -> bytes:
    cells = _cells(entry)
    text = "\t".join((op, cells["email"], cells["reason"], cells["date"])).encode("utf-8")
    return text + b"\t" + f"{zlib.crc32(text):08x}".encode("ascii") + b"\n"


def _parse_journal_line(raw: bytes, where: str) -> tuple[str, Suppressed]:
    text, _, crc = raw.rpartition(b"\t")
    if not text or crc != f"{zlib.crc32(text):08x}".encode("ascii"):
        raise InputError(f"{where}: damaged journal line (its checksum does not match)")
    try:
        op, email, reason, day = text.decode("utf-8").split("\t")
        date = dt.date.fromisoformat(day) if day else None
        if op not in ("+", "-"):
            raise ValueError(op)
        return op, Suppressed(email, _reason(reason), date)
    except ValueError:
        raise InputError(f"{where}: journal line not understood") from None


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
