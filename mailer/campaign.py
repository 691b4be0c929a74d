"""The send use case: freeze or resume a campaign's audience, deliver it, settle the ledger.

Every command that sends (a digest, a forward, the web form) goes through ``run_campaign``,
so all of them keep the same promises:

- the ledger is the source of truth: recipients come from the campaign's frozen rows, each
  message is marked ``sending`` durably before its body goes out, and each outcome is
  recorded by the worker that produced it, so a crash leaves at most ``concurrency`` rows
  ``unknown``;
- the suppression file is asked again just before each message goes out, so an unsubscribe
  that arrives during a send is honoured by it; such a row ends ``skipped``, which is final;
- a refusal about us stops the run and fails no one; only a refusal of the recipient's
  address (5.1.x at RCPT) is a hard bounce, and hard bounces are suppressed by one rule.

Nothing here prints or reads settings: the caller gets what happened as data.
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from mailer.archive import Store, issue_of
from mailer.delivery import Delivery
from mailer.errors import EmptyAudience, InputError
from mailer.ledger import OPEN_STATES, Campaign, Ledger, State
from mailer.models import DeliveryPolicy, Outgoing, Recipient, SendResult, Status
from mailer.pipeline import PreparedIssue, campaign_name
from mailer.subscribers import LIST_HINT, RowProblem, read_list
from mailer.suppression_list import Reason, SuppressionList
from mailer.transports.base import Transport
from mailer.transports.files import FilesTransport
from mailer.transports.smtp import needs_smtputf8
from mailer.verp import ReturnPaths

if TYPE_CHECKING:
    from mailer.dkim import Signer
    from mailer.settings import Settings

Compose = Callable[[Recipient, int], Outgoing]


@dataclass(frozen=True)
class Postmark:
    """What every message of a send gets on its way out, after it is composed: a VERP return
    path naming its campaign and recipient (``MAILER_BOUNCE_ADDRESS``), and its DKIM
    signatures (``MAILER_DKIM_*``). Previews are not stamped: they never travel."""

    signer: Signer | None = None
    return_paths: ReturnPaths | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Postmark:
        """Reads the DKIM keys (a broken key file is one ``ConfigError`` naming it)."""
        secret = settings.secret_key.get_secret_value()
        bounce = settings.bounce_address
        return cls(
            signer=settings.dkim_signer(),
            return_paths=ReturnPaths(bounce, secret) if bounce else None,
        )

    def stamp(self, campaign: Campaign, message: Outgoing) -> Outgoing:
        sender = message.sender
        if self.return_paths is not None:
            sender = self.return_paths(campaign.id, message.recipient.email)
        data = self.signer.sign(message.data) if self.signer is not None else message.data
        return replace(message, sender=sender, data=data)


HARD_BOUNCE_NOTE = "hard bounce (5.1.x) during delivery"
KEPT_FAILURES = 100  # failed, deferred and unknown results an outcome keeps, for display


# --- who an issue goes to ------------------------------------------------------------------


class Audience:
    """The valid rows of a list, told apart from the suppressed ones. A preview and a new
    campaign read the same rows, so that a preview shows what a send would do."""

    def __init__(
        self,
        list_path: Path,
        suppression: SuppressionList,
        *,
        strict: bool = False,
        on_problem: Callable[[RowProblem], None] | None = None,
    ) -> None:
        self.list_path = list_path
        self.suppression = suppression
        self._strict = strict
        self._on_problem = on_problem
        self.suppressed = 0

    def rows(self) -> Iterator[Recipient]:
        """Every valid, de-duplicated row, suppressed ones included (a campaign freezes
        those as ``skipped``)."""
        return read_list(self.list_path, strict=self._strict, on_problem=self._on_problem)

    def mailable(self) -> Iterator[Recipient]:
        """The rows a message would go to now (a preview)."""
        for recipient in self.rows():
            if self.suppression.is_suppressed(recipient.email):
                self.suppressed += 1
                continue
            yield recipient

    def reason(self, email: str) -> str | None:
        """Why ``email`` is frozen as skipped, counting it; None if it is mailable."""
        why = self.suppression.reason(email)
        if why is not None:
            self.suppressed += 1
        return why


# --- which campaign a digest run continues -------------------------------------------------


@dataclass(frozen=True)
class DigestTarget:
    """The campaign a digest run is for: an existing one to resume, or a name to start."""

    name: str
    issue_date: dt.date
    existing: Campaign | None = None
    resumed_open_issue: bool = False  # found as an unfinished recent issue (no --date given)


def find_digest_campaign(
    ledger: Ledger,
    list_path: Path,
    *,
    issue_date: dt.date,
    days: int,
    date_given: bool,
    name: str | None = None,
    legacy_name: str | None = None,
) -> DigestTarget:
    """The campaign a ``digest --send`` continues, or the one it starts.

    A digest campaign is one issue to one list (``<list> <issue date>``). Without a date
    (and a name), an unfinished campaign to the same list whose issue overlaps today's
    (dated within the last ``days``, or tomorrow) is resumed rather than a new issue: a send
    stopped before midnight and resumed after it must not mail a second issue. A campaign
    an older mailer started (``legacy_name``) for the same list is resumed too. Raises
    ``InputError`` when the named campaign is of another kind, list or date.
    """
    where = Path(list_path).resolve()
    if name is None and not date_given:
        # Today's issue would repeat the articles of an issue dated in its window; a daily
        # issue (--days 1) still resumes yesterday's. A day ahead is allowed too: the clock
        # or the zone (TZ of another shell, a clock stepped back) may have moved back.
        since = issue_date - dt.timedelta(days=max(days, 2))
        until = issue_date + dt.timedelta(days=1)
        for candidate in ledger.unfinished(kind="digest", list_path=str(where)):
            if candidate.issue_date is not None and since < candidate.issue_date <= until:
                return DigestTarget(candidate.name, candidate.issue_date, candidate, True)
    chosen = name or campaign_name(list_path, issue_date)
    existing = ledger.campaign(chosen)
    if existing is None and name is None and legacy_name is not None:
        legacy = ledger.campaign(legacy_name)
        if (
            legacy is not None
            and legacy.kind == "digest"
            and legacy.finished_at is None
            and Path(legacy.list_path).resolve() == where
        ):
            existing, chosen = legacy, legacy.name
    if existing is None:
        return DigestTarget(chosen, issue_date)
    if existing.kind != "digest":
        raise InputError(f"campaign {chosen!r} is a {existing.kind} campaign, not a digest")
    if existing.list_path and Path(existing.list_path).resolve() != where:
        raise InputError(
            f"campaign {chosen!r} was started for the list {existing.list_path}, not {list_path}",
            hint="a campaign is one issue to one list; give --campaign NAME for another",
        )
    if existing.issue_date is not None and date_given and existing.issue_date != issue_date:
        raise InputError(
            f"campaign {chosen!r} is the issue of {existing.issue_date}, not {issue_date}",
            hint="give --campaign NAME for a separate campaign",
        )
    return DigestTarget(chosen, existing.issue_date or issue_date, existing)


def open_digest_campaign(
    ledger: Ledger,
    target: DigestTarget,
    prepared: PreparedIssue,
    audience: Audience,
    *,
    accept_changes: bool = False,
) -> Campaign:
    """Freeze a new campaign's audience, or check that a resume sends the issue it started;
    then keep the issue in the archive (``prepared.archive_dir``), before its first message
    goes out, so that the "View in browser" link works at once.

    ``InputError`` for an audience with nobody to send to (nothing is frozen), or for a
    resume whose issue changed since (articles, templates, subject, sender settings) unless
    ``accept_changes``.
    """
    campaign = _open_digest_campaign(
        ledger, target, prepared, audience, accept_changes=accept_changes
    )
    if campaign.finished_at is None and prepared.archive_dir is not None:
        # A preview is not archived: only what is sent is published.
        Store(prepared.archive_dir).save(issue_of(prepared.digest))
    return campaign


def _open_digest_campaign(
    ledger: Ledger,
    target: DigestTarget,
    prepared: PreparedIssue,
    audience: Audience,
    *,
    accept_changes: bool,
) -> Campaign:
    existing = target.existing
    if existing is None:
        if not audience.list_path.is_file():
            raise InputError(f"{audience.list_path}: list not found", hint=LIST_HINT)
        try:
            return ledger.start_campaign(
                target.name,
                kind="digest",
                list_path=str(audience.list_path.resolve()),
                subject=prepared.digest.subject,
                recipients=audience.rows(),
                skip=audience.reason,
                issue_date=target.issue_date,
                cutoff=prepared.cutoff,
                fingerprint=prepared.fingerprint,
                fields=prepared.fields,
            )
        except EmptyAudience:
            suppressed = f" ({audience.suppressed} suppressed)" if audience.suppressed else ""
            raise InputError(
                f"{audience.list_path}: no valid recipients{suppressed}; nothing to send"
            ) from None
    if not existing.fingerprint or existing.fingerprint == prepared.fingerprint:
        return existing
    if not accept_changes:
        raise InputError(
            f"campaign {existing.name!r} was started with a different issue: its articles, "
            "templates, subject or sender settings have changed since",
            hint="put them back as they were to resume it, or add --accept-changes to send "
            "the rest of its audience the issue as it is now",
        )
    return ledger.accept_changes(
        existing, fingerprint=prepared.fingerprint, subject=prepared.digest.subject
    )


def check_campaign_name(name: str) -> str:
    """A campaign name is one printable line of at most 200 characters."""
    if not name.strip() or len(name) > 200 or not name.isprintable():
        raise InputError(
            "--campaign: use one line of at most 200 printable characters "
            f"({name[:40]!r}{'…' if len(name) > 40 else ''})"
        )
    return name


def count_needing_smtputf8(ledger: Ledger, campaign: Campaign) -> int:
    """Recipients still to send whose address has a non-ASCII local part."""
    return sum(
        1
        for state in (State.PENDING, State.DEFERRED)
        for address in ledger.addresses(campaign, state)
        if needs_smtputf8(address)
    )


# --- one run of a campaign -----------------------------------------------------------------


@dataclass
class Outcome:
    """What one run of a campaign did, and where the campaign stands after it."""

    campaign: Campaign
    results: Counter[Status] = field(default_factory=Counter)  # this run, per outcome
    failures: list[SendResult] = field(default_factory=list)  # failed, deferred, unknown
    counts: dict[State, int] = field(default_factory=dict)  # the campaign after the run
    bounces_suppressed: int = 0
    stopped: bool = False  # stopped before the end (a signal); the rest stays to send
    hard_bounces: list[str] = field(default_factory=list)  # this run's 5.1.x RCPT refusals
    abandoned: int = 0  # in flight when the run was abandoned: now unknown
    planned: int = 0
    elapsed: float = 0.0

    @property
    def left(self) -> int:
        """Rows a later run will still send (pending or deferred)."""
        return self.counts.get(State.PENDING, 0) + self.counts.get(State.DEFERRED, 0)

    @property
    def unknown(self) -> int:
        return self.counts.get(State.UNKNOWN, 0)

    @property
    def not_sent(self) -> int:
        """Of this run: never tried, or refused before the body because of us (pending)."""
        return self.results[Status.UNSENT]

    def add(self, result: SendResult) -> None:
        self.results[result.status] += 1
        if result.status is Status.FAILED and result.hard_bounce:
            self.hard_bounces.append(result.email)
        bad = (Status.FAILED, Status.DEFERRED, Status.UNKNOWN)
        if result.status in bad and len(self.failures) < KEPT_FAILURES:
            self.failures.append(result)


async def run_campaign(
    ledger: Ledger,
    campaign: Campaign,
    transport: Transport,
    policy: DeliveryPolicy,
    compose: Compose,
    *,
    suppression: SuppressionList,
    resend_unknown: bool = False,
    limit: int | None = None,
    postmark: Postmark | None = None,
    on_start: Callable[[Delivery, int], None] | None = None,
    on_result: Callable[[SendResult], None] | None = None,
) -> Outcome:
    """Send the rows of ``campaign`` still to send, then settle it.

    ``on_start`` gets the engine (so a caller can ``stop()`` or ``abandon()`` it, e.g. on a
    signal) and how many rows this run may attempt; ``on_result`` gets every outcome as it
    comes. A ``DeliveryError`` (the relay refusing us, TLS, authentication) propagates after
    the ledger is flushed and settled.

    A permanent refusal counts against its recipient only with evidence that the relay
    takes our mail (a message it accepted after the refusal, in this run), or once the
    relay has refused that recipient ``policy.max_attempts`` times across runs.
    """
    counts = ledger.counts(campaign)
    planned = counts[State.PENDING] + counts[State.DEFERRED]
    planned += counts[State.UNKNOWN] if resend_unknown else 0
    planned = min(planned, limit) if limit is not None else planned
    outcome = Outcome(campaign, planned=planned)

    def record(result: SendResult) -> None:
        ledger.record(campaign, result)

    def mark(message: Outgoing, attempt: int) -> Awaitable[None]:
        # Queued now; awaited by the channel before the body.
        return ledger.mark_sending(campaign, message.recipient.email, message.message_id)

    twins = ledger.same_issue(campaign)  # nobody gets one issue twice, under any name

    def why_not(email: str) -> str | None:
        reason = suppression.reason(email)
        if reason is None and twins and (other := ledger.got_it_from(twins, email)):
            reason = f"already sent this issue by campaign {other.name!r}"
        return reason

    def recipients() -> Iterator[Recipient]:
        for recipient in ledger.to_send(campaign, resend_unknown=resend_unknown):
            reason = why_not(recipient.email)
            if reason is None:
                yield recipient
                continue
            skipped = SendResult(0, recipient.email, "", Status.SKIPPED, reply=reason)
            record(skipped)
            outcome.add(skipped)

    stream: Iterator[Recipient] = recipients()
    if limit is not None:
        stream = itertools.islice(stream, limit)
    messages = (compose(recipient, index) for index, recipient in enumerate(stream, 1))
    if postmark is not None and (postmark.signer or postmark.return_paths):
        messages = (postmark.stamp(campaign, message) for message in messages)
    engine = Delivery(
        transport,
        messages,
        policy,
        before_send=mark,
        after_send=record,
        skip=lambda message: suppression.reason(message.recipient.email),
    )
    if on_start is not None:
        on_start(engine, planned)
    started = time.monotonic()
    try:
        async for result in engine.run():
            outcome.add(result)
            if on_result is not None:
                on_result(result)
    finally:
        outcome.elapsed = time.monotonic() - started
        await ledger.flush()
        if engine.abandoned:
            ledger.recover(campaign)  # nothing is in flight now: 'sending' means unknown
        outcome.abandoned = engine.abandoned
        outcome.stopped = not engine.completed
        outcome.results[Status.UNSENT] += engine.unsent
        outcome.bounces_suppressed = settle(
            ledger,
            campaign,
            suppression,
            refusals=policy.max_attempts,
            bounced=outcome.hard_bounces,
        )
        outcome.counts = ledger.counts(campaign)
    return outcome


def settle(
    ledger: Ledger,
    campaign: Campaign,
    suppression: SuppressionList,
    *,
    refusals: int,
    bounced: Iterable[str] = (),
) -> int:
    """After a run: give up on rows refused ``refusals`` times across runs, suppress the hard
    bounces of this run (``bounced``, and those among the rows given up: 5.1.x at RCPT is
    the one rule), and mark the campaign finished when nothing is left to send. Returns how
    many addresses were newly suppressed. Earlier runs' bounces are not suppressed again:
    an address resubscribed since stays so."""
    given_up = ledger.give_up(campaign, refusals=refusals)
    reason: Reason = "bounced"
    bounces = [(email, reason) for email in bounced]
    bounces += [(email, reason) for email, hard in given_up if hard]
    added = suppression.add_many(bounces, note=HARD_BOUNCE_NOTE) if bounces else 0
    counts = ledger.counts(campaign)
    if not any(counts[state] for state in OPEN_STATES) and campaign.finished_at is None:
        ledger.finish(campaign)
    return added


# --- previews ------------------------------------------------------------------------------


async def write_previews(
    folder: Path, messages: Iterable[Outgoing], *, extras: Mapping[str, str | bytes]
) -> int:
    """Write each message as an ``.eml`` file (plus ``extras``) into ``folder``, atomically;
    returns how many were written. The same engine as a send, with the files transport."""
    written = 0
    async for result in _results(FilesTransport(folder, extras=extras), messages):
        written += result.status is Status.SENT
    return written


def _results(transport: Transport, messages: Iterable[Outgoing]) -> AsyncIterator[SendResult]:
    return Delivery(transport, messages, DeliveryPolicy()).run()


__all__ = [
    "Audience",
    "DigestTarget",
    "Outcome",
    "Postmark",
    "check_campaign_name",
    "count_needing_smtputf8",
    "find_digest_campaign",
    "open_digest_campaign",
    "run_campaign",
    "settle",
    "write_previews",
]
