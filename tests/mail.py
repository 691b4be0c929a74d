"""Reading messages back in tests: parse bytes, and get one body part as text."""

from __future__ import annotations

import email
from email import policy
from email.message import EmailMessage


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
