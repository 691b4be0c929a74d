"""Subscriber lists as CSV files: stream, validate, de-duplicate, and change them safely."""

from __future__ import annotations

import contextlib
import csv
import itertools
import os
import re
import tempfile
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from email_validator.rfc_constants import (
    CASE_INSENSITIVE_MAILBOX_NAMES,
    DOMAIN_MAX_LENGTH,
    DOT_ATOM_TEXT,
    EMAIL_MAX_LENGTH,
)
from filelock import FileLock, Timeout

from mailer.errors import HeaderError, InputError
from mailer.messages import check_header_value
from mailer.models import Recipient
from mailer.tokens import MAX_LIST_NAME_OCTETS

MAX_NAME_CHARS = 256
SUPPRESSION_FILENAME = "suppressed.csv"  # lives in the lists folder but is not a list
LOCK_TIMEOUT = 30.0  # seconds to wait for another command that is changing the same file
ROW_ERROR = "\x00error"  # key of the one value of a row that is broken as a whole
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
# A list name is a file name inside the lists folder and is signed into unsubscribe tokens:
# no path separators, no leading dot (hidden and lock files) or hyphen (an option).
MAX_LIST_NAME = MAX_LIST_NAME_OCTETS
_LIST_NAME_RE = re.compile(rf"[A-Za-z0-9_][A-Za-z0-9._-]{{0,{MAX_LIST_NAME - 1}}}")
LIST_NAME_RULE = (
    f"a list name is 1 to {MAX_LIST_NAME} letters, digits, '.', '_' and '-', not starting "
    "with '.' or '-'"
)


@dataclass(frozen=True, slots=True)
class RowProblem:
    """An invalid row, named by file and line."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


# --- names and paths ------------------------------------------------------------------


def is_list_name(value: str) -> bool:
    """A plain list name: ``lists/<name>.csv``, never a path."""
    return _LIST_NAME_RE.fullmatch(value) is not None


def resolve_list(value: str, lists_dir: Path) -> Path:
    """A list that exists: a plain name (``lists/<name>.csv``), or the path of a ``.csv``
    file given explicitly."""
    path = _list_path(value, lists_dir)
    if not path.is_file():
        raise InputError(f"{path}: list not found")
    return path


def list_path_for_writing(value: str, lists_dir: Path) -> Path:
    """Where ``lists add``/``import`` write: an existing list, or a new ``lists/<name>.csv``.

    Only a plain name creates a list, so nothing is ever written outside the lists folder
    but a ``.csv`` file that exists and was named explicitly.
    """
    path = _list_path(value, lists_dir)
    if path.exists() and not path.is_file():
        raise InputError(f"{path}: not a file")
    if value.lower().endswith(".csv") and not path.is_file():
        raise InputError(
            f"{path}: list not found (only a plain list name creates a new list, "
            f"as {lists_dir}/<name>.csv)"
        )
    return path


def _list_path(value: str, lists_dir: Path) -> Path:
    """A plain name, or a path ending in ``.csv``; anything else is refused."""
    if value.lower().endswith(".csv"):
        path = Path(value)
        # Its file name is the list's name, signed into unsubscribe tokens.
        if _CONTROL_RE.search(value) or len(path.stem.encode()) > MAX_LIST_NAME:
            raise InputError(
                f"list file {value[:80]!r}: the file name of a list (its name, without .csv) "
                f"may have at most {MAX_LIST_NAME} bytes and no control characters"
            )
    elif is_list_name(value):
        path = lists_dir / f"{value}.csv"
    else:
        raise InputError(f"list name {value[:80]!r}: {LIST_NAME_RULE}, or the path of a .csv file")
    if is_suppression_file(path, lists_dir):
        raise InputError(
            f"{path}: this is the suppression list, not a subscriber list "
            "(see `mailer unsubscribe` and `mailer resubscribe`)"
        )
    return path


def is_suppression_file(path: Path, lists_dir: Path) -> bool:
    return path.name == SUPPRESSION_FILENAME and (path.resolve().parent == lists_dir.resolve())


def list_files(lists_dir: Path) -> list[Path]:
    """Every list in the lists folder, by name; the suppression file is not a list."""
    if not lists_dir.is_dir():
        return []
    return sorted(
        path
        for path in lists_dir.glob("*.csv")
        if path.is_file() and path.name != SUPPRESSION_FILENAME
    )


def list_name(path: Path) -> str:
    return path.stem


# --- addresses ------------------------------------------------------------------------

# The fast path accepts only what email-validator accepts, and returns what it returns:
# - a plain ASCII dot-atom local part (email-validator's own regex; it returns such a part
#   unchanged), except the RFC 2142 names that it lower-cases;
# - a domain that is either one it already accepted in this process (its verdict on a domain
#   does not depend on the local part), or a plain letters-digits-hyphens name that passes
#   the same checks it makes: labels of 1-63 characters that neither start nor end with a
#   hyphen, no "xx--" label (Punycode and reserved), at least one dot, a top-level domain
#   ending in a letter, not a special-use name; it normalises such a name to lower case;
# - the same 254-octet limit on the whole address, counted on every form of the domain.
# Anything else goes to email-validator itself.
_LABEL = r"(?!..--)[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
_LAST_LABEL = r"(?!..--)(?:[a-zA-Z0-9][a-zA-Z0-9-]{0,61})?[a-zA-Z]"
_LDH_DOMAIN_RE = re.compile(rf"(?:{_LABEL}\.)+{_LAST_LABEL}")
_SPECIAL_USE = tuple(SPECIAL_USE_DOMAIN_NAMES)
_DOMAIN_CACHE_SIZE = 10_000  # only domains the rules above cannot judge (Punycode)
# raw ASCII domain -> (normalised domain, longest of its raw/normalised/IDNA forms in octets)
_good_domains: dict[str, tuple[str, int]] = {}


def _known_domain(domain: str) -> tuple[str, int] | None:
    known = _good_domains.get(domain)
    if known is None and len(domain) <= DOMAIN_MAX_LENGTH and _LDH_DOMAIN_RE.fullmatch(domain):
        lower = domain.lower()
        if not any(lower == name or lower.endswith("." + name) for name in _SPECIAL_USE):
            known = (lower, len(domain))
    return known


def normalise_email(value: str) -> str:
    """Syntax-check an address (no DNS) and return its normalised form.

    Gives exactly email-validator's verdict and normalised form, but common addresses take
    a fast path (see above) that costs a regex match instead of a full validation.
    """
    address = value.strip()
    local, at, domain = address.partition("@")
    plain = bool(at) and DOT_ATOM_TEXT.match(local) is not None
    if plain and local.lower() not in CASE_INSENSITIVE_MAILBOX_NAMES:
        known = _known_domain(domain)
        if known is not None and len(local) + 1 + known[1] <= EMAIL_MAX_LENGTH:
            return f"{local}@{known[0]}"
    if not address:
        raise ValueError("empty e-mail address")
    if _CONTROL_RE.search(address):
        raise ValueError("e-mail address contains a control character")
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"invalid e-mail address {address!r}: {exc}") from None
    if (
        plain
        and domain.isascii()
        and result.local_part == local
        and len(_good_domains) < _DOMAIN_CACHE_SIZE
    ):
        forms = (domain, result.domain, result.ascii_domain)
        _good_domains[domain] = (result.domain, max(len(f.encode()) for f in forms))
    return str(result.normalized)


def address_key(email: str) -> str:
    """The case-insensitive identity of a normalised address (duplicates, suppression)."""
    return email.lower()


# --- reading --------------------------------------------------------------------------


def column_name(cell: str) -> str:
    """A header cell as a column name: spaces and byte-order marks stripped, lower case."""
    return cell.strip().strip("\ufeff").strip().lower()


def header_columns(path: Path, line: int, cells: Sequence[str]) -> list[str]:
    """The column names of a header row. A name given twice (in any case) is an error: which
    of the two columns a reader took would be a guess, and a wrong guess mails the wrong
    address. Empty names may repeat (spreadsheets add empty columns)."""
    columns = [column_name(cell) for cell in cells]
    seen: set[str] = set()
    for column in columns:
        if column in seen and column:
            raise InputError(
                f"{path}:{line}: the header row has the column {column!r} twice; "
                "rename or remove one of them"
            )
        seen.add(column)
    return columns


def read_header(path: Path) -> list[str]:
    """The column names of a list, lower-cased and stripped."""
    rows = _rows(path, header_only=True)
    header = next(rows)[1]
    rows.close()
    return list(header)


def _rows(
    path: Path, *, header_only: bool = False
) -> Generator[tuple[int, dict[str, str]], None, None]:
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
                    header = header_columns(path, line, row)
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


def records(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Each data row as ``(line, {column: stripped value})``; blank lines are skipped.

    A row with more cells than the header has only the key ``ROW_ERROR``. A file that cannot
    be read or parsed raises ``InputError`` naming the file and line.
    """
    return _rows(path)


def read_rows(
    path: Path,
    *,
    strict: bool = False,
    on_problem: Callable[[RowProblem], None] | None = None,
) -> Iterator[Recipient]:
    """Stream every valid row, duplicates included, in file order.

    Invalid rows go to ``on_problem``; with ``strict`` the first one raises ``InputError``.
    """
    for line, values in _rows(path):
        try:
            yield _recipient(values, line)
        except ValueError as exc:
            problem = RowProblem(path, line, str(exc))
            if strict:
                raise InputError(str(problem)) from None
            if on_problem is not None:
                on_problem(problem)


def read_list(
    path: Path,
    *,
    strict: bool = False,
    on_problem: Callable[[RowProblem], None] | None = None,
    skip: Callable[[str], bool] | None = None,
    on_skip: Callable[[Recipient], None] | None = None,
    on_duplicate: Callable[[Recipient], None] | None = None,
) -> Iterator[Recipient]:
    """Stream valid, de-duplicated recipients (first occurrence wins, case-insensitively).

    Invalid rows go to ``on_problem``; with ``strict`` the first one raises ``InputError``.
    ``skip`` (for example ``Suppression.is_suppressed``) is given the lower-cased address and
    filters it out, reported to ``on_skip``; later duplicates are reported to ``on_duplicate``.
    """
    seen: set[str] = set()
    for recipient in read_rows(path, strict=strict, on_problem=on_problem):
        key = address_key(recipient.email)
        if key in seen:
            if on_duplicate is not None:
                on_duplicate(recipient)
            continue
        seen.add(key)
        if skip is not None and skip(key):
            if on_skip is not None:
                on_skip(recipient)
            continue
        yield recipient


def _recipient(values: dict[str, str], line: int) -> Recipient:
    if ROW_ERROR in values:
        raise ValueError(values[ROW_ERROR])
    email = normalise_email(values.get("email", ""))
    raw_name = values.get("name", "")
    name = " ".join(raw_name.split())
    if _CONTROL_RE.search(raw_name.replace("\t", " ")):
        raise ValueError("name contains a line break or control character")
    try:
        check_header_value("name", name)  # also refuses encoded words hiding a newline
    except HeaderError as exc:
        raise ValueError(exc.message) from None
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"name is longer than {MAX_NAME_CHARS} characters")
    extra = {
        key: _CONTROL_RE.sub(" ", value)
        for key, value in values.items()
        if key not in ("email", "name")
    }
    return Recipient(email=email, name=name, fields=extra, line=line)


def make_recipient(email: str, name: str = "", fields: dict[str, str] | None = None) -> Recipient:
    """One subscriber given on the command line, checked like a list row (``ValueError``)."""
    values = {"email": email, "name": name, **(fields or {})}
    return _recipient(values, 0)


def template_fields(header: list[str]) -> list[str]:
    """Extra columns that templates can use as ``subscriber.<column>``."""
    return [h for h in header if h and h not in ("email", "name")]


@dataclass
class ListStats:
    """The counts of one list, as ``mailer lists`` and ``lists validate`` report them."""

    path: Path
    subscribers: int = 0  # valid and unique, suppressed ones included
    suppressed: int = 0
    duplicates: int = 0
    invalid: int = 0

    @property
    def mailable(self) -> int:
        return self.subscribers - self.suppressed


def scan_list(
    path: Path,
    *,
    on_problem: Callable[[RowProblem], None] | None = None,
    is_suppressed: Callable[[str], bool] | None = None,
) -> ListStats:
    """Read a whole list once (streamed) and count what is in it."""
    stats = ListStats(path)

    def problem(item: RowProblem) -> None:
        stats.invalid += 1
        if on_problem is not None:
            on_problem(item)

    def duplicate(_: Recipient) -> None:
        stats.duplicates += 1

    def suppressed(_: Recipient) -> None:
        stats.suppressed += 1

    for _ in read_list(
        path,
        on_problem=problem,
        skip=is_suppressed,
        on_skip=suppressed,
        on_duplicate=duplicate,
    ):
        stats.subscribers += 1
    stats.subscribers += stats.suppressed
    return stats


# --- safe writes ----------------------------------------------------------------------


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the lock of one list (or the suppression file) while reading and rewriting it.

    The lock file is ``.<name>.lock`` beside it; it stays there, empty, between commands.
    """
    lock = FileLock(path.parent / f".{path.name}.lock", timeout=LOCK_TIMEOUT)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock.acquire()
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
    _fsync_dir(path.parent)


def _mode_for(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot fsync a directory; the rename is still atomic
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
        return [column_name(cell) for cell in self.header]


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
    records = _raw_records(path)
    try:
        for line, cells, _ in records:
            if any(cell.strip() for cell in cells):
                header_columns(path, line, cells)  # refuses a column given twice
                header = cells
                break
    finally:
        records.close()
    if not header:
        return None  # empty or blank: a rewrite starts it afresh
    return CsvLayout(
        header=header,
        bom=head.startswith(b"\xef\xbb\xbf"),
        newline="\r\n" if b"\r\n" in head else "\n",
        ends_with_newline=size == 0 or last in (b"\n", b"\r"),
    )


def _raw_records(path: Path) -> Generator[tuple[int, list[str], str], None, None]:
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

    def records() -> Iterator[tuple[bool, str]]:
        header_seen = False
        for _, cells, text in _raw_records(path):
            if not any(cell.strip() for cell in cells) or not header_seen:
                header_seen = header_seen or any(cell.strip() for cell in cells)
                yield True, text
            else:
                yield keep(cells), text

    dropped = sum(1 for kept, _ in records() if not kept)
    if not dropped:
        return 0
    layout = csv_layout(path)
    with atomic_writer(path, bom=bool(layout and layout.bom)) as out:
        for kept, text in records():
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
        for _, cells, text in _raw_records(path):
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


# --- changing lists -------------------------------------------------------------------

DEFAULT_COLUMNS = ("email", "name")


@dataclass
class MergeReport:
    """What ``add`` or ``import`` did to a list."""

    path: Path
    created: bool = False
    added: int = 0
    duplicates: int = 0
    invalid: int = 0
    columns_added: tuple[str, ...] = ()


def _existing_keys(path: Path) -> dict[str, int]:
    """Address key -> line of every valid row of an existing list."""
    keys: dict[str, int] = {}
    for recipient in read_rows(path):
        keys.setdefault(address_key(recipient.email), recipient.line)
    return keys


def merge_subscribers(
    path: Path,
    incoming: Iterable[Recipient],
    *,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    on_added: Callable[[Recipient], None] | None = None,
    on_duplicate: Callable[[Recipient, int], None] | None = None,
) -> MergeReport:
    """Add the recipients not yet on the list, under its lock, creating it if needed.

    Duplicates (case-insensitive, against the list and earlier incoming rows) are counted and
    reported to ``on_duplicate`` with the line of the row they repeat (0: an earlier
    incoming row). ``columns`` are the incoming columns; missing ones are added to the list.
    The list is written once, atomically; if ``incoming`` raises, the list is untouched.
    """
    report = MergeReport(path)
    wanted = [c for c in dict.fromkeys([*DEFAULT_COLUMNS, *columns]) if c]
    with locked(path):
        layout = csv_layout(path)
        report.created = layout is None
        existing = _existing_keys(path) if layout is not None else {}
        current = layout.columns if layout is not None else []
        new_columns = [c for c in wanted if c not in current]
        if layout is not None:
            report.columns_added = tuple(new_columns)
        final = [*current, *new_columns]

        def fresh() -> Iterator[list[str]]:
            for recipient in incoming:
                key = address_key(recipient.email)
                if key in existing:
                    report.duplicates += 1
                    if on_duplicate is not None:
                        on_duplicate(recipient, existing[key])
                    continue
                existing[key] = 0
                report.added += 1
                if on_added is not None:
                    on_added(recipient)
                yield _cells(recipient, final)

        rows = fresh()
        first = next(rows, None)
        if first is None:  # nothing to add: leave the file (or its absence) alone
            report.created = False
            report.columns_added = ()
        elif layout is None or not new_columns:
            append_rows(path, itertools.chain([first], rows), new_header=final)
        else:
            widen(path, new_columns, itertools.chain([first], rows))
    return report


def _cells(recipient: Recipient, columns: Sequence[str]) -> list[str]:
    cells = []
    for column in columns:
        if column == "email":
            cells.append(recipient.email)
        elif column == "name":
            cells.append(recipient.name)
        else:
            cells.append(recipient.fields.get(column, ""))
    return cells


def add_subscriber(path: Path, recipient: Recipient) -> MergeReport:
    """Add one subscriber to a list (created if needed); a duplicate changes nothing."""
    return merge_subscribers(path, [recipient], columns=[*DEFAULT_COLUMNS, *recipient.fields])


def import_subscribers(
    path: Path,
    source: Path,
    *,
    strict: bool = False,
    on_problem: Callable[[RowProblem], None] | None = None,
    on_added: Callable[[Recipient], None] | None = None,
) -> MergeReport:
    """Merge the valid rows of ``source`` into the list at ``path``, creating it if needed.

    Invalid rows are counted and go to ``on_problem``; with ``strict`` the first one raises
    ``InputError`` and nothing is written. A ``source`` that cannot be read changes nothing.
    """
    invalid = 0

    def problem(item: RowProblem) -> None:
        nonlocal invalid
        invalid += 1
        if on_problem is not None:
            on_problem(item)

    columns = read_header(source)
    report = merge_subscribers(
        path,
        read_rows(source, strict=strict, on_problem=problem),
        columns=columns,
        on_added=on_added,
    )
    report.invalid = invalid
    return report


def remove_subscriber(path: Path, email: str) -> int:
    """Remove every row of ``email`` (case-insensitive) from a list; returns how many."""
    key = address_key(normalise_email(email))
    with locked(path):
        layout = csv_layout(path)
        if layout is None:
            raise InputError(f"{path}: list is empty or missing")
        try:
            column = layout.columns.index("email")
        except ValueError:
            raise InputError(f"{path}: the header row has no 'email' column") from None

        def keep(cells: list[str]) -> bool:
            return _cell_key(cells[column] if column < len(cells) else "") != key

        return rewrite_rows(path, keep)


def _cell_key(value: str) -> str:
    try:
        return address_key(normalise_email(value))
    except ValueError:
        return value.strip().lower()
