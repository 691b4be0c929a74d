"""Signed unsubscribe tokens: HMAC-SHA256 over the list and the address, URL-safe."""

from __future__ import annotations

import base64
import hashlib
import hmac

from mailer.errors import TokenError

_CONTEXT = b"mailer-unsubscribe-v1\x00"
_MAX_TOKEN = 2048


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(secret: str, list_name: str, email: str) -> str:
    """``<payload>.<mac>``: the payload names list and address so the token alone suffices."""
    payload = f"{list_name}\n{email.lower()}".encode()
    mac = hmac.new(secret.encode(), _CONTEXT + payload, hashlib.sha256).digest()
    return f"{_b64(payload)}.{_b64(mac)}"


def verify_token(secret: str, token: str) -> tuple[str, str]:
    """Return ``(list_name, email)`` for a genuine token; raise ``TokenError`` otherwise."""
    token = token.strip()
    if len(token) > _MAX_TOKEN or token.count(".") != 1:
        raise TokenError("unsubscribe token is malformed")
    payload_b64, mac_b64 = token.split(".")
    try:
        payload = _unb64(payload_b64)
        mac = _unb64(mac_b64)
    except (ValueError, TypeError):
        raise TokenError("unsubscribe token is malformed") from None
    expected = hmac.new(secret.encode(), _CONTEXT + payload, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        raise TokenError("unsubscribe token is not valid (forged, altered or for another key)")
    try:
        list_name, email = payload.decode("utf-8").split("\n")
    except (UnicodeDecodeError, ValueError):
        raise TokenError("unsubscribe token is malformed") from None
    return list_name, email
