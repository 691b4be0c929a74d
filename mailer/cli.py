"""The command line: parse, build settings, call the library, report. Nothing imports it."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated

import typer

from mailer.cli_common import err, reports_errors
from mailer.cli_forward import register as register_forward
from mailer.cli_lists import register as register_lists
from mailer.cli_status import register as register_status
from mailer.delivery import DeliveryPolicy, deliver
from mailer.errors import EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE, DeliveryError, InputError
from mailer.ledger import Ledger, State
from mailer.models import Recipient, SendResult, Status
from mailer.pipeline import (
    DigestOptions,
    PreparedIssue,
    delivery_policy,
    prepare_digest,
    smtp_config,
)
from mailer.progress import Report, run_with_progress
from mailer.sending import campaign_delivery, settle_campaign
from mailer.settings import load_settings
from mailer.subscribers import RowProblem
from mailer.suppression import Reason, Suppression
from mailer.transports.base import ChannelBroken
from mailer.transports.files import FilesTransport
from mailer.transports.smtp import SMTPTransport

app = typer.Typer(
    name="mailer",
    help="Weekly digests and send-to-a-friend mail from article files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """Weekly digests and send-to-a-friend mail from article files.

    Exit codes: 0 all sent, 1 some recipients failed or were deferred, 2 usage,
    configuration or input error, 3 the run stopped (authentication, TLS, unreachable
    server, relay refusing us), 75 interrupted and resumable.
    """


def _parse_date(value: str | None) -> dt.date:
    if value is None:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        err(f"Error: --date: {value!r} is not a date (use YYYY-MM-DD)")
        raise typer.Exit(EXIT_USAGE) from None


@app.command()
@reports_errors
def digest(
    articles: Annotated[
        Path | None, typer.Option(help="Folder of article files [MAILER_ARTICLES_DIR].")
    ] = None,
    list_: Annotated[
        str | None,
        typer.Option(
            "--list", help="List name (lists/<name>.csv) or CSV path [MAILER_DEFAULT_LIST]."
        ),
    ] = None,
    date: Annotated[
        str | None, typer.Option(help="Issue date, YYYY-MM-DD (default: today).")
    ] = None,
    days: Annotated[int, typer.Option(min=1, help="Days the issue covers, ending on --date.")] = 7,
    max_articles: Annotated[
        int | None, typer.Option(min=1, help="At most this many articles, newest first.")
    ] = None,
    subject: Annotated[
        str | None, typer.Option(help="Subject line (default: '<name>: week of <date>').")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Preview folder [MAILER_PREVIEWS_DIR].")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="Stop after N recipients.")] = None,
    strict: Annotated[
        bool, typer.Option(help="Invalid list rows are fatal instead of skipped.")
    ] = False,
    send: Annotated[
        bool, typer.Option(help="Really send over SMTP (default: write previews).")
    ] = False,
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=256, help="SMTP connections [MAILER_CONCURRENCY].")
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(help="At most R messages per second over all connections [MAILER_RATE]."),
    ] = None,
    campaign: Annotated[
        str | None,
        typer.Option(help="Campaign name in the ledger (default: '<newsletter> <date>')."),
    ] = None,
    resend_unknown: Annotated[
        bool,
        typer.Option(help="Also resend recipients whose earlier outcome is unknown."),
    ] = False,
) -> None:
    """Build this week's digest and write one preview .eml per subscriber (or --send it)."""
    settings = load_settings(
        articles_dir=articles, previews_dir=out, concurrency=concurrency, rate=rate
    )
    issue_date = _parse_date(date)
    options = DigestOptions(
        issue_date=issue_date,
        days=days,
        max_articles=max_articles,
        subject=subject,
        list_ref=list_,
        strict=strict,
        campaign=campaign,
    )
    if send:
        settings.require_real_secret()
        transport = SMTPTransport(smtp_config(settings))
        prepared = prepare_digest(settings, options)
        code = _send(
            prepared,
            transport,
            delivery_policy(settings),
            ledger_path=settings.ledger,
            strict=strict,
            limit=limit,
            lists_dir=settings.lists_dir,
            resend_unknown=resend_unknown,
        )
        raise typer.Exit(code)
    prepared = prepare_digest(settings, options)
    folder = settings.previews_dir / f"digest-{issue_date.isoformat()}"
    _write_previews(prepared, folder, strict=strict, limit=limit, lists_dir=settings.lists_dir)


class _Skips:
    """Rows left out of a run: invalid ones (warned as they are met) and suppressed ones."""

    def __init__(self, suppression: Suppression) -> None:
        self.suppression = suppression
        self.invalid = 0
        self.suppressed = 0

    def recipients(self, prepared: PreparedIssue, *, strict: bool) -> Iterator[Recipient]:
        return prepared.recipients(
            strict=strict,
            on_problem=self._warn,
            skip=self.suppression.is_suppressed,
            on_skip=self._skip,
        )

    def _warn(self, problem: RowProblem) -> None:
        self.invalid += 1
        err(f"warning: skipped {problem}")

    def _skip(self, recipient: Recipient) -> None:
        self.suppressed += 1

    def report(self) -> None:
        if self.invalid:
            print(f"Skipped {self.invalid} invalid list row{'s' if self.invalid != 1 else ''}.")
        if self.suppressed:
            plural = "es" if self.suppressed != 1 else ""
            print(f"Skipped {self.suppressed} suppressed address{plural}.")


def _write_previews(
    prepared: PreparedIssue, folder: Path, *, strict: bool, limit: int | None, lists_dir: Path
) -> None:
    skips = _Skips(Suppression.for_lists_dir(lists_dir))
    recipients = skips.recipients(prepared, strict=strict)
    if limit is not None:
        recipients = itertools.islice(recipients, limit)
    first = next(recipients, None)
    if first is None:
        raise InputError(f"{prepared.list_path}: no valid recipients; nothing to write")
    html, text = prepared.composer.preview_documents(first, prepared.rendered)
    transport = FilesTransport(folder, extras={"digest.html": html, "digest.txt": text})
    messages = (
        prepared.composer.compose(recipient, index)
        for index, recipient in enumerate(itertools.chain([first], recipients), 1)
    )
    counts = asyncio.run(_count(deliver(transport, messages)))
    written = counts.get(Status.SENT, 0)
    print(
        f"Wrote {written} message{'s' if written != 1 else ''} for "
        f"{prepared.digest.subject!r} ({len(prepared.digest.articles)} articles) to {folder}/"
    )
    print(f"Open {folder / 'digest.html'} in a browser, or any .eml file in a mail client.")
    skips.report()
    if written != sum(counts.values()):
        raise typer.Exit(EXIT_INCOMPLETE)


def _send(
    prepared: PreparedIssue,
    transport: SMTPTransport,
    policy: DeliveryPolicy,
    *,
    ledger_path: Path,
    strict: bool,
    limit: int | None,
    lists_dir: Path,
    resend_unknown: bool,
) -> int:
    skips = _Skips(Suppression.for_lists_dir(lists_dir))
    suppressed = skips.suppression
    with Ledger.open(ledger_path, wait=2.0) as ledger:
        if ledger.recovered:
            print(
                f"The last run stopped abruptly: {ledger.recovered} message(s) whose outcome "
                "was never recorded are now 'unknown' (see `mailer status --list unknown`)."
            )
        existing = ledger.campaign(prepared.campaign)
        # The audience is frozen the first time a campaign starts; editing the list later
        # changes nothing for it.
        campaign = ledger.start_campaign(
            prepared.campaign,
            kind="digest",
            list_path=str(prepared.list_path),
            subject=prepared.digest.subject,
            recipients=skips.recipients(prepared, strict=strict),
        )
        if existing is not None:
            print(f"Resuming campaign {campaign.name!r} ({campaign.frozen_count} recipients).")
        run = campaign_delivery(
            ledger,
            campaign,
            transport,
            policy,
            prepared.composer.compose,
            resend_unknown=resend_unknown,
            limit=limit,
            skip=suppressed.is_suppressed,
        )
        print(
            f"Sending {prepared.digest.subject!r} to {run.planned} recipient"
            f"{'s' if run.planned != 1 else ''} via {transport.config.where} "
            f"({policy.concurrency} connections"
            + (f", at most {policy.rate:g}/s" if policy.rate else "")
            + ")",
            flush=True,
        )

        async def drive() -> Report:
            try:
                return await run_with_progress(run.engine, total=run.planned)
            finally:
                await ledger.flush()

        report = asyncio.run(drive())
        counts = settle_campaign(ledger, campaign)
        bounced: Reason = "bounced"
        bounces = [(row.email, bounced) for row in ledger.hard_bounces(campaign)]
    skips.suppressed += len(run.suppressed)
    skips.report()
    if bounces:
        added = suppressed.add_many(bounces, note="hard bounce (5.1.x) during delivery")
        if added:
            print(f"Added {added} hard-bounced address{'es' if added != 1 else ''} to suppression.")
    unknown = counts[State.UNKNOWN]
    if unknown:
        print(
            f"{unknown} recipient(s) of this campaign are 'unknown': the server may have "
            "accepted them. `mailer status --list unknown` lists them; add --resend-unknown "
            "to send them again."
        )
    left = counts[State.PENDING] + counts[State.DEFERRED]
    if report.interrupted or left:
        print(f"{left} recipient(s) still to send: run the same command again to resume.")
    if report.interrupted:
        return report.exit_code
    return max(report.exit_code, EXIT_INCOMPLETE if unknown or left else EXIT_OK)


@app.command()
@reports_errors
def check() -> None:
    """Connect to the SMTP relay: EHLO, STARTTLS, AUTH, and report; nothing is sent."""
    settings = load_settings()
    transport = SMTPTransport(smtp_config(settings))
    try:
        info = asyncio.run(transport.probe())
    except ChannelBroken as exc:
        raise DeliveryError(
            f"{transport.config.where} is not accepting connections now: {exc.reply}"
        ) from None
    print(f"Server:        {transport.config.where}")
    print(f"Banner:        {info.banner}")
    print(f"Security:      {settings.smtp_security}" + (f" ({info.tls})" if info.tls else ""))
    print(f"Authenticated: {info.authenticated_as or 'no (no MAILER_SMTP_USERNAME set)'}")
    extensions = ", ".join(
        f"{name.upper()} {value}".strip() for name, value in sorted(info.extensions.items())
    )
    print(f"Extensions:    {extensions}")
    print("OK: ready to send.")


async def _count(results: AsyncIterator[SendResult]) -> Counter[Status]:
    counts: Counter[Status] = Counter()
    async for result in results:
        counts[result.status] += 1
    return counts


register_lists(app)
register_status(app)
register_forward(app)


def main() -> None:
    app()
