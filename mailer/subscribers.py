"""Subscriber lists as CSV files: stream, validate, normalise and de-duplicate recipients."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

from email_validator import EmailNotValidError, validate_email

from mailer.errors import InputError
from mailer.models import Recipient

MAX_NAME_CHARS = 256
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


@dataclass(frozen=True, slots=True)
class RowProblem:
    """An invalid row, named by file and line."""

    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def resolve_list(value: str, lists_dir: Path) -> Path:
    """``--list`` takes a name (``lists/<name>.csv``) or a path."""
    candidate = Path(value)
    if candidate.suffix.lower() == ".csv" or "/" in value or candidate.is_file():
        path = candidate
    else:
        path = lists_dir / f"{value}.csv"
    if not path.is_file():
        raise InputError(f"{path}: list not found")
    return path


def list_name(path: Path) -> str:
    return path.stem


def normalise_email(value: str) -> str:
    """Syntax-check an address (no DNS) and return its normalised form."""
    address = value.strip()
    if not address:
        raise ValueError("empty e-mail address")
    if _CONTROL_RE.search(address):
        raise ValueError("e-mail address contains a control character")
    try:
        return validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"invalid e-mail address {address!r}: {exc}") from None


def read_header(path: Path) -> list[str]:
    """The column names of a list, lower-cased and stripped."""
    rows = _rows(path, header_only=True)
    header = next(rows)[1]
    rows.close()
    return list(header)


def _rows(
    path: Path, *, header_only: bool = False
) -> Generator[tuple[int, dict[str, str]], None, None]:
    try:
        handle = path.open(encoding="utf-8-sig", newline="")
    except OSError as exc:
        raise InputError(f"{path}: cannot open list ({exc.strerror})") from exc
    with handle:
        reader = csv.reader(handle)
        try:
            header: list[str] | None = None
            for row in reader:
                if not row or all(not cell.strip() for cell in row):
                    continue
                if header is None:
                    header = [cell.strip().lower() for cell in row]
                    if "email" not in header:
                        raise InputError(
                            f"{path}:{reader.line_num}: the header row has no 'email' column"
                        )
                    if header_only:
                        yield reader.line_num, {name: name for name in header}
                        return
                    continue
                if len(row) > len(header):
                    extra = row[len(header) :]
                    if any(cell.strip() for cell in extra):
                        yield reader.line_num, {"\x00error": "more columns than the header"}
                        continue
                values = {
                    name: (row[i].strip() if i < len(row) else "") for i, name in enumerate(header)
                }
                yield reader.line_num, values
        except UnicodeDecodeError:
            raise InputError(
                f"{path}:{reader.line_num + 1}: not valid UTF-8 (save the list as UTF-8 CSV)"
            ) from None
        except csv.Error as exc:
            raise InputError(f"{path}:{reader.line_num}: cannot parse CSV ({exc})") from None
        if header is None:
            raise InputError(f"{path}: list is empty (it needs a header row with 'email')")


def read_list(
    path: Path,
    *,
    strict: bool = False,
    on_problem: Callable[[RowProblem], None] | None = None,
    skip: Callable[[str], bool] | None = None,
    on_skip: Callable[[Recipient], None] | None = None,
) -> Iterator[Recipient]:
    """Stream valid, de-duplicated recipients (first occurrence wins, case-insensitively).

    Invalid rows go to ``on_problem``; with ``strict`` the first one raises ``InputError``.
    ``skip`` (for example the suppression list) filters addresses out, reported to ``on_skip``.
    """
    seen: set[str] = set()
    for line, values in _rows(path):
        try:
            recipient = _recipient(values, line)
        except ValueError as exc:
            problem = RowProblem(path, line, str(exc))
            if strict:
                raise InputError(str(problem)) from None
            if on_problem is not None:
                on_problem(problem)
            continue
        key = recipient.email.lower()
        if key in seen:
            continue
        seen.add(key)
        if skip is not None and skip(key):
            if on_skip is not None:
                on_skip(recipient)
            continue
        yield recipient


def _recipient(values: dict[str, str], line: int) -> Recipient:
    if "\x00error" in values:
        raise ValueError(values["\x00error"])
    email = normalise_email(values.get("email", ""))
    name = " ".join(values.get("name", "").split())
    if _CONTROL_RE.search(values.get("name", "").replace("\t", " ")):
        raise ValueError("name contains a line break or control character")
    if len(name) > MAX_NAME_CHARS:
        raise ValueError(f"name is longer than {MAX_NAME_CHARS} characters")
    extra = {
        key: _CONTROL_RE.sub(" ", value)
        for key, value in values.items()
        if key not in ("email", "name")
    }
    return Recipient(email=email, name=name, fields=extra, line=line)


def template_fields(header: list[str]) -> list[str]:
    """Extra columns that templates can use as ``subscriber.<column>``."""
    return [h for h in header if h and h not in ("email", "name")]
