"""Delivery: push a stream of messages through a transport, one result per recipient."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable

from mailer.models import Outgoing, SendResult, Status
from mailer.transports.base import ChannelBroken, Transport


async def deliver(transport: Transport, messages: Iterable[Outgoing]) -> AsyncIterator[SendResult]:
    """Send every message in order on one channel; the transport is finished either way."""
    complete = False
    try:
        channel = await transport.open_channel()
        try:
            for message in messages:
                try:
                    reply = await channel.send(message)
                except ChannelBroken as exc:
                    reply = exc.reply
                status = (
                    Status.SENT
                    if reply.ok
                    else (Status.FAILED if reply.permanent else Status.DEFERRED)
                )
                yield SendResult(
                    index=message.index,
                    email=message.recipient.email,
                    message_id=message.message_id,
                    status=status,
                    code=reply.code,
                    reply=reply.text,
                )
        finally:
            await channel.close()
        complete = True
    finally:
        await transport.finish(complete=complete)
