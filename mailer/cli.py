"""The command line: parse, build settings, call the library, report. Nothing imports it."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated

import typer

from mailer.campaign import campaign_delivery, count_needing_smtputf8, settle_campaign
from mailer.cli_common import err, reports_errors
from mailer.cli_forward import register as register_forward
from mailer.cli_lists import register as register_lists
from mailer.cli_status import register as register_status
from mailer.delivery import deliver
from mailer.errors import EXIT_INCOMPLETE, EXIT_OK, EXIT_USAGE, DeliveryError, InputError
from mailer.ledger import Campaign, EmptyAudience, Ledger, State
from mailer.models import Recipient, SendResult, Status
from mailer.pipeline import (
    DigestOptions,
    PreparedIssue,
    campaign_name,
    delivery_policy,
    prepare_digest,
    smtp_config,
)
from mailer.progress import Report, run_with_progress
from mailer.settings import Settings, load_settings
from mailer.subscribers import RowProblem, list_name, read_list, resolve_list
from mailer.suppression import Suppression
from mailer.transports.base import ChannelBroken
from mailer.transports.files import FilesTransport
from mailer.transports.smtp import SMTPTransport, needs_smtputf8

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


def _parse_date(value: str) -> dt.date:
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
    days: Annotated[
        int, typer.Option(min=1, max=3660, help="Days the issue covers, ending on --date.")
    ] = 7,
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
    accept_changes: Annotated[
        bool,
        typer.Option(
            help="Resume a campaign whose articles, templates or settings changed since it "
            "started: the rest of its audience gets the issue as it is now."
        ),
    ] = False,
) -> None:
    """Build this week's digest and write one preview .eml per subscriber (or --send it)."""
    settings = load_settings(
        articles_dir=articles, previews_dir=out, concurrency=concurrency, rate=rate
    )
    options = DigestOptions(
        issue_date=_parse_date(date) if date is not None else settings.today(),
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
        code = _send(
            settings,
            options,
            transport,
            date_given=date is not None,
            limit=limit,
            resend_unknown=resend_unknown,
            accept_changes=accept_changes,
        )
        raise typer.Exit(code)
    prepared = prepare_digest(settings, options, on_skip=_skipped_article)
    folder = settings.previews_dir / f"digest-{options.issue_date.isoformat()}"
    _write_previews(prepared, folder, strict=strict, limit=limit, lists_dir=settings.lists_dir)


def _skipped_article(path: Path, reason: str) -> None:
    err(f"warning: {path}: skipped ({reason})")


class _Skips:
    """Rows left out of a run: invalid ones (warned as they are met) and suppressed ones."""

    def __init__(self, suppression: Suppression) -> None:
        self.suppression = suppression
        self.invalid = 0
        self.suppressed = 0

    def recipients(self, prepared: PreparedIssue, *, strict: bool) -> Iterator[Recipient]:
        return prepared.recipients(strict=strict, on_problem=self._warn, skip=self._suppressed)

    def _suppressed(self, email: str) -> bool:
        if self.suppression.is_suppressed(email):
            self.suppressed += 1
            return True
        return False

    def _warn(self, problem: RowProblem) -> None:
        self.invalid += 1
        err(f"warning: skipped {problem}")

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
    settings: Settings,
    options: DigestOptions,
    transport: SMTPTransport,
    *,
    date_given: bool,
    limit: int | None,
    resend_unknown: bool,
    accept_changes: bool,
) -> int:
    policy = delivery_policy(settings)
    suppression = Suppression.for_lists_dir(settings.lists_dir)
    skips = _Skips(suppression)
    list_path = resolve_list(options.list_ref or settings.default_list, settings.lists_dir)
    with Ledger.open(settings.ledger, wait=2.0) as ledger:
        if ledger.recovered:
            print(
                f"The last run stopped abruptly: {ledger.recovered} message(s) whose outcome "
                "was never recorded are now 'unknown' (see `mailer status --list unknown`)."
            )
        existing, options = _find_campaign(
            ledger,
            list_path,
            options,
            date_given=date_given,
            today=settings.today(),
            legacy_prefix=settings.newsletter_name,
        )
        prepared = prepare_digest(
            settings,
            options,
            fields=existing.fields if existing is not None else None,
            cutoff=existing.cutoff if existing is not None else None,
            on_skip=_skipped_article,
        )
        if existing is None:
            try:
                campaign = ledger.start_campaign(
                    prepared.campaign,
                    kind="digest",
                    list_path=str(list_path.resolve()),
                    subject=prepared.digest.subject,
                    recipients=skips.recipients(prepared, strict=options.strict),
                    issue_date=options.issue_date,
                    cutoff=prepared.cutoff,
                    fingerprint=prepared.fingerprint,
                    fields=prepared.fields,
                )
            except EmptyAudience:
                raise InputError(
                    f"{list_path}: no valid recipients; nothing to send"
                    + (f" ({skips.suppressed} suppressed)" if skips.suppressed else "")
                ) from None
        else:
            campaign = _check_resume(ledger, existing, prepared, accept_changes=accept_changes)
        if campaign.finished_at is not None:
            print(f"Campaign {campaign.name!r} is finished; nothing to send.")
            return EXIT_OK
        smtputf8 = count_needing_smtputf8(ledger, campaign)
        if smtputf8:
            info = asyncio.run(transport.probe())
            if "smtputf8" not in info.extensions:
                print(
                    f"{smtputf8} recipient(s) have an address whose local part is not ASCII; "
                    f"{transport.config.where} does not offer SMTPUTF8, so they will be "
                    "failed without being tried (`mailer status --list failed`)."
                )
        run = campaign_delivery(
            ledger,
            campaign,
            transport,
            policy,
            prepared.composer.compose,
            suppression=suppression,
            resend_unknown=resend_unknown,
            limit=limit,
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
        if report.abandoned:
            ledger.recover(campaign)  # nothing is in flight now: 'sending' means unknown
        settled = settle_campaign(
            ledger, campaign, suppression=suppression, note="hard bounce (5.1.x) during delivery"
        )
    skips.suppressed += len(run.skipped) + report.counts[Status.SKIPPED]
    skips.report()
    if settled.bounces_suppressed:
        added = settled.bounces_suppressed
        print(f"Added {added} hard-bounced address{'es' if added != 1 else ''} to suppression.")
    unknown = settled.counts[State.UNKNOWN]
    if unknown:
        print(
            f"{unknown} recipient(s) of this campaign are 'unknown': the server may have "
            "accepted them. `mailer status --list unknown` lists them; add --resend-unknown "
            "to send them again."
        )
    left = settled.left
    if report.interrupted or left:
        print(f"{left} recipient(s) still to send: run the same command again to resume.")
    if report.interrupted:
        return report.exit_code
    return max(report.exit_code, EXIT_INCOMPLETE if unknown or left else EXIT_OK)


def _find_campaign(
    ledger: Ledger,
    list_path: Path,
    options: DigestOptions,
    *,
    date_given: bool,
    today: dt.date,
    legacy_prefix: str,
) -> tuple[Campaign | None, DigestOptions]:
    """The campaign this run continues, if any, and the options for its issue.

    Without ``--date`` (and ``--campaign``), an unfinished campaign to the same list whose
    issue is recent enough to overlap today's (dated within the last ``--days``) is resumed
    rather than starting a new issue: a send stopped before midnight and resumed after it
    must not mail the same people a second issue. A campaign that an older mailer started
    (named ``<newsletter> <date>``) for the same list is resumed too.
    """
    where = str(list_path.resolve())
    if options.campaign is None and not date_given:
        since = today - dt.timedelta(days=options.days)
        for candidate in ledger.unfinished(kind="digest", list_path=where):
            if candidate.issue_date is not None and since < candidate.issue_date <= today:
                print(
                    f"Resuming the unfinished issue of {candidate.issue_date} to "
                    f"{list_name(list_path)} (campaign {candidate.name!r}); give --date to "
                    "start another issue."
                )
                options = dataclasses.replace(
                    options, issue_date=candidate.issue_date, campaign=candidate.name
                )
                return candidate, options
    name = options.campaign or campaign_name(list_path, options.issue_date)
    existing = ledger.campaign(name)
    if existing is None and options.campaign is None:
        legacy = ledger.campaign(f"{legacy_prefix} {options.issue_date.isoformat()}")
        if (
            legacy is not None
            and legacy.kind == "digest"
            and legacy.finished_at is None
            and Path(legacy.list_path).resolve() == Path(where)
        ):
            existing, name = legacy, legacy.name
            options = dataclasses.replace(options, campaign=name)
    if existing is None:
        return None, options
    if existing.kind != "digest":
        raise InputError(f"campaign {name!r} is a {existing.kind} campaign, not a digest")
    if existing.list_path and Path(existing.list_path).resolve() != Path(where):
        raise InputError(
            f"campaign {name!r} was started for the list {existing.list_path}, not {list_path}",
            hint="a campaign is one issue to one list; give --campaign NAME for another",
        )
    if existing.issue_date is not None:
        if date_given and existing.issue_date != options.issue_date:
            raise InputError(
                f"campaign {name!r} is the issue of {existing.issue_date}, not "
                f"{options.issue_date}",
                hint="give --campaign NAME for a separate campaign",
            )
        options = dataclasses.replace(options, issue_date=existing.issue_date)
    print(f"Resuming campaign {name!r} ({existing.frozen_count} recipients).")
    return existing, options


def _check_resume(
    ledger: Ledger, campaign: Campaign, prepared: PreparedIssue, *, accept_changes: bool
) -> Campaign:
    """A resume sends the issue the campaign started with, or says why it cannot."""
    if not campaign.fingerprint or campaign.fingerprint == prepared.fingerprint:
        return campaign
    if not accept_changes:
        raise InputError(
            f"campaign {campaign.name!r} was started with a different issue: its articles, "
            "templates, subject or sender settings have changed since",
            hint="put them back as they were to resume it, or add --accept-changes to send "
            "the rest of its audience the issue as it is now",
        )
    print(f"The issue changed since campaign {campaign.name!r} started: the rest gets it as now.")
    return ledger.accept_changes(
        campaign, fingerprint=prepared.fingerprint, subject=prepared.digest.subject
    )


@app.command()
@reports_errors
def check(
    list_: Annotated[
        str | None,
        typer.Option(
            "--list",
            help="Also check that this list can be sent through the relay (addresses "
            "that need SMTPUTF8).",
        ),
    ] = None,
) -> None:
    """Connect to the SMTP relay: EHLO, STARTTLS, AUTH, and report; nothing is sent."""
    settings = load_settings()
    transport = SMTPTransport(smtp_config(settings))
    needs = 0
    if list_ is not None:
        path = resolve_list(list_, settings.lists_dir)
        needs = sum(1 for r in read_list(path, strict=False) if needs_smtputf8(r.email))
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
    utf8 = "smtputf8" in info.extensions
    if list_ is not None:
        if needs and not utf8:
            print(
                f"List:          {needs} address(es) of {list_} have a non-ASCII local part "
                "and need SMTPUTF8, which this relay does not offer: they would be failed."
            )
        else:
            print(f"List:          every address of {list_} can go through this relay.")
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
