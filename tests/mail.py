"""Reading messages back in tests: parse bytes, one body part as text, raw header lines."""

from __future__ import annotations

import email
import email.header
from email import policy
from email.message import EmailMessage

from mailer.headers import MAX_LINE


def parsed(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def body(msg: EmailMessage, kind: str) -> str:
    """The ``plain`` or ``html`` part, with LF line endings."""
    part = msg.get_body(preferencelist=(kind,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def raw_header(data: bytes, name: str) -> str:
    """The value of header ``name`` as sent (unfolded, not decoded)."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    unfolded = head.replace("\r\n ", " ").replace("\r\n\t", " ")
    for line in unfolded.split("\r\n"):
        if line.lower().startswith(name.lower() + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {name} header")


def decoded_display_name(raw_to: str) -> str:
    """RFC 2047 decoding of the phrase (whitespace between encoded words is dropped)."""
    phrase = raw_to.rsplit("<", 1)[0]
    return str(email.header.make_header(email.header.decode_header(phrase))).strip()


def long_lines(data: bytes, limit: int = MAX_LINE) -> list[int]:
    """Line numbers (1-based) longer than ``limit`` octets, excluding the CRLF."""
    return [n for n, line in enumerate(data.split(b"\r\n"), 1) if len(line) > limit]
