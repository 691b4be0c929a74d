"""``mailer status``: what the ledger knows about a campaign, for people and scripts."""

from __future__ import annotations

from typing import Annotated

import typer

from mailer.cli.common import Command, reports_errors

# As mailer.ledger.State has them (the body checks the value against it).
STATES = "pending, sending, sent, deferred, failed, unknown, skipped"


def register(app: typer.Typer) -> None:
    """Add the ``status`` command to the main app."""
    app.command("status", cls=Command)(status)


@reports_errors
def status(
    campaign: Annotated[
        str | None,
        typer.Argument(metavar="CAMPAIGN", help="Campaign name (default: the latest campaign)."),
    ] = None,
    list_: Annotated[
        str | None,
        typer.Option(
            "--list",
            metavar="STATE",
            help=f"Print the addresses in this state, one per line ({STATES}).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    all_: Annotated[
        bool, typer.Option("--all", help="List every campaign with its counts.")
    ] = False,
    failures: Annotated[
        int, typer.Option(min=0, metavar="N", help="How many recent failures to show.")
    ] = 10,
    ledger_file: Annotated[
        str | None,  # not a Path: a postgresql:// URL must reach the settings as it is
        typer.Option(
            "--ledger",
            metavar="FILE",
            help="Ledger file or postgresql:// URL [MAILER_LEDGER].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Show a campaign's counts per state and its recent failures with their SMTP replies,
    and the bounces that `mailer bounces scan` matched to it (hard, soft).

    Unknown rows are messages whose data went out but whose reply was never recorded (the
    run died or the connection dropped after the final dot): a resume leaves them alone
    unless given --resend-unknown.
    """
    from mailer.cli.report import run

    run(
        campaign,
        list_,
        as_json=as_json,
        all_=all_,
        failures=failures,
        ledger_file=ledger_file,
    )
