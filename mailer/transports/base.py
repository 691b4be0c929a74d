"""The transport protocol: a transport opens channels; a channel sends one message at a time."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol

from mailer.errors import TransportError
from mailer.models import Outgoing


@dataclass(frozen=True, slots=True)
class Reply:
    """The server's answer for one recipient. ``code`` 0 means no answer (connection lost).

    ``stage`` says which command it answered: ``mail`` (MAIL FROM: about us, never the
    recipient), ``rcpt``, ``data`` (the DATA command), ``message`` (after the final dot),
    ``local`` (refused before asking the relay: it cannot go through it), or ``""`` where
    that does not apply (previews, a connection lost).
    """

    code: int
    text: str = ""
    stage: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600

    @property
    def enhanced(self) -> str:
        """The RFC 3463 enhanced status code (``5.1.1``), or ``""``."""
        first = self.text.split(" ", 1)[0]
        parts = first.split(".")
        if len(parts) == 3 and all(p.isdigit() for p in parts):
            return first
        return ""

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


class ChannelBroken(TransportError):
    """The channel died mid-message (dropped connection, timeout). ``data_sent`` tells whether
    the message's data may have reached the server, so that it must count as unknown."""

    def __init__(self, reply: Reply, *, data_sent: bool = False) -> None:
        super().__init__(str(reply))
        self.reply = reply
        self.data_sent = data_sent


class Channel(Protocol):
    """One connection (or one preview writer). Not shared between tasks."""

    async def send(self, message: Outgoing, ready: Awaitable[None] | None = None) -> Reply:
        """Deliver one message; a refusal is a ``Reply``, a broken channel ``ChannelBroken``.

        ``ready``, if given, is awaited once the envelope and the DATA command are accepted,
        before any of the message's data can go out (the ledger's durable "sending" mark).
        If it raises, the channel abandons the message (an SMTP channel by closing its
        connection, which makes the server discard it) and lets the error propagate.
        """
        ...

    async def close(self) -> None: ...


class Transport(Protocol):
    """A source of channels. ``open_channel`` raises ``DeliveryError`` when the run cannot go
    on at all (authentication, TLS, unreachable server)."""

    async def open_channel(self) -> Channel: ...

    async def finish(self, *, complete: bool) -> None:
        """Called once at the end; ``complete`` is False when the run was aborted."""
        ...
