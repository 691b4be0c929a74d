"""Subscriber lists: names and paths, the reader (validate, de-duplicate), and changes."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from mailer.csvfile import (
    ROW_ERROR,
    append_rows,
    csv_layout,
    locked,
    read_header,
    records,
    rewrite_rows,
    widen,
)
from mailer.errors import HeaderError, InputError, ValueRefused
from mailer.headers import CONTROL_RE, address_key, check_header_value, normalise_email
from mailer.models import Recipient
from mailer.tokens import MAX_LIST_NAME_OCTETS

MAX_NAME_CHARS = 256
SUPPRESSION_FILENAME = "suppressed.csv"  # lives in the lists folder but is not a list
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


LIST_HINT = "name another with --list (or MAILER_DEFAULT_LIST); `mailer lists` shows them"


def resolve_list(
    value: str, lists_dir: Path, *, hint: str | None = None, must_exist: bool = True
) -> Path:
    """A list: a plain name (``lists/<name>.csv``), or the path of a ``.csv`` file given
    explicitly; it must exist unless ``must_exist`` is false (a campaign whose audience is
    frozen can be resumed without its file). ``hint`` says how to name another."""
    path = _list_path(value, lists_dir)
    if must_exist and not path.is_file():
        raise InputError(f"{path}: list not found", hint=hint)
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
        if CONTROL_RE.search(value) or len(path.stem.encode()) > MAX_LIST_NAME:
            raise InputError(
                f"list file {value[:80]!r}: the file name of a list (its name, without .csv) "
                f"may have at most {MAX_LIST_NAME} bytes and no control characters"
            )
    elif is_list_name(value):
        path = lists_dir / f"{value}.csv"
    else:
        raise InputError(f"list name {value[:80]!r}: {LIST_NAME_RULE}, or the path of a .csv file")
    if _is_suppression_file(path, lists_dir):
        raise InputError(
            f"{path}: this is the suppression list, not a subscriber list "
            "(see `mailer unsubscribe` and `mailer resubscribe`)"
        )
    return path


def _is_suppression_file(path: Path, lists_dir: Path) -> bool:
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


# --- reading --------------------------------------------------------------------------


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
    for line, values in records(path):
        try:
            recipient = _recipient(values, line)
        except ValueError as exc:
            problem = RowProblem(path, line, str(exc))
            if strict:
                raise InputError(str(problem)) from None
            if on_problem is not None:
                on_problem(problem)
            continue
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
        raise ValueRefused(values[ROW_ERROR])
    email = normalise_email(values.get("email", ""))
    raw_name = values.get("name", "")
    name = " ".join(raw_name.split())
    if CONTROL_RE.search(raw_name.replace("\t", " ")):
        raise ValueRefused("name contains a line break or control character")
    try:
        check_header_value("name", name)  # also refuses encoded words hiding a newline
    except HeaderError as exc:
        raise ValueRefused(exc.message) from None
    if len(name) > MAX_NAME_CHARS:
        raise ValueRefused(f"name is longer than {MAX_NAME_CHARS} characters")
    extra = {
        key: CONTROL_RE.sub(" ", value)
        for key, value in values.items()
        if key not in ("email", "name")
    }
    return Recipient(email=email, name=name, fields=extra, line=line)


def make_recipient(email: str, name: str = "", fields: dict[str, str] | None = None) -> Recipient:
    """One subscriber given on the command line, checked like a list row (``ValueRefused``)."""
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


def merge_subscribers(
    path: Path,
    incoming: Iterable[Recipient],
    *,
    columns: Sequence[str] = DEFAULT_COLUMNS,
    on_added: Callable[[Recipient], None] | None = None,
) -> MergeReport:
    """Add the recipients not yet on the list, under its lock, creating it if needed.

    Duplicates (case-insensitive, of the list or of earlier incoming rows) are counted.
    ``columns`` are the incoming columns; missing ones are added to the list. The list is
    written once, atomically; if ``incoming`` raises, the list is untouched.
    """
    report = MergeReport(path)
    wanted = [c for c in dict.fromkeys([*DEFAULT_COLUMNS, *columns]) if c]
    with locked(path):
        layout = csv_layout(path)
        report.created = layout is None
        existing = {address_key(r.email) for r in read_list(path)} if layout else set()
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
                    continue
                existing.add(key)
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
    invalid = duplicates = 0

    def problem(item: RowProblem) -> None:
        nonlocal invalid
        invalid += 1
        if on_problem is not None:
            on_problem(item)

    def duplicate(_: Recipient) -> None:
        nonlocal duplicates
        duplicates += 1

    columns = read_header(source)
    rows = read_list(source, strict=strict, on_problem=problem, on_duplicate=duplicate)
    report = merge_subscribers(path, rows, columns=columns, on_added=on_added)
    report.invalid = invalid
    report.duplicates += duplicates
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
