"""``mailer digest`` (previews, or ``--send``) and ``mailer check`` (the relay)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mailer.cli.common import (
    err,
    exit_code,
    parse_issue_date,
    plural,
    reports_errors,
    skipped_article,
)
from mailer.errors import EXIT_OK, InputError

if TYPE_CHECKING:
    # The library loads when a command runs, not for `mailer --help` (start-up time).
    from mailer.campaign import Audience, Outcome
    from mailer.ledger import Campaign, Ledger
    from mailer.pipeline import DigestOptions
    from mailer.settings import Settings
    from mailer.subscribers import RowProblem
    from mailer.transports.smtp import SMTPTransport


def register(app: typer.Typer) -> None:
    app.command("digest")(digest)
    app.command("check")(check)


@reports_errors
def digest(
    articles: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Folder of article files [MAILER_ARTICLES_DIR]."),
    ] = None,
    list_: Annotated[
        str | None,
        typer.Option(
            "--list",
            metavar="NAME",
            help="List name (lists/NAME.csv) or CSV path [MAILER_DEFAULT_LIST].",
        ),
    ] = None,
    date: Annotated[
        str | None,
        typer.Option(
            metavar="DATE", help="Issue date, YYYY-MM-DD (default: today in MAILER_TIMEZONE)."
        ),
    ] = None,
    days: Annotated[
        int,
        typer.Option(metavar="N", min=1, max=3660, help="Days the issue covers, ending on --date."),
    ] = 7,
    max_articles: Annotated[
        int | None,
        typer.Option(metavar="N", min=1, help="At most this many articles, newest first."),
    ] = None,
    subject: Annotated[
        str | None,
        typer.Option(metavar="TEXT", help="Subject line (default: 'NEWSLETTER: week of DATE')."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Preview folder [MAILER_PREVIEWS_DIR].")
    ] = None,
    limit: Annotated[
        int | None, typer.Option(metavar="N", min=1, help="Stop after N recipients.")
    ] = None,
    strict: Annotated[
        bool, typer.Option(help="Invalid list rows are fatal instead of skipped.")
    ] = False,
    send: Annotated[
        bool, typer.Option(help="Really send over SMTP (default: write previews).")
    ] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            "-y",
            help="Send without asking first (needed for --send to more than one recipient "
            "without a terminal).",
        ),
    ] = False,
    concurrency: Annotated[
        int | None,
        typer.Option(metavar="N", min=1, max=256, help="SMTP connections [MAILER_CONCURRENCY]."),
    ] = None,
    rate: Annotated[
        float | None,
        typer.Option(
            metavar="N",
            help="At most N messages per second over all connections [MAILER_RATE].",
        ),
    ] = None,
    campaign: Annotated[
        str | None,
        typer.Option(metavar="NAME", help="Campaign name in the ledger (default: 'LIST DATE')."),
    ] = None,
    resend_unknown: Annotated[
        bool, typer.Option(help="Also resend recipients whose earlier outcome is unknown.")
    ] = False,
    accept_changes: Annotated[
        bool,
        typer.Option(
            help="Resume a campaign whose articles, templates or settings changed since it "
            "started: the rest of its audience gets the issue as it is now."
        ),
    ] = False,
) -> None:
    """Build this week's digest and write one preview .eml per subscriber (or --send it).

    On a terminal, --send to more than one recipient asks first; --yes skips the question.
    """
    from mailer.campaign import Audience, check_campaign_name
    from mailer.ledger.suppression import open_suppression
    from mailer.pipeline import DigestOptions
    from mailer.settings import load_settings
    from mailer.subscribers import LIST_HINT, resolve_list

    settings = load_settings(
        articles_dir=articles, previews_dir=out, concurrency=concurrency, rate=rate
    )
    options = DigestOptions(
        issue_date=parse_issue_date(date) if date is not None else settings.today(),
        days=days,
        max_articles=max_articles,
        subject=subject,
        list_ref=list_,
        campaign=campaign,
    )
    if list_ is not None and not list_.strip():
        raise InputError("--list: empty; give a list name or a .csv path")
    if campaign is not None:
        check_campaign_name(campaign)
    rows = _RowReport()
    if not send:
        raise typer.Exit(_preview(settings, options, rows, strict=strict, limit=limit))
    settings.require_sendable()
    # The file may be gone if its campaign is resumed (the audience is frozen in the
    # ledger); a new campaign needs it, and says so (open_digest_campaign).
    list_path = resolve_list(
        list_ if list_ is not None else settings.default_list,
        settings.lists_dir,
        hint=LIST_HINT,
        must_exist=False,
    )
    suppression = open_suppression(settings, sending=True)
    audience = Audience(list_path, suppression, strict=strict, on_problem=rows.invalid)
    request = _SendRequest(
        options, date is not None, limit, resend_unknown, accept_changes, yes, strict
    )
    outcome = _send(settings, audience, request)
    if outcome is None:
        raise typer.Exit(EXIT_OK)
    from mailer.cli.progress import print_summary
    from mailer.models import Status

    print_summary(outcome)
    rows.report(suppressed=audience.suppressed + outcome.results[Status.SKIPPED])
    raise typer.Exit(_report_campaign(outcome))


@dataclasses.dataclass(frozen=True)
class _SendRequest:
    options: DigestOptions
    date_given: bool
    limit: int | None
    resend_unknown: bool
    accept_changes: bool
    yes: bool = False
    strict: bool = False


def _send(settings: Settings, audience: Audience, request: _SendRequest) -> Outcome | None:
    """Find or start the campaign, check it, and run it with progress on screen; ``None``
    when there was nothing to run (finished already, or the question was answered no)."""
    import asyncio

    from mailer.campaign import (
        Postmark,
        count_needing_smtputf8,
        find_digest_campaign,
        open_digest_campaign,
        run_campaign,
    )
    from mailer.cli.progress import SendDisplay
    from mailer.delivery import Delivery
    from mailer.ledger import Ledger
    from mailer.pipeline import check_media_reachable, prepare_digest
    from mailer.subscribers import list_name
    from mailer.transports.smtp import SMTPTransport

    transport = SMTPTransport(settings.smtp_config())
    policy = settings.delivery_policy()
    with Ledger.open(settings.ledger, wait=2.0, lease=settings.ledger_lease) as ledger:
        if ledger.recovered:
            print(
                f"The last run stopped abruptly: {ledger.recovered} message(s) whose outcome "
                "was never recorded are now 'unknown' (see `mailer status --list unknown`)."
            )
        options = request.options
        postmark = Postmark.from_settings(settings)  # a broken DKIM key stops us before anything
        target = find_digest_campaign(
            ledger,
            audience.list_path,
            issue_date=options.issue_date,
            days=options.days,
            date_given=request.date_given,
            name=options.campaign,
            legacy_name=f"{settings.newsletter_name} {options.issue_date.isoformat()}",
        )
        existing = target.existing
        if existing is not None and existing.finished_at is not None:
            _already_sent(ledger, existing)
            return None
        prepared = prepare_digest(
            settings,
            dataclasses.replace(options, issue_date=target.issue_date, campaign=target.name),
            fields=existing.fields if existing else None,
            cutoff=existing.cutoff if existing else None,
            on_skip=skipped_article,
        )
        # Before anything is recorded or sent: no reader gets an image they cannot load.
        check_media_reachable(prepared.digest.articles, settings)
        if target.resumed_open_issue:
            print(
                f"Resuming the unfinished issue of {target.issue_date} to "
                f"{list_name(audience.list_path)} (campaign {target.name!r}); give --date to "
                "start another issue."
            )
        elif existing is not None:
            print(f"Resuming campaign {target.name!r} ({existing.frozen_count} recipients).")
        if not request.yes:
            count = _to_send(ledger, existing, audience, request)
            subject = prepared.digest.subject
            if not _confirmed(subject, count, list_name(audience.list_path)):
                return None
        campaign = open_digest_campaign(
            ledger, target, prepared, audience, accept_changes=request.accept_changes
        )
        if campaign.finished_at is not None:
            _already_sent(ledger, campaign)
            return None
        _warn_smtputf8(count_needing_smtputf8(ledger, campaign), transport)
        display = SendDisplay()

        def starting(engine: Delivery, planned: int) -> None:
            rate = f", at most {policy.rate:g}/s" if policy.rate else ""
            print(
                f"Sending {prepared.digest.subject!r} to {plural(planned, 'recipient')} via "
                f"{transport.config.where} ({policy.concurrency} connections{rate})",
                flush=True,
            )
            display.start(engine, planned)

        async def run() -> Outcome:
            try:
                return await run_campaign(
                    ledger,
                    campaign,
                    transport,
                    policy,
                    prepared.composer.compose,
                    suppression=audience.suppression,
                    resend_unknown=request.resend_unknown,
                    limit=request.limit,
                    postmark=postmark,
                    on_start=starting,
                    on_result=display.result,
                )
            finally:
                display.close()

        return asyncio.run(run())


def _already_sent(ledger: Ledger, campaign: Campaign) -> None:
    """A finished campaign run again: what it did, instead of a table of zeros."""
    from mailer.ledger import State

    counts = ledger.counts(campaign)
    done = ", ".join(
        f"{counts[state]:,} {state.value}"
        for state in (State.SENT, State.FAILED, State.UNKNOWN, State.SKIPPED)
        if counts.get(state)
    )
    tried = counts.get(State.FAILED, 0) + counts.get(State.UNKNOWN, 0)
    print(
        f"Campaign {campaign.name!r} is finished; nothing to send: "
        + ("everyone was already tried" if tried else "it was already sent to everyone")
        + f" ({done or 'nobody'}). Give --date for another issue."
    )


def _to_send(
    ledger: Ledger, existing: Campaign | None, audience: Audience, request: _SendRequest
) -> int:
    """How many recipients this run would mail: the rest of a campaign being resumed, or
    the mailable rows of the list (read once more, quietly) for a new one."""
    from mailer.campaign import Audience
    from mailer.ledger import State

    if existing is not None:
        counts = ledger.counts(existing)
        states = [State.PENDING, State.DEFERRED]
        if request.resend_unknown:
            states.append(State.UNKNOWN)
        count = sum(counts.get(state, 0) for state in states)
    else:
        quiet = Audience(
            audience.list_path, audience.suppression, strict=request.strict, on_problem=_ignore
        )
        count = sum(1 for _ in quiet.mailable())
    return min(count, request.limit) if request.limit is not None else count


def _ignore(problem: RowProblem) -> None:
    """Invalid rows are reported once, when the audience is frozen."""


def _confirmed(subject: str, count: int, list_label: str) -> bool:
    """More than one recipient: on a terminal, ask; without one, --yes is needed."""
    if count <= 1:
        return True
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise InputError(
            f"--send to {plural(count, 'recipient')} without a terminal to confirm on: add --yes",
            hint="nothing was sent; --yes sends without asking",
        )
    # Not input(): with readline, its prompt goes to stderr.
    print(f"Send {subject!r} to {plural(count, 'recipient')} of {list_label}? [y/N] ", end="")
    sys.stdout.flush()
    answer = sys.stdin.readline()  # "" at the end of input: no
    if answer.strip().lower() in ("y", "yes"):
        return True
    print("Nothing sent.")
    return False


def _report_campaign(outcome: Outcome) -> int:
    """The lines after a send's summary, and its exit code."""
    if outcome.bounces_suppressed:
        added = plural(outcome.bounces_suppressed, "hard-bounced address", "hard-bounced addresses")
        print(f"Added {added} to suppression.")
    if outcome.unknown:
        print(
            f"{outcome.unknown} recipient(s) of this campaign are 'unknown': the server may "
            "have accepted them. `mailer status --list unknown` lists them; add "
            "--resend-unknown to send them again."
        )
    if outcome.stopped or outcome.left:
        print(f"{outcome.left} recipient(s) still to send: run the same command again to resume.")
    return exit_code(outcome)


def _preview(
    settings: Settings, options: DigestOptions, rows: _RowReport, *, strict: bool, limit: int | None
) -> int:
    """The dry run: the same audience a new campaign would freeze, written as files."""
    import asyncio
    import itertools

    from mailer.campaign import Audience, write_previews
    from mailer.ledger.suppression import open_suppression
    from mailer.pipeline import prepare_digest, preview_media

    prepared = prepare_digest(settings, options, on_skip=skipped_article)
    suppression = open_suppression(settings)
    audience = Audience(prepared.list_path, suppression, strict=strict, on_problem=rows.invalid)
    recipients = itertools.islice(audience.mailable(), limit)
    first = next(recipients, None)
    if first is None:
        raise InputError(f"{prepared.list_path}: no valid recipients; nothing to write")
    folder = settings.previews_dir / f"digest-{options.issue_date.isoformat()}"
    html, text = prepared.composer.preview_documents(first, prepared.rendered)
    messages = (
        prepared.composer.compose(recipient, index)
        for index, recipient in enumerate(itertools.chain([first], recipients), 1)
    )
    extras: dict[str, str | bytes] = {"digest.html": html, "digest.txt": text}
    if not settings.public_url:  # the HTML shows local images from media/ beside it
        extras.update(preview_media(prepared.digest.articles, settings.articles_dir))
    written = asyncio.run(write_previews(folder, messages, extras=extras))
    articles = len(prepared.digest.articles)
    print(
        f"Wrote {plural(written, 'message')} for {prepared.digest.subject!r} "
        f"({articles} articles) to {folder}/"
    )
    print(f"Open {folder / 'digest.html'} in a browser, or any .eml file in a mail client.")
    rows.report(suppressed=audience.suppressed)
    return 0


class _RowReport:
    """List rows left out of a run: invalid ones (warned as they are met), and a count."""

    def __init__(self) -> None:
        self.count = 0

    def invalid(self, problem: RowProblem) -> None:
        self.count += 1
        err(f"warning: skipped {problem}")

    def report(self, *, suppressed: int) -> None:
        if self.count:
            print(f"Skipped {plural(self.count, 'invalid list row')}.")
        if suppressed:
            print(f"Skipped {plural(suppressed, 'suppressed address', 'suppressed addresses')}.")


def _warn_smtputf8(count: int, transport: SMTPTransport) -> None:
    if not count:
        return
    import asyncio

    info = asyncio.run(transport.probe())
    if "smtputf8" not in info.extensions:
        print(
            f"{count} recipient(s) have an address whose local part is not ASCII; "
            f"{transport.config.where} does not offer SMTPUTF8, so they will be failed "
            "without being tried (`mailer status --list failed`)."
        )


@reports_errors
def check(
    list_: Annotated[
        str | None,
        typer.Option(
            "--list",
            metavar="NAME",
            help="Also check that this list can go through the relay (addresses that need "
            "SMTPUTF8).",
        ),
    ] = None,
) -> None:
    """Connect to the SMTP relay: EHLO, STARTTLS, AUTH, and report; nothing is sent."""
    import asyncio

    from mailer.settings import load_settings
    from mailer.subscribers import read_list, resolve_list
    from mailer.transports.smtp import SMTPTransport, needs_smtputf8

    settings = load_settings()
    transport = SMTPTransport(settings.smtp_config())
    needs = 0
    if list_ is not None:
        path = resolve_list(list_, settings.lists_dir)
        needs = sum(1 for r in read_list(path) if needs_smtputf8(r.email))
    info = asyncio.run(transport.probe())
    print(f"Server:        {transport.config.where}")
    print(f"Banner:        {info.banner}")
    print(f"Security:      {settings.smtp_security}" + (f" ({info.tls})" if info.tls else ""))
    print(f"Authenticated: {info.authenticated_as or 'no (no MAILER_SMTP_USERNAME set)'}")
    extensions = ", ".join(
        f"{name.upper()} {value}".strip() for name, value in sorted(info.extensions.items())
    )
    print(f"Extensions:    {extensions}")
    signer = settings.dkim_signer()
    if signer is not None:
        from mailer.dkim import self_check

        self_check(signer)
        keys = ", ".join(f"{key.selector} ({key.kind})" for key in signer.keys)
        print(f"DKIM:          d={signer.domain}, {keys}: a test signature verifies with dkimpy")
    if settings.bounce_address:
        print(f"Return path:   {settings.bounce_address} with a VERP tag per recipient")
    if list_ is not None:
        if needs and "smtputf8" not in info.extensions:
            print(
                f"List:          {needs} address(es) of {list_} have a non-ASCII local part "
                "and need SMTPUTF8, which this relay does not offer: they would be failed."
            )
        else:
            print(f"List:          every address of {list_} can go through this relay.")
    print("OK: ready to send.")
