"""CSV files of addresses (lists, suppressions): read rows, rewrite them locked and atomically."""

from __future__ import annotations

import contextlib
import csv
import itertools
import os
import tempfile
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from filelock import FileLock, Timeout

from mailer.errors import InputError

LOCK_TIMEOUT = 30.0  # seconds to wait for another command that is changing the same file
ROW_ERROR = "\x00error"  # key of the one value of a row that is broken as a whole


# --- reading --------------------------------------------------------------------------


def _column_name(cell: str) -> str:
    """A header cell as a column name: spaces and byte-order marks stripped, lower case."""
    return cell.strip().strip("\ufeff").strip().lower()


def _header_columns(path: Path, line: int, cells: Sequence[str]) -> list[str]:
    """The column names of a header row. A name given twice (in any case) is an error: which
    of the two columns a reader took would be a guess, and a wrong guess mails the wrong
    address. Empty names may repeat (spreadsheets add empty columns)."""
    columns = [_column_name(cell) for cell in cells]
    seen: set[str] = set()
    for column in columns:
        if column in seen and column:
            raise InputError(
                f"{path}:{line}: the header row has the column {column!r} twice; "
                "rename or remove one of them"
            )
        seen.add(column)
    return columns


def records(
    path: Path, *, header_only: bool = False
) -> Generator[tuple[int, dict[str, str]], None, None]:
    """Each data row as ``(line, {column: stripped value})``; blank lines are skipped.

    A row with more cells than the header has only the key ``ROW_ERROR``. A file that cannot
    be read or parsed, or has no 'email' column, raises ``InputError`` naming file and line.
    """
    lines = _text_lines(path)
    with contextlib.closing(lines):
        # strict: an unclosed quote is an error, not a field that swallows the rest of the file
        reader = csv.reader(lines, strict=True)
        start = 1  # first line of the current record (a quoted field may span lines)
        try:
            header: list[str] | None = None
            for row in reader:
                line, start = start, reader.line_num + 1
                if not row or all(not cell.strip() for cell in row):
                    continue
                if header is None:
                    header = _header_columns(path, line, row)
                    if "email" not in header:
                        raise InputError(f"{path}:{line}: the header row has no 'email' column")
                    if header_only:
                        yield line, {name: name for name in header}
                        return
                    continue
                if len(row) > len(header):
                    extra = row[len(header) :]
                    if any(cell.strip() for cell in extra):
                        yield line, {ROW_ERROR: "more columns than the header"}
                        continue
                values = {
                    name: (row[i].strip() if i < len(row) else "") for i, name in enumerate(header)
                }
                yield line, values
        except csv.Error as exc:
            raise _csv_error(path, start, exc) from None
        if header is None:
            raise InputError(f"{path}: list is empty (it needs a header row with 'email')")


def read_header(path: Path) -> list[str]:
    """The column names of the header row, lower-cased and stripped."""
    rows = records(path, header_only=True)
    header = next(rows)[1]
    rows.close()
    return list(header)


def _csv_error(path: Path, line: int, exc: csv.Error) -> InputError:
    detail = str(exc)
    if detail.startswith("unexpected end of data"):
        detail = "a quote opened on this line is never closed"
    return InputError(f"{path}:{line}: cannot parse CSV ({detail})")


def _text_lines(path: Path) -> Generator[str, None, None]:
    """The lines of a UTF-8 file (an optional BOM is dropped), line endings kept."""
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from exc
    with handle:
        try:
            yield from handle
        except UnicodeDecodeError:
            raise InputError(
                f"{path}:{_first_undecodable_line(path)}: not valid UTF-8 "
                "(save the list as UTF-8 CSV)"
            ) from None
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror})") from exc


def _first_undecodable_line(path: Path) -> int:
    # The decoder works in chunks, so only a second, byte-wise pass can name the line.
    with path.open("rb") as raw:
        for number, line in enumerate(raw, 1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return number
    return 1


# --- safe writes ----------------------------------------------------------------------


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the lock of one list (or the suppression file) while reading and rewriting it.

    The lock file is ``.<name>.lock`` beside it; it stays there, empty, between commands.
    """
    lock = FileLock(path.parent / f".{path.name}.lock", timeout=LOCK_TIMEOUT)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A waiter polls; often, as holders keep it for milliseconds (a web server's
        # batched unsubscribes wait on one another here).
        lock.acquire(poll_interval=0.005)
    except Timeout:
        raise InputError(
            f"{path}: another command has been changing this file for {LOCK_TIMEOUT:.0f} s; "
            "try again when it has finished"
        ) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot lock ({exc.strerror})") from exc
    try:
        yield
    finally:
        lock.release()


@contextmanager
def atomic_writer(path: Path, *, bom: bool = False) -> Iterator[TextIO]:
    """Write a whole new version of ``path``: a temporary file beside it, fsync, ``os.replace``.

    Readers see the old file or the new one, never half of one. If the body raises, the
    temporary file is removed and ``path`` is untouched. Hold ``locked(path)`` around it.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror})") from exc
    tmp = Path(tmp_name)
    try:
        with open(fd, "w", encoding="utf-8-sig" if bom else "utf-8", newline="") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise InputError(f"{path}: cannot write ({exc.strerror})") from exc
        raise
    fsync_dir(path.parent)


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def fsync_dir(folder: Path) -> None:
    """Make a folder's new or renamed entries durable (where the file system can)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the change is still made
    finally:
        os.close(fd)


@dataclass(frozen=True)
class CsvLayout:
    """How an existing CSV file is written, so a rewrite keeps its look."""

    header: list[str]  # as written (original case), empty for a new file
    bom: bool
    newline: str
    ends_with_newline: bool

    @property
    def columns(self) -> list[str]:
        return [_column_name(cell) for cell in self.header]


def csv_layout(path: Path) -> CsvLayout | None:
    """The header row, BOM and line ending of a CSV file; ``None`` if it has no header row."""
    try:
        with path.open("rb") as raw:
            head = raw.read(64 * 1024)
            raw.seek(0, os.SEEK_END)
            size = raw.tell()
            last = b""
            if size:
                raw.seek(size - 1)
                last = raw.read(1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from exc
    header: list[str] = []
    found = _records_with_text(path)
    try:
        for line, cells, _ in found:
            if any(cell.strip() for cell in cells):
                _header_columns(path, line, cells)  # refuses a column given twice
                header = cells
                break
    finally:
        found.close()
    if not header:
        return None  # empty or blank: a rewrite starts it afresh
    return CsvLayout(
        header=header,
        bom=head.startswith(b"\xef\xbb\xbf"),
        newline="\r\n" if b"\r\n" in head else "\n",
        ends_with_newline=size == 0 or last in (b"\n", b"\r"),
    )


def _records_with_text(path: Path) -> Generator[tuple[int, list[str], str], None, None]:
    """``(line, cells, text)``: each CSV record with its exact text, for faithful rewrites."""
    pending: list[str] = []

    source = _text_lines(path)

    def lines() -> Iterator[str]:
        for text in source:
            pending.append(text)
            yield text

    with contextlib.closing(source):
        reader = csv.reader(lines(), strict=True)
        start = 1
        try:
            for cells in reader:
                text = "".join(pending)
                pending.clear()
                line, start = start, reader.line_num + 1
                yield line, cells, text
        except csv.Error as exc:
            raise _csv_error(path, start, exc) from None


def _copy_text(path: Path, out: TextIO) -> None:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        while chunk := handle.read(1 << 20):
            out.write(chunk)


def append_rows(
    path: Path,
    rows: Iterable[Sequence[str]],
    *,
    new_header: Sequence[str],
) -> int:
    """Rewrite ``path`` as its exact old text plus ``rows`` (hold ``locked(path)``).

    A missing file is created with ``new_header``. Returns the number of rows appended;
    when ``rows`` is empty nothing is written at all.
    """
    iterator = iter(rows)
    first = next(iterator, None)
    if first is None:
        return 0
    layout = csv_layout(path)
    count = 0
    with atomic_writer(path, bom=layout.bom if layout else False) as out:
        writer = csv.writer(out, lineterminator=layout.newline if layout else "\n")
        if layout is None:
            writer.writerow(new_header)
        else:
            _copy_text(path, out)
            if not layout.ends_with_newline:
                out.write(layout.newline)
        for cells in itertools.chain([first], iterator):
            writer.writerow(cells)
            count += 1
    return count


def rewrite_rows(path: Path, keep: Callable[[list[str]], bool]) -> int:
    """Rewrite ``path`` without the data rows ``keep`` rejects (hold ``locked(path)``).

    ``keep`` sees the cells of each row after the header; the header and blank lines always
    stay. Kept records are copied as their exact text, so quoting, extra columns and rows we
    cannot read survive. Returns how many rows were dropped; if none, nothing is written.
    """

    def verdicts() -> Iterator[tuple[bool, str]]:
        header_seen = False
        for _, cells, text in _records_with_text(path):
            if not any(cell.strip() for cell in cells) or not header_seen:
                header_seen = header_seen or any(cell.strip() for cell in cells)
                yield True, text
            else:
                yield keep(cells), text

    dropped = sum(1 for kept, _ in verdicts() if not kept)
    if not dropped:
        return 0
    layout = csv_layout(path)
    with atomic_writer(path, bom=bool(layout and layout.bom)) as out:
        for kept, text in verdicts():
            if kept:
                out.write(text)
    return dropped


def widen(path: Path, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
    """Rewrite ``path`` with ``columns`` added to its header, then append ``rows``.

    Every existing record is rewritten padded to the new width (hold ``locked(path)``).
    """
    layout = csv_layout(path)
    assert layout is not None
    width = len(layout.header) + len(columns)
    count = 0
    with atomic_writer(path, bom=layout.bom) as out:
        writer = csv.writer(out, lineterminator=layout.newline)
        header_done = False
        for _, cells, text in _records_with_text(path):
            if not any(cell.strip() for cell in cells):
                out.write(text)
            elif not header_done:
                writer.writerow([*cells, *columns])
                header_done = True
            else:
                writer.writerow(cells + [""] * (width - len(cells)))
        for row in rows:
            writer.writerow(row)
            count += 1
    return count
