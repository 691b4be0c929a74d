"""``mailer ledger``: the ledger's own chores (``migrate-suppressions``)."""

from __future__ import annotations

import typer

from mailer.cli.common import reports_errors

ledger_app = typer.Typer(
    name="ledger",
    help="The delivery ledger (MAILER_LEDGER): chores of its own.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def register(app: typer.Typer) -> None:
    """Add the ``ledger`` group to the main app."""
    app.add_typer(ledger_app, name="ledger")


@ledger_app.command("migrate-suppressions")
@reports_errors
def migrate_suppressions() -> None:
    """Move lists/suppressed.csv (and its journal) into the PostgreSQL ledger's database,
    where every sender and `mailer serve` share one suppression list.

    Each address keeps its reason and date. An address the database already has, or had and
    was resubscribed there since, is left as the database says. The file is not changed; while
    MAILER_LEDGER is PostgreSQL nothing reads it, and a send refuses to start if it holds
    addresses the database never had. Safe to run again.
    """
    from mailer.errors import ConfigError
    from mailer.ledger import is_url
    from mailer.ledger.postgres_suppression import SharedSuppression, move_in
    from mailer.settings import load_settings
    from mailer.suppression import suppression_path

    settings = load_settings()
    if not is_url(settings.ledger):
        raise ConfigError(
            "MAILER_LEDGER is a SQLite file: the suppression list is already "
            f"{suppression_path(settings.lists_dir)}",
            hint="set MAILER_LEDGER to the postgresql:// URL the senders share",
        )
    local = suppression_path(settings.lists_dir)
    shared = SharedSuppression.open(str(settings.ledger))
    try:
        added, left = move_in(shared, local)
        total = len(shared)
    finally:
        shared.close()
    print(
        f"Moved {added:,} address(es) from {local} into the shared suppression list of "
        f"{shared.location}; {left:,} it already had (or had and resubscribed). "
        f"It now holds {total:,}. {local} is left as it was."
    )
