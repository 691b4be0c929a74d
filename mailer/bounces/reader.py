"""Reading one message of the bounce mailbox: a DSN, another bounce format, an auto-reply,
or something else; a failure matched to what we sent by VERP tag, else by Message-ID."""

from __future__ import annotations

import email
import email.errors
import hashlib
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses
from typing import Literal, Protocol

from flufl.bounce import all_failures

from mailer import verp
from mailer.headers import CONTROL_RE
from mailer.ledger import Ledger, State

# flufl.bounce logs each exception of a detector, with its traceback, before raising it;
# the exception is handled here (the message is reported unreadable), so the log is noise.
_flufl_log = logging.getLogger("flufl.bounce")
_flufl_log.addHandler(logging.NullHandler())
_flufl_log.propagate = False

MAX_MESSAGE = 1 << 20  # octets read of one message: a DSN's report parts come first
MAX_DIAGNOSTIC = 300


Kind = Literal["hard", "soft"]
Verdict = Literal["bounce", "auto-reply", "unmatched", "other"]

# Where a DSN addressed to a VERP return path shows that address.
_ENVELOPE_HEADERS = ("to", "delivered-to", "x-original-to", "envelope-to", "x-envelope-to")
_ORIGINAL_PARTS = frozenset(
    {"text/rfc822-headers", "message/rfc822", "message/rfc822-headers", "message/global",
     "message/global-headers"}
)  # fmt: skip
_STATUS_RE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
# Permanent refusals of our message or of us, not of the address: policy and security
# (5.7.x: spam, blocklists, DMARC, authentication), media and size (5.6.x, 5.3.4), the
# sender's address (5.1.7, 5.1.8). Counted as soft, so that a sending problem of ours does
# not suppress whole mailbox providers at once; an address refused so by several campaigns
# is still suppressed.
_ABOUT_US_RE = re.compile(r"5\.(?:7\.\d+|6\.\d+|3\.4|1\.[78])")
# A header line of a message quoted inline (qmail copies the original into its text).
_QUOTED_HEADER_RE = re.compile(r"^(message-id|return-path):[ \t]*(<[^<>\s]*>)", re.I | re.M)
_DAEMONS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon"})
_AUTO_SUBJECTS = ("auto:", "automatic reply:", "autoreply:", "auto-reply:", "out of office")
_MBOX_FROM_RE = re.compile(rb"^>(>*From )", re.M)


@dataclass(frozen=True, slots=True)
class Bounce:
    """One failed delivery we sent, matched to its recipient (and campaign, when known)."""

    kind: Kind
    email: str
    campaign: int | None
    message_id: str | None
    status: str  # the enhanced status code, e.g. 5.1.1; "" when the report gives none
    diagnostic: str
    source_id: str
    matched_by: Literal["verp", "message-id"] = "verp"


@dataclass(frozen=True, slots=True)
class Reading:
    """What one message in the bounce mailbox is."""

    source_id: str
    verdict: Verdict
    bounces: tuple[Bounce, ...] = ()
    note: str = ""


class Resolver(Protocol):
    """What the ledger knows, for matching: who got a Message-ID, whom a campaign mailed."""

    def by_message_id(self, message_id: str) -> tuple[int, str] | None: ...

    def addresses(self, campaign_id: int) -> Iterable[str]: ...


class NoResolver:
    """No ledger: only long-form VERP tags (which carry the address) match."""

    def by_message_id(self, message_id: str) -> tuple[int, str] | None:
        return None

    def addresses(self, campaign_id: int) -> Iterable[str]:
        return ()


_MAILED = (State.SENT, State.UNKNOWN, State.SENDING, State.DEFERRED, State.FAILED)


class LedgerResolver:
    """Matches against a ledger through its public read API, one campaign at a time, cached
    for the scan. (An indexed ``Ledger.find_message`` would avoid reading whole campaigns.)"""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._campaigns = {c.id: c for c in ledger.campaigns()}
        self._message_ids: dict[int, dict[str, str]] = {}

    def by_message_id(self, message_id: str) -> tuple[int, str] | None:
        for campaign in self._campaigns.values():
            known = self._message_ids.get(campaign.id)
            if known is None:
                rows = self._ledger.rows(campaign, _MAILED, max(campaign.frozen_count, 1))
                known = {r.message_id: r.email for r in rows if r.message_id}
                self._message_ids[campaign.id] = known
            if message_id in known:
                return campaign.id, known[message_id]
        return None

    def addresses(self, campaign_id: int) -> Iterable[str]:
        campaign = self._campaigns.get(campaign_id)
        if campaign is None:
            return
        for state in _MAILED:
            yield from self._ledger.addresses(campaign, state)


# --- reading one message -------------------------------------------------------------------


def clean(text: str, limit: int = MAX_DIAGNOSTIC) -> str:
    """One line of printable text: controls out, runs of spaces squeezed, capped."""
    return " ".join(CONTROL_RE.sub(" ", text).split())[:limit]


def source_id(raw: bytes, message: Message) -> str:
    """A stable id: the Message-ID, else a hash of the content as a Maildir and an mbox
    (which quotes ``From `` lines and may change line ends) would both give it."""
    mid = clean(str(message.get("Message-ID", "")), 250)
    if mid.startswith("<") and mid.endswith(">") and len(mid) > 2:
        return "mid:" + mid
    normal = _MBOX_FROM_RE.sub(rb"\1", raw.replace(b"\r\n", b"\n"))
    return "sha256:" + hashlib.sha256(normal).hexdigest()


def _is_dsn(message: Message) -> bool:
    return (
        message.get_content_type() == "multipart/report"
        and str(message.get_param("report-type", "")).lower() == "delivery-status"
    )


def _from_daemon(message: Message) -> bool:
    if str(message.get("Return-Path", "")).strip() == "<>":
        return True
    addresses = getaddresses([str(message.get("From", ""))])
    return any(addr.partition("@")[0].lower() in _DAEMONS for _, addr in addresses)


def auto_reply_marker(message: Message) -> str | None:
    """Why ``message`` is an auto-reply (RFC 3834 and the common private headers), or None."""
    submitted = str(message.get("Auto-Submitted", "")).partition(";")[0].strip().lower()
    if submitted and submitted != "no":
        return f"Auto-Submitted: {clean(submitted, 40)}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        if message.get(name) is not None:
            return name
    if str(message.get("Precedence", "")).strip().lower() == "auto_reply":
        return "Precedence: auto_reply"
    if str(message.get("X-Auto-Response-Suppress", "")) and message.get("In-Reply-To"):
        return "X-Auto-Response-Suppress"
    if str(message.get("Subject", "")).strip().lower().startswith(_AUTO_SUBJECTS):
        return "an automatic-reply subject"
    return None


@dataclass(frozen=True, slots=True)
class _Failure:
    kind: Kind
    recipient: str
    status: str
    diagnostic: str


def _status_kind(action: str, status: str) -> Kind | None:
    """Hard for 5.x.x (but refusals about us), soft for 4.x.x; without a status, failed is
    hard and delayed soft."""
    if _ABOUT_US_RE.fullmatch(status):
        return "soft"
    if status.startswith("5"):
        return "hard"
    if status.startswith("4"):
        return "soft"
    if action.startswith(("failed", "error")):
        return "hard"
    if action.startswith("delayed"):
        return "soft"
    return None


def _status_blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    text = payload if isinstance(payload, str) else ""
    return [email.message_from_string(block) for block in re.split(r"\r?\n\r?\n", text)]


def _dsn_failures(message: Message) -> list[_Failure]:
    failures: list[_Failure] = []
    for part in message.walk():
        kind_of_part = part.get_content_type()
        if kind_of_part not in ("message/delivery-status", "message/global-delivery-status"):
            continue
        for block in _status_blocks(part):
            action = str(block.get("Action", "")).strip().lower()
            found = _STATUS_RE.search(str(block.get("Status", "")))
            status = found.group(0) if found else ""
            kind = _status_kind(action, status)
            if kind is None:
                continue
            recipient = str(block.get("Final-Recipient") or block.get("Original-Recipient", ""))
            recipient = recipient.partition(";")[2].strip().strip("<>") or recipient.strip()
            diagnostic = str(block.get("Diagnostic-Code", "")).partition(";")
            text = diagnostic[2] if diagnostic[1] else diagnostic[0]
            failures.append(_Failure(kind, clean(recipient, 254), status, clean(text)))
    return failures


def _detected_failures(message: Message) -> list[_Failure]:
    try:
        temporary, permanent = all_failures(message)
    except Exception as exc:  # heuristics over any input: a detector may trip on anything
        raise ValueError(f"flufl.bounce: {type(exc).__name__}") from exc
    out = [_Failure("hard", a.decode("ascii", "replace"), "", "") for a in sorted(permanent)]
    out += [_Failure("soft", a.decode("ascii", "replace"), "", "") for a in sorted(temporary)]
    return out


def _original_headers(message: Message) -> tuple[str | None, list[str]]:
    """The returned message's Message-ID and Return-Path(s): from its headers part, or for
    formats that quote it inline (qmail), from the text of the bounce."""
    for part in message.walk():
        if part.get_content_type() not in _ORIGINAL_PARTS:
            continue
        payload = part.get_payload()
        headers: Message | None = None
        if isinstance(payload, list) and payload and isinstance(payload[0], Message):
            headers = payload[0]
        elif isinstance(payload, str):
            headers = email.message_from_string(payload)
        if headers is not None:
            message_id = clean(str(headers.get("Message-ID", "")), 250) or None
            return message_id, [str(v) for v in headers.get_all("Return-Path", [])]
    message_id = None
    return_paths: list[str] = []
    texts = [message] if not message.is_multipart() else list(message.get_payload())
    for part in texts:
        if not isinstance(part, Message) or part.get_content_type() != "text/plain":
            continue
        text = part.get_payload(decode=True)
        if not isinstance(text, bytes):
            continue
        for name, value in _QUOTED_HEADER_RE.findall(text.decode("utf-8", "replace")):
            if name.lower() == "message-id":
                message_id = message_id or value
            else:
                return_paths.append(value)
    return message_id, return_paths


class BounceReader:
    """Reads bounce mail; ``secret`` checks VERP tags, ``resolver`` is the ledger's side."""

    def __init__(self, secret: str, resolver: Resolver | None = None) -> None:
        self._secret = secret
        self._resolver: Resolver = resolver or NoResolver()
        self._macs: dict[int, dict[str, str | None]] = {}

    def read(self, raw: bytes) -> Reading:
        message = email.message_from_bytes(raw[:MAX_MESSAGE])
        sid = source_id(raw[:MAX_MESSAGE], message)
        try:
            return self._read(message, sid)
        except (ValueError, LookupError, TypeError, email.errors.MessageError) as exc:
            why = str(exc) if str(exc).startswith("flufl.bounce") else type(exc).__name__
            return Reading(sid, "other", note=f"unreadable ({why})")

    def _read(self, message: Message, sid: str) -> Reading:
        dsn = _is_dsn(message)
        if not dsn and not _from_daemon(message):
            marker = auto_reply_marker(message)
            if marker is not None:
                return Reading(sid, "auto-reply", note=marker)
        failures = _dsn_failures(message) if dsn else []
        if not failures:
            failures = _detected_failures(message)
        if not failures:
            marker = auto_reply_marker(message)
            return Reading(sid, "auto-reply" if marker else "other", note=marker or "")
        # A VERP message has one recipient: the worst failure stands for it.
        worst = min(failures, key=lambda f: f.kind != "hard")
        message_id, return_paths = _original_headers(message)
        matched = self._by_verp(message, return_paths)
        how: Literal["verp", "message-id"] = "verp"
        if matched is None and message_id is not None:
            matched = self._resolver.by_message_id(message_id)
            how = "message-id"
        if matched is None:
            who = ", ".join(sorted({f.recipient for f in failures}))[:200]
            return Reading(sid, "unmatched", note=f"{worst.kind} bounce for {who or '?'}")
        campaign, address = matched
        bounce = Bounce(
            worst.kind, address, campaign, message_id, worst.status, worst.diagnostic, sid, how
        )
        return Reading(sid, "bounce", (bounce,))

    def _by_verp(self, message: Message, return_paths: list[str]) -> tuple[int, str] | None:
        values = [str(v) for name in _ENVELOPE_HEADERS for v in message.get_all(name, [])]
        for _, address in getaddresses(values + return_paths):
            tag = verp.parse(address, self._secret)
            if tag is None:
                continue
            if tag.email is not None:
                return tag.campaign_id, tag.email
            macs = self._macs.get(tag.campaign_id)
            if macs is None:
                addresses = self._resolver.addresses(tag.campaign_id)
                macs = self._macs[tag.campaign_id] = verp.macs(
                    self._secret, tag.campaign_id, addresses
                )
            found = macs.get(tag.mac)
            if found is not None:
                return tag.campaign_id, found
        return None
