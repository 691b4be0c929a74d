"""The list and suppression commands: ``mailer lists ...``, ``unsubscribe``, ``resubscribe``."""

from __future__ import annotations

import csv
import enum
import getpass
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

import typer

from mailer.cli.common import Command, err, plural, reports_errors
from mailer.errors import EXIT_INCOMPLETE, EXIT_USAGE, InputError, MailerError

if TYPE_CHECKING:
    # The library loads when a command runs, not for `mailer --help` (start-up time).
    from mailer.models import Recipient
    from mailer.settings import Settings
    from mailer.subscribers import RowProblem
    from mailer.suppression_list import Suppressed, SuppressionList

MAX_LISTED = 10  # suppressed addresses named one by one after an import


class ExportFormat(enum.StrEnum):
    csv = "csv"
    json = "json"


class ReasonChoice(enum.StrEnum):
    unsubscribed = "unsubscribed"
    bounced = "bounced"
    complaint = "complaint"
    manual = "manual"


lists_app = typer.Typer(
    name="lists",
    help="Subscriber lists (lists/<name>.csv): with no command, every list with its counts.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def register(app: typer.Typer) -> None:
    """Add ``unsubscribe``, ``resubscribe`` and the ``lists`` group to the main app."""
    app.command("unsubscribe", cls=Command)(unsubscribe)
    app.command("resubscribe", cls=Command)(resubscribe)
    app.add_typer(lists_app, name="lists")


def _settings() -> Settings:
    from mailer.settings import load_settings

    return load_settings()


def _suppression(settings: Settings) -> SuppressionList:
    from mailer.ledger.suppression import open_suppression

    return open_suppression(settings)


def _actor() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown user"


def _email_argument(value: str) -> str:
    from mailer.headers import normalise_email

    try:
        return normalise_email(value)
    except InputError as exc:
        raise InputError(f"EMAIL: {exc.message}") from None


def _suppressed_note(entry: Suppressed) -> str:
    return (
        f"Note: {entry.email} is suppressed ({entry.describe()}) and stays suppressed: "
        "no digest or forward will reach it. Only if they asked to subscribe again, run "
        f"`mailer resubscribe {entry.email}`."
    )


# --- mailer lists ---------------------------------------------------------------------


@lists_app.callback(invoke_without_command=True)
@reports_errors
def overview(ctx: typer.Context) -> None:
    """With no command: every list in MAILER_LISTS_DIR with its counts."""
    if ctx.invoked_subcommand is not None:
        return
    from mailer.subscribers import list_files, list_name, scan_list

    settings = _settings()
    suppression = _suppression(settings)
    paths = list_files(settings.lists_dir)
    failed = 0
    if not paths:
        print(f"No lists in {settings.lists_dir}/ (create one with `mailer lists add NAME EMAIL`).")
    else:
        width = max(4, *(len(list_name(p)) for p in paths))
        print(
            f"{'LIST':<{width}}  SUBSCRIBERS  SUPPRESSED  DUPLICATES  INVALID  FILE",
        )
        for path in paths:
            try:
                stats = scan_list(path, is_suppressed=suppression.is_suppressed)
            except MailerError as exc:
                failed += 1
                err(f"Error: {exc.message}")
                continue
            print(
                f"{list_name(path):<{width}}  {stats.subscribers:>11,}  {stats.suppressed:>10,}"
                f"  {stats.duplicates:>10,}  {stats.invalid:>7,}  {path}"
            )
        print()
    print(
        f"Suppression list: {plural(len(suppression), 'address', 'addresses')} "
        f"({suppression.path}); it is not a subscriber list."
    )
    if failed:
        raise typer.Exit(EXIT_USAGE)


@lists_app.command("show", cls=Command)
@reports_errors
def show(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="List name (lists/NAME.csv) or CSV path.")
    ],
) -> None:
    """Print every subscriber of a list, one per line, marking suppressed addresses."""
    from mailer.subscribers import read_list, resolve_list

    settings = _settings()
    path = resolve_list(name, settings.lists_dir)
    suppression = _suppression(settings)
    subscribers = suppressed = duplicates = invalid = 0

    def problem(item: RowProblem) -> None:
        nonlocal invalid
        invalid += 1
        err(f"warning: invalid row skipped: {item}")

    def duplicate(recipient: Recipient) -> None:
        nonlocal duplicates
        duplicates += 1
        err(f"warning: {path}:{recipient.line}: duplicate of an earlier row ({recipient.email})")

    out = sys.stdout
    for recipient in read_list(path, on_problem=problem, on_duplicate=duplicate):
        subscribers += 1
        parts = [f"{recipient.line:>6}", recipient.email, recipient.name or "-"]
        parts += [f"{key}={value}" for key, value in recipient.fields.items() if value]
        entry = suppression.get(recipient.email)
        if entry is not None:
            suppressed += 1
            parts.append(f"[suppressed: {entry.describe()}]")
        out.write("  ".join(parts) + "\n")
    print(
        f"{path}: {plural(subscribers, 'subscriber')} ({suppressed:,} suppressed), "
        f"{plural(duplicates, 'duplicate')}, {invalid:,} invalid"
    )


@lists_app.command("export", cls=Command)
@reports_errors
def export(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="List name (lists/NAME.csv) or CSV path.")
    ],
    *,
    format_: Annotated[
        ExportFormat, typer.Option("--format", metavar="FORMAT", help="Output format: csv or json.")
    ] = ExportFormat.csv,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="FILE", help="Write to this file (atomically), not stdout."
        ),
    ] = None,
    include_suppressed: Annotated[
        bool, typer.Option(help="Also export suppressed addresses.")
    ] = False,
) -> None:
    """Export the valid, de-duplicated subscribers of a list as CSV or JSON.

    Suppressed addresses are left out unless --include-suppressed; invalid rows are
    reported on stderr and left out.
    """
    from mailer.csvfile import atomic_writer, read_header
    from mailer.subscribers import read_list, resolve_list, template_fields

    settings = _settings()
    path = resolve_list(name, settings.lists_dir)
    suppression = _suppression(settings)
    columns = ["email", "name", *template_fields(read_header(path))]
    skipped = invalid = 0

    def problem(item: RowProblem) -> None:
        nonlocal invalid
        invalid += 1
        err(f"warning: invalid row skipped: {item}")

    def on_skip(_: Recipient) -> None:
        nonlocal skipped
        skipped += 1

    recipients = read_list(
        path,
        on_problem=problem,
        skip=None if include_suppressed else suppression.is_suppressed,
        on_skip=on_skip,
    )
    if output is None:
        count = _write_export(sys.stdout, recipients, columns, format_)
    else:
        with atomic_writer(output) as handle:
            count = _write_export(handle, recipients, columns, format_)
    where = "" if output is None else f" to {output}"
    err(
        f"Exported {plural(count, 'subscriber')} from {path}{where} "
        f"({skipped:,} suppressed left out, {invalid:,} invalid)."
    )


def _write_export(
    out: TextIO, recipients: Iterator[Recipient], columns: list[str], format_: ExportFormat
) -> int:
    count = 0
    if format_ is ExportFormat.csv:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        for recipient in recipients:
            writer.writerow(_values(recipient, columns))
            count += 1
        return count
    out.write("[")
    for recipient in recipients:
        record = dict(zip(columns, _values(recipient, columns), strict=True))
        out.write(("\n  " if count == 0 else ",\n  ") + json.dumps(record, ensure_ascii=False))
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def _values(recipient: Recipient, columns: list[str]) -> list[str]:
    return [recipient.email, recipient.name, *(recipient.fields.get(c, "") for c in columns[2:])]


@lists_app.command("add", cls=Command)
@reports_errors
def add(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME",
            help="List name (created if needed) or the path of an existing CSV file.",
        ),
    ],
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="The address to add.")],
    *,
    subscriber_name: Annotated[
        str, typer.Option("--name", metavar="TEXT", help="The subscriber's name.")
    ] = "",
) -> None:
    """Add one subscriber. An address already on the list (any case) changes nothing."""
    from mailer.subscribers import add_subscriber, list_name, list_path_for_writing, make_recipient

    settings = _settings()
    path = list_path_for_writing(name, settings.lists_dir)
    address = _email_argument(email)
    try:
        recipient = make_recipient(address, subscriber_name)
    except InputError as exc:
        raise InputError(f"--name: {exc.message}") from None
    suppression = _suppression(settings)  # a broken suppression file stops us before writing
    report = add_subscriber(path, recipient)
    if report.added:
        created = "new list " if report.created else "list "
        print(f"Added {recipient.email} to {created}{list_name(path)} ({path}).")
    else:
        print(f"{recipient.email} is already on {list_name(path)} ({path}); nothing changed.")
    entry = suppression.get(recipient.email)
    if entry is not None:
        print(_suppressed_note(entry))


@lists_app.command("remove", cls=Command)
@reports_errors
def remove(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="List name (lists/NAME.csv) or CSV path.")
    ],
    email: Annotated[
        str, typer.Argument(metavar="EMAIL", help="The address to remove (any case).")
    ],
) -> None:
    """Remove a subscriber from one list (to stop all mail to them, use `mailer unsubscribe`)."""
    from mailer.subscribers import list_name, remove_subscriber, resolve_list

    settings = _settings()
    path = resolve_list(name, settings.lists_dir)
    address = _email_argument(email)
    removed = remove_subscriber(path, address)
    if not removed:
        raise InputError(f"{address} is not on {list_name(path)} ({path}); nothing changed")
    rows = f" ({removed} rows)" if removed > 1 else ""
    print(f"Removed {address} from {list_name(path)} ({path}){rows}.")


@lists_app.command("import", cls=Command)
@reports_errors
def import_(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME",
            help="List name (created if needed) or the path of an existing CSV file.",
        ),
    ],
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="CSV file with an 'email' column to merge in.")
    ],
    *,
    strict: Annotated[
        bool, typer.Option(help="Any invalid row aborts the import; nothing is written.")
    ] = False,
) -> None:
    """Merge a CSV file into a list: add new addresses, skip duplicates and invalid rows.

    Duplicates are found case-insensitively against the list and earlier rows; the stored
    form is the normalised address. New columns of FILE are added to the list.
    """
    from mailer.subscribers import import_subscribers, list_name, list_path_for_writing

    settings = _settings()
    path = list_path_for_writing(name, settings.lists_dir)
    suppression = _suppression(settings)
    if not file.is_file():
        raise InputError(f"{file}: file not found")
    still_suppressed: list[Suppressed] = []
    suppressed_count = 0

    def problem(item: RowProblem) -> None:
        print(f"invalid: {item}")

    def added(recipient: Recipient) -> None:
        nonlocal suppressed_count
        entry = suppression.get(recipient.email)
        if entry is not None:
            suppressed_count += 1
            if len(still_suppressed) < MAX_LISTED:
                still_suppressed.append(entry)

    report = import_subscribers(path, file, strict=strict, on_problem=problem, on_added=added)
    target = f"new list {list_name(path)}" if report.created else list_name(path)
    print(
        f"Imported {file} into {target} ({path}): {report.added:,} added, "
        f"{plural(report.duplicates, 'duplicate')}, {report.invalid:,} invalid."
    )
    if report.columns_added:
        print(f"New columns: {', '.join(report.columns_added)}.")
    if suppressed_count:
        names = ", ".join(f"{e.email} ({e.describe()})" for e in still_suppressed)
        unnamed = suppressed_count - len(still_suppressed)
        if unnamed:
            names += f" and {unnamed:,} more"
        print(
            f"Note: {plural(suppressed_count, 'added address is', 'added addresses are')} "
            f"suppressed and will stay suppressed, so no mail will reach "
            f"{'it' if suppressed_count == 1 else 'them'}: {names}. Run "
            "`mailer resubscribe EMAIL` only for someone who asked to subscribe again."
        )


@lists_app.command("validate", cls=Command)
@reports_errors
def validate(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="List name (lists/NAME.csv) or CSV path.")
    ],
) -> None:
    """Check every row; print each invalid one with file and line. Exit 1 if any is invalid.

    Exit 2 if the file itself cannot be read (missing, not UTF-8, broken CSV, no 'email'
    column).
    """
    from mailer.subscribers import resolve_list, scan_list

    settings = _settings()
    path = resolve_list(name, settings.lists_dir)
    suppression = _suppression(settings)
    out = sys.stdout

    def problem(item: RowProblem) -> None:
        out.write(f"{item}\n")

    stats = scan_list(path, on_problem=problem, is_suppressed=suppression.is_suppressed)
    verdict = "OK" if not stats.invalid else f"{plural(stats.invalid, 'invalid row')}"
    print(
        f"{path}: {plural(stats.subscribers, 'subscriber')} ({stats.suppressed:,} suppressed), "
        f"{plural(stats.duplicates, 'duplicate')}, {stats.invalid:,} invalid: {verdict}."
    )
    if stats.invalid:
        raise typer.Exit(EXIT_INCOMPLETE)


# --- mailer unsubscribe / resubscribe ---------------------------------------------------


@reports_errors
def unsubscribe(
    email: Annotated[
        str | None,
        typer.Argument(metavar="EMAIL", help="The address to suppress (or give --token)."),
    ] = None,
    *,
    token: Annotated[
        str | None, typer.Option(metavar="TOKEN", help="The ?token= value of an unsubscribe link.")
    ] = None,
    reason: Annotated[
        ReasonChoice,
        typer.Option(
            metavar="REASON",
            help="Why the address is suppressed: unsubscribed, bounced, complaint or manual.",
        ),
    ] = ReasonChoice.unsubscribed,
) -> None:
    """Suppress an address on every list: no digest or forward will reach it again.

    With --token, the token of an unsubscribe link is checked against MAILER_SECRET_KEY
    first; a forged, altered or moved token suppresses no one.
    """
    from mailer.tokens import token_address

    settings = _settings()
    if email is None and token is None:
        raise InputError("give the EMAIL to suppress, or --token TOKEN")
    note = f"mailer unsubscribe by {_actor()}"
    address = _email_argument(email) if email is not None else None
    if token is not None:
        secret = settings.secret_key.get_secret_value()
        settings.require_real_secret(
            ", so tokens prove nothing; refusing to act on one",
            hint="set MAILER_SECRET_KEY to the key the messages were signed with",
        )
        token_list, token_email = token_address(secret, token)
        if address is not None and address.lower() != token_email.lower():
            raise InputError(f"--token: the token is not for {address}; nothing changed")
        address = token_email
        note = f"token from list {token_list!r}"
    assert address is not None
    suppression = _suppression(settings)
    if suppression.add(address, reason.value, note=note):
        print(
            f"Unsubscribed {address} (reason: {reason.value}): no digest or forward will reach it. "
            f"Recorded in {suppression.path}."
        )
    else:
        entry = suppression.get(address)
        assert entry is not None
        print(f"{address} is already suppressed ({entry.describe()}); nothing changed.")


@reports_errors
def resubscribe(
    email: Annotated[
        str, typer.Argument(metavar="EMAIL", help="The suppressed address to allow again.")
    ],
) -> None:
    """Lift the suppression of an address (explicit and logged in lists/suppressed.log).

    Only for someone who asked to receive mail again; it does not add them to any list.
    """
    settings = _settings()
    address = _email_argument(email)
    suppression = _suppression(settings)
    entry = suppression.remove(address, note=f"mailer resubscribe by {_actor()}")
    if entry is None:
        raise InputError(f"{address} is not suppressed; nothing changed")
    print(
        f"Resubscribed {entry.email}: it was suppressed ({entry.describe()}); mail to it is "
        f"allowed again on the lists it is on. Logged in {suppression.log_path}."
    )
