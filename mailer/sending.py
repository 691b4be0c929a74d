"""A ledger-backed send: the frozen audience of a campaign → messages → the delivery engine.

The ledger is the source of truth. Recipients come from ``Ledger.to_send`` (pending and
deferred rows, unknown ones only when asked), each message is marked ``sending`` durably
before its data can go out, and each outcome is recorded by the worker that produced it,
so a crash at any point leaves at most ``concurrency`` rows whose fate is unknown.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from mailer.delivery import Delivery, DeliveryPolicy
from mailer.ledger import Campaign, Ledger, State
from mailer.models import Outgoing, Recipient, SendResult
from mailer.transports.base import Transport

Compose = Callable[[Recipient, int], Outgoing]


@dataclass
class CampaignRun:
    """One run of a campaign: the engine to drive, and what was skipped on the way."""

    engine: Delivery
    campaign: Campaign
    suppressed: list[str] = field(default_factory=list)
    planned: int = 0  # rows this run may attempt (an upper bound, for progress)


def campaign_delivery(
    ledger: Ledger,
    campaign: Campaign,
    transport: Transport,
    policy: DeliveryPolicy,
    compose: Compose,
    *,
    resend_unknown: bool = False,
    limit: int | None = None,
    skip: Callable[[str], bool] | None = None,
) -> CampaignRun:
    """Wire the ledger into a delivery engine for the rows of ``campaign`` still to send.

    ``skip`` (the suppression list) is checked again at send time: someone who
    unsubscribed after the campaign started is not mailed.
    """
    counts = ledger.counts(campaign)
    planned = counts[State.PENDING] + counts[State.DEFERRED]
    if resend_unknown:
        planned += counts[State.UNKNOWN]
    if limit is not None:
        planned = min(planned, limit)
    run_suppressed: list[str] = []

    def recipients() -> Iterator[Recipient]:
        for recipient in ledger.to_send(campaign, resend_unknown=resend_unknown):
            if skip is not None and skip(recipient.email.lower()):
                run_suppressed.append(recipient.email)
                continue
            yield recipient

    stream = recipients()
    if limit is not None:
        stream = itertools.islice(stream, limit)
    messages = (compose(recipient, index) for index, recipient in enumerate(stream, 1))

    def mark(message: Outgoing, attempt: int) -> Awaitable[None]:
        # Queued now; awaited by the channel before DATA (not a coroutine: a message whose
        # envelope is refused never awaits it).
        return ledger.mark_sending(campaign, message.recipient.email, message.message_id)

    def record(result: SendResult) -> None:
        ledger.record(campaign, result)

    engine = Delivery(transport, messages, policy, before_send=mark, after_send=record)
    return CampaignRun(engine, campaign, run_suppressed, planned)


def settle_campaign(ledger: Ledger, campaign: Campaign) -> dict[State, int]:
    """After a run (the ledger flushed): mark the campaign finished when nothing is left."""
    counts = ledger.counts(campaign)
    if counts[State.PENDING] == 0 and counts[State.DEFERRED] == 0 and counts[State.SENDING] == 0:
        ledger.finish(campaign)
    return counts
