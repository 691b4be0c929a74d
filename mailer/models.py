"""Frozen value objects that flow one way: Article → Digest → Rendered → Outgoing → SendResult."""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Article:
    """One article file, parsed.

    ``published`` is the instant (timezone-aware, UTC) the digest compares and orders by;
    ``date`` is that instant's day in the newsletter's zone, for templates. A date without
    a time (``date_only``) means that whole day in the newsletter's zone, and ``published``
    is its first instant (midnight there).
    """

    slug: str
    title: str
    date: dt.date
    url: str | None  # None: no link of its own (see the archive page, or the full text)
    summary: str
    body_html: str
    body_text: str
    source: Path
    published: dt.datetime
    author: str | None = None
    tags: tuple[str, ...] = ()
    image: str | None = None
    image_alt: str | None = None  # the image's text for readers who cannot see it
    date_from_mtime: bool = False
    date_only: bool = False


@dataclass(frozen=True, slots=True)
class Digest:
    """The articles of one issue, newest first, and its subject."""

    newsletter: str
    issue_date: dt.date
    subject: str
    articles: tuple[Article, ...]


@dataclass(frozen=True, slots=True)
class Recipient:
    """One subscriber: a normalised address, a display name, and any extra CSV columns."""

    email: str
    name: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)
    line: int = 0  # line in the list file, for messages


class Status(enum.StrEnum):
    """What one run did for one recipient. (The ledger's ``State`` is where a recipient's
    row stands across runs: it adds ``pending`` and ``sending``, and maps ``unsent`` back
    to ``pending``.)"""

    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    UNKNOWN = "unknown"
    SKIPPED = "skipped"  # not sent on purpose (suppressed since the campaign started)
    UNSENT = "unsent"  # not sent because the run stopped: the relay refused *us*; retryable


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One ready-to-send message: envelope plus RFC 5322 bytes with CRLF line endings."""

    index: int
    recipient: Recipient
    sender: str
    message_id: str
    data: bytes


@dataclass(frozen=True, slots=True)
class SendResult:
    """What happened to one recipient."""

    index: int
    email: str
    message_id: str
    status: Status
    code: int | None = None
    reply: str = ""
    attempts: int = 1
    hard_bounce: bool = False  # failed with 5.1.x at RCPT: the address does not exist


@dataclass(frozen=True, slots=True)
class Spliced:
    """A document rendered once, with holes for personal fields.

    ``literals`` has one more item than ``slots``; the document is
    ``literals[0] + value(slots[0]) + literals[1] + ...``.
    """

    literals: tuple[str, ...]
    slots: tuple[str, ...]

    def fill(self, values: Mapping[str, str]) -> str:
        out = [self.literals[0]]
        for slot, literal in zip(self.slots, self.literals[1:], strict=True):
            out.append(values[slot])
            out.append(literal)
        return "".join(out)


@dataclass(frozen=True, slots=True)
class Rendered:
    """An issue rendered and CSS-inlined once: HTML and text with personal-field holes."""

    subject: str
    html: Spliced
    text: Spliced


@dataclass(frozen=True)
class SMTPConfig:
    """How to reach the relay; ``password`` is only ever passed to AUTH, never shown."""

    host: str
    port: int
    security: str = "starttls"  # starttls | tls | none
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None
    timeout: float = 30.0
    helo_name: str | None = None
    allow_plaintext: bool = False  # "none" security on a host that is not loopback
    loopback: bool = False
    fast_data: bool = True  # write the message body directly (see transports.smtp)

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class DeliveryPolicy:
    """How the delivery engine sends: connections, rate, retries, when to halt."""

    concurrency: int = 8
    rate: float | None = None  # messages per second across all connections
    max_attempts: int = 4
    retry_base_delay: float = 1.0
    retry_max_delay: float = 300.0
    messages_per_connection: int = 1000
    policy_halt_after: int = 20
