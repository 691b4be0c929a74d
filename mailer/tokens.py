"""Signed per-recipient tokens: HMAC-SHA256 over a purpose, the list and the address, URL-safe.

A token is signed for one purpose (``unsubscribe`` or ``forward``): one made for a purpose
never verifies for another, so a forward link cannot unsubscribe anyone and an unsubscribe
link cannot send mail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Literal

from mailer.errors import TokenError
from mailer.headers import normalise_email

Purpose = Literal["unsubscribe", "forward", "resubscribe"]
_CONTEXTS: dict[str, bytes] = {
    "unsubscribe": b"mailer-unsubscribe-v1\x00",
    "forward": b"mailer-forward-v1\x00",
    # Shown only on the page a one-click unsubscribe answers with, scoped to that very
    # suppression (its date): never in a message, so an old message cannot undo anything.
    "resubscribe": b"mailer-resubscribe-v1\x00",
}
_MAX_TOKEN = 2048
_MAC_BYTES = hashlib.sha256().digest_size

# The payload is bounded, so every token fits in a List-Unsubscribe line (998 octets).
MAX_LIST_NAME_OCTETS = 64  # a list's name is its file name without ".csv"
MAX_ADDRESS_OCTETS = 254  # RFC 5321, as email-validator enforces on the normalised address
# The payload holds the address lower-cased, and lower-casing can make UTF-8 text longer, by
# at most half ("İ", 2 octets, becomes "i̇", 3); tests check this against the Unicode data.
MAX_LOWERED_ADDRESS_OCTETS = MAX_ADDRESS_OCTETS * 3 // 2
MAX_PAYLOAD_OCTETS = MAX_LIST_NAME_OCTETS + 1 + MAX_LOWERED_ADDRESS_OCTETS
# Unpadded URL-safe base64 only: the standard decoder skips stray characters, which would
# let many different strings pass as one token.
_B64_RE = re.compile(r"[A-Za-z0-9_-]+")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64_length(octets: int) -> int:
    """Characters of unpadded base64 for ``octets`` bytes."""
    return (octets * 4 + 2) // 3


# The longest token ``make_token`` can return: settings use it to refuse an unsubscribe URL
# that could not carry one within a header line.
MAX_TOKEN_CHARS = _b64_length(MAX_PAYLOAD_OCTETS) + 1 + _b64_length(_MAC_BYTES)


def _unb64(text: str) -> bytes:
    if not _B64_RE.fullmatch(text):
        raise ValueError("not unpadded URL-safe base64")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:  # unused low bits set: another spelling of the same bytes
        raise ValueError("not canonical base64")
    return data


def _mac(secret: str, payload: bytes, purpose: Purpose, scope: str = "") -> bytes:
    if not secret:
        raise TokenError("no secret key: set MAILER_SECRET_KEY to sign unsubscribe tokens")
    context = _CONTEXTS[purpose] + scope.encode() + b"\x00" if scope else _CONTEXTS[purpose]
    return hmac.new(secret.encode(), context + payload, hashlib.sha256).digest()


def make_token(
    secret: str, list_name: str, email: str, *, purpose: Purpose = "unsubscribe", scope: str = ""
) -> str:
    """``<payload>.<mac>``: the payload names list and address so the token alone suffices.

    At most ``MAX_TOKEN_CHARS`` long: a list name over ``MAX_LIST_NAME_OCTETS`` or an
    address over ``MAX_ADDRESS_OCTETS`` (UTF-8) is a ``TokenError``.
    """
    if "\n" in list_name:
        raise TokenError("a list name cannot contain a line break")
    if len(list_name.encode()) > MAX_LIST_NAME_OCTETS:
        raise TokenError(f"a list name is at most {MAX_LIST_NAME_OCTETS} bytes long")
    address = email.lower().encode()
    if len(email.encode()) > MAX_ADDRESS_OCTETS or len(address) > MAX_LOWERED_ADDRESS_OCTETS:
        raise TokenError(f"an e-mail address is at most {MAX_ADDRESS_OCTETS} bytes long")
    payload = list_name.encode() + b"\n" + address
    return f"{_b64(payload)}.{_b64(_mac(secret, payload, purpose, scope))}"


def verify_token(
    secret: str, token: str, *, purpose: Purpose = "unsubscribe", scope: str = ""
) -> tuple[str, str]:
    """Return ``(list_name, email)`` for a genuine token; raise ``TokenError`` otherwise.

    The MAC covers list and address, so a token cannot be forged, altered, or moved to
    another address or list; the comparison takes constant time.
    """
    token = token.strip()
    if len(token) > _MAX_TOKEN or token.count(".") != 1:
        raise TokenError(f"{purpose} token is malformed")
    payload_b64, mac_b64 = token.split(".")
    try:
        payload = _unb64(payload_b64)
        mac = _unb64(mac_b64)
    except (ValueError, TypeError):
        raise TokenError(f"{purpose} token is malformed") from None
    expected = _mac(secret, payload, purpose, scope)
    if len(mac) != _MAC_BYTES or not hmac.compare_digest(mac, expected):
        raise TokenError(f"{purpose} token is not valid (forged, altered or for another key)")
    try:
        list_name, email = payload.decode("utf-8").split("\n")
    except (UnicodeDecodeError, ValueError):
        raise TokenError(f"{purpose} token is malformed") from None
    if not email:
        raise TokenError(f"{purpose} token is malformed")
    return list_name, email


def token_payload(token: str) -> tuple[str, str] | None:
    """``(list_name, email)`` as a token's payload says, WITHOUT checking its MAC: only to
    find what a check then needs (a resubscribe token's scope); never trust it alone."""
    payload_b64 = token.strip().partition(".")[0]
    try:
        list_name, email = _unb64(payload_b64).decode("utf-8").split("\n")
    except (ValueError, UnicodeDecodeError):
        return None
    return list_name, email


def token_address(
    secret: str, token: str, *, purpose: Purpose = "unsubscribe", scope: str = ""
) -> tuple[str, str]:
    """``(list name, normalised address)`` of a genuine token; ``TokenError`` otherwise."""
    list_name, email = verify_token(secret, token, purpose=purpose, scope=scope)
    try:
        return list_name, normalise_email(email)
    except ValueError:
        raise TokenError(f"{purpose} token is malformed") from None
