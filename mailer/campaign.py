"""The send use case: freeze or resume a campaign's audience, deliver it, settle the ledger.

Every command that sends (a digest, a forward) goes through here, so that all of them keep
the same promises:

- the ledger is the source of truth: recipients come from the campaign's frozen rows
  (``pending`` and ``deferred``, ``unknown`` only when asked), each message is marked
  ``sending`` durably before its data can go out, and each outcome is recorded by the worker
  that produced it, so a crash leaves at most ``concurrency`` rows ``unknown``;
- the suppression file is asked again just before each message goes out, so an unsubscribe
  that arrives during a send is honoured by it (``Suppression.reason``); such a row ends
  ``skipped``, which is final, so the campaign can finish;
- a refusal about us (the sender, the session) stops the run and fails no one; only a
  refusal of the recipient's address (5.1.x) makes a hard bounce, which is suppressed.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from mailer.delivery import Delivery, DeliveryPolicy
from mailer.ledger import OPEN_STATES, Campaign, Ledger, State
from mailer.models import Outgoing, Recipient, SendResult, Status
from mailer.suppression import Reason, Suppression
from mailer.transports.base import Transport
from mailer.transports.smtp import needs_smtputf8

Compose = Callable[[Recipient, int], Outgoing]


@dataclass
class CampaignRun:
    """One run of a campaign: the engine to drive, and what was skipped on the way."""

    engine: Delivery
    campaign: Campaign
    skipped: list[str] = field(default_factory=list)  # suppressed before they were queued
    planned: int = 0  # rows this run may attempt (an upper bound, for progress)


@dataclass(frozen=True)
class Settled:
    """A campaign after a run: its rows per state, and the hard bounces suppressed."""

    counts: dict[State, int]
    bounces_suppressed: int

    @property
    def left(self) -> int:
        """Rows a later run will still send (pending or deferred)."""
        return self.counts[State.PENDING] + self.counts[State.DEFERRED]

    @property
    def finished(self) -> bool:
        return not any(self.counts[state] for state in OPEN_STATES)


def campaign_delivery(
    ledger: Ledger,
    campaign: Campaign,
    transport: Transport,
    policy: DeliveryPolicy,
    compose: Compose,
    *,
    suppression: Suppression,
    resend_unknown: bool = False,
    limit: int | None = None,
) -> CampaignRun:
    """Wire the ledger and the suppression list into a delivery engine for the rows of
    ``campaign`` still to send."""
    counts = ledger.counts(campaign)
    planned = counts[State.PENDING] + counts[State.DEFERRED]
    if resend_unknown:
        planned += counts[State.UNKNOWN]
    if limit is not None:
        planned = min(planned, limit)
    skipped: list[str] = []

    def recipients() -> Iterator[Recipient]:
        for recipient in ledger.to_send(campaign, resend_unknown=resend_unknown):
            reason = suppression.reason(recipient.email)
            if reason is None:
                yield recipient
                continue
            skipped.append(recipient.email)
            ledger.record(campaign, _skipped(recipient.email, reason))

    stream = recipients()
    if limit is not None:
        stream = itertools.islice(stream, limit)
    messages = (compose(recipient, index) for index, recipient in enumerate(stream, 1))

    def mark(message: Outgoing, attempt: int) -> Awaitable[None]:
        # Queued now; awaited by the channel before the body (not a coroutine: a message
        # whose envelope is refused never awaits it).
        return ledger.mark_sending(campaign, message.recipient.email, message.message_id)

    def record(result: SendResult) -> None:
        ledger.record(campaign, result)

    def skip(message: Outgoing) -> str | None:
        return suppression.reason(message.recipient.email)

    engine = Delivery(transport, messages, policy, before_send=mark, after_send=record, skip=skip)
    return CampaignRun(engine, campaign, skipped, planned)


def _skipped(email: str, reason: str) -> SendResult:
    return SendResult(index=0, email=email, message_id="", status=Status.SKIPPED, reply=reason)


def settle_campaign(
    ledger: Ledger, campaign: Campaign, *, suppression: Suppression, note: str
) -> Settled:
    """After a run (the ledger flushed): suppress its hard bounces, and mark the campaign
    finished when nothing is left to send."""
    bounced: Reason = "bounced"
    bounces = [(row.email, bounced) for row in ledger.hard_bounces(campaign)]
    added = suppression.add_many(bounces, note=note) if bounces else 0
    counts = ledger.counts(campaign)
    settled = Settled(counts, added)
    if settled.finished and campaign.finished_at is None:
        ledger.finish(campaign)
    return settled


def count_needing_smtputf8(ledger: Ledger, campaign: Campaign) -> int:
    """Recipients still to send whose address has a non-ASCII local part."""
    return sum(
        1
        for state in (State.PENDING, State.DEFERRED)
        for address in ledger.addresses(campaign, state)
        if needs_smtputf8(address)
    )
