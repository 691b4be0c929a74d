"""VERP return paths: ``bounces+<tag>@domain``, a tag signed to name campaign and recipient.

A tag is ``<campaign id>-<mac>-<local>=<domain>`` when the recipient's address fits in the
64 octets of a local part, and ``<campaign id>-<mac>`` when it does not (or is not plain
ASCII); the short form is resolved by computing the MAC of each address the campaign
mailed (``resolve``). Both use only digits, lower-case letters and the address's own
characters, so a relay that lower-cases local parts changes nothing (addresses are compared
lower-cased everywhere in this project).

The MAC is HMAC-SHA256 over the campaign id and the lower-cased address, cut to 50 bits
(ten base32 characters). A forger gets one guess per bounce mailed to us: at a million
forged bounces a day, one would pass every few million years, and its prize would be one
suppressed address. In the short form the MAC also picks the recipient among the
campaign's addresses: two addresses of a campaign of n sharing a MAC has a chance of about
n²/2⁵¹ (1 in 200,000 for 100,000 addresses), and ``resolve`` then returns no one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

from mailer.errors import ConfigError
from mailer.headers import ascii_domain

MAX_LOCAL_PART = 64  # octets (RFC 5321 §4.5.3.1.1)
MAC_BITS = 50
_MAC_CHARS = MAC_BITS // 5
_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648 base32, lower-cased
_CONTEXT = b"mailer-verp-v1\x00"
_MAX_CAMPAIGN_DIGITS = 12
# The longest short tag: a campaign id, a hyphen, the MAC.
MAX_SHORT_TAG = _MAX_CAMPAIGN_DIGITS + 1 + _MAC_CHARS
_TAG_RE = re.compile(
    rf"([0-9]{{1,{_MAX_CAMPAIGN_DIGITS}}})-([{_ALPHABET}]{{{_MAC_CHARS}}})(?:-(.+))?"
)
# A recipient's local part that may stand in ours as it is: dot-atom text (RFC 5322).
_DOT_ATOM_RE = re.compile(r"[a-z0-9!#$%&'*+\-/=?^_`{|}~]+(?:\.[a-z0-9!#$%&'*+\-/=?^_`{|}~]+)*")
_DOMAIN_RE = re.compile(r"[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class Tag:
    """A parsed tag: ``email`` is known (and verified) in the long form, ``None`` in the short
    form until ``resolve`` finds it among the campaign's addresses."""

    campaign_id: int
    email: str | None
    mac: str


def check_bounce_address(address: str) -> str:
    """The bounce mailbox (``MAILER_BOUNCE_ADDRESS``): ASCII, no ``+`` in its local part (the
    tag follows the first ``+``), and short enough to carry a short tag."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain or not address.isascii():
        raise ConfigError(f"bounce address {address[:80]!r}: must be an ASCII e-mail address")
    if "+" in local or not _DOT_ATOM_RE.fullmatch(local.lower()):
        raise ConfigError(
            f"bounce address {address[:80]!r}: its local part must be plain letters, digits "
            "and dots, without '+' (the tag is added after a '+')"
        )
    if len(local) + 1 + MAX_SHORT_TAG > MAX_LOCAL_PART:
        raise ConfigError(
            f"bounce address {address[:80]!r}: its local part may have at most "
            f"{MAX_LOCAL_PART - 1 - MAX_SHORT_TAG} characters, so that a tag fits"
        )
    return f"{local}@{domain.lower()}"


def _mac(secret: str, campaign_id: int, email: str) -> str:
    if not secret:
        raise ConfigError("no secret key: set MAILER_SECRET_KEY to sign return paths")
    message = _CONTEXT + str(campaign_id).encode() + b"\x00" + email.lower().encode("utf-8")
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    value = int.from_bytes(digest[:8], "big") >> (64 - MAC_BITS)
    return "".join(_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(_MAC_CHARS)))


def _address_form(email: str) -> str | None:
    """``local=domain`` when the address can stand in a local part as it is."""
    local, at, domain = email.lower().rpartition("@")
    if not at or not email.isascii():
        return None
    if not _DOT_ATOM_RE.fullmatch(local) or not _DOMAIN_RE.fullmatch(domain):
        return None
    return f"{local}={domain}"


def make_tag(secret: str, campaign_id: int, email: str, *, room: int = MAX_LOCAL_PART) -> str:
    """The tag for one message: the long form if it fits in ``room`` octets, else the short."""
    if not 0 <= campaign_id < 10**_MAX_CAMPAIGN_DIGITS:
        raise ValueError(f"campaign id {campaign_id} out of range")
    short = f"{campaign_id}-{_mac(secret, campaign_id, email)}"
    form = _address_form(email)
    if form is not None and len(short) + 1 + len(form) <= room:
        return f"{short}-{form}"
    return short


class ReturnPaths:
    """The return paths of one send: the bounce address checked and split once, then one
    ``bounces+<tag>@domain`` per message (the hot path: a MAC and a format)."""

    def __init__(self, bounce_address: str, secret: str) -> None:
        local, _, domain = check_bounce_address(bounce_address).rpartition("@")
        self._local, self._domain = local, ascii_domain(domain)
        self._room = MAX_LOCAL_PART - len(local) - 1
        self._secret = secret

    def __call__(self, campaign_id: int, email: str) -> str:
        tag = make_tag(self._secret, campaign_id, email, room=self._room)
        return f"{self._local}+{tag}@{self._domain}"


def return_path(bounce_address: str, secret: str, campaign_id: int, email: str) -> str:
    """``bounces+<tag>@domain``: the envelope sender (MAIL FROM) of one message."""
    return ReturnPaths(bounce_address, secret)(campaign_id, email)


def parse(address: str, secret: str) -> Tag | None:
    """The tag in a return path (``<bounces+…@domain>``, any case), or ``None`` if there is
    none or it is forged, truncated or signed with another key. A short-form tag cannot be
    checked yet: ``resolve`` checks it."""
    local = address.strip().strip("<>").rpartition("@")[0].lower()
    if not local or len(local) > 2 * MAX_LOCAL_PART:
        return None
    tag = local.partition("+")[2]
    match = _TAG_RE.fullmatch(tag)
    if match is None:
        return None
    campaign_id, mac, form = int(match[1]), match[2], match[3]
    if form is None:
        return Tag(campaign_id, None, mac)
    recipient_local, eq, domain = form.rpartition("=")
    if not eq or not recipient_local or not domain:
        return None
    email = f"{recipient_local}@{domain}"
    if not hmac.compare_digest(mac, _mac(secret, campaign_id, email)):
        return None
    return Tag(campaign_id, email, mac)


def macs(secret: str, campaign_id: int, addresses: Iterable[str]) -> dict[str, str | None]:
    """MAC → address for a campaign's addresses (``None`` where two share a MAC): built once,
    it resolves every short tag of that campaign."""
    found: dict[str, str | None] = {}
    for address in addresses:
        mac = _mac(secret, campaign_id, address)
        other = found.get(mac, address)
        found[mac] = other if other is not None and other.lower() == address.lower() else None
    return found


def resolve(tag: Tag, secret: str, addresses: Iterable[str]) -> str | None:
    """The one address among ``addresses`` (the campaign's) that the tag names, or ``None``
    when none does or, by a collision of truncated MACs, more than one does."""
    if tag.email is not None:
        return tag.email
    return macs(secret, tag.campaign_id, addresses).get(tag.mac)
