"""Pure: a Rendered issue plus one Recipient → one RFC 5322 message, built by splicing.

What is the same for every recipient (headers, MIME structure, the quoted-printable
rendered documents) is encoded once per issue; per recipient only the personal values are
encoded and joined in.
"""

from __future__ import annotations

import binascii
import datetime as dt
import email.utils
import hashlib
import html
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.header import Header

from mailer.errors import HeaderError
from mailer.headers import (
    ENCODED_WORD_RE,
    MAX_LINE,
    ascii_domain,
    ascii_domain_address,
    check_header_value,
    check_list_id,
    list_archive,
    list_unsubscribe,
    mailto_uri,
    unsubscribe_prefix,
    unsubscribe_url_problem,
)
from mailer.models import Outgoing, Recipient, Rendered, Spliced

# "To: " + quoted name + " <" + a 254-octet address + ">" stays under MAX_LINE.
_MAX_PLAIN_PHRASE = 700
_ATOM_SAFE_RE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]*")
_QP_SOFT = b"=\r\n"


def encode_phrase(text: str) -> str:
    """A display name as an RFC 5322 phrase: atom, quoted string, or RFC 2047 encoded words.

    A very long ASCII name becomes encoded words too: a quoted string cannot be folded, and
    no header line may exceed 998 octets.
    """
    if text.isascii() and not ENCODED_WORD_RE.search(text):
        if _ATOM_SAFE_RE.fullmatch(text) and not text.startswith(" "):
            plain = text
        else:
            plain = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if len(plain) <= _MAX_PLAIN_PHRASE:
            return plain
    return Header(text, "utf-8").encode(linesep="\r\n")


def format_address(name: str, address: str, *, field: str = "address") -> str:
    check_header_value(field, name)
    check_header_value(field, address)
    address = ascii_domain_address(address)
    return f"{encode_phrase(name)} <{address}>" if name else address


def encode_header(name: str, value: str) -> str:
    """``Name: value`` folded below 78 characters where possible; RFC 2047 when non-ASCII, or
    when an ASCII value has a word too long to fold under 998 octets."""
    check_header_value(name, value)
    if value.isascii() and not ENCODED_WORD_RE.search(value):
        encoded = Header(value, "us-ascii", header_name=name).encode(linesep="\r\n")
        if max(len(line) for line in encoded.split("\r\n")) + len(name) + 2 <= MAX_LINE:
            return f"{name}: {encoded}"
    encoded = Header(value, "utf-8", header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}"


def qp(text: str) -> bytes:
    """Quoted-printable with CRLF; b2a_qp is C code and keeps every line under 77 octets."""
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")


def _qp_chunk(text: str) -> bytes:
    """Encode a piece of a document so that pieces can be concatenated: each piece ends with a
    line break (hard, or a QP soft break), so no line ever grows across a splice."""
    if not text:
        return b""
    encoded = qp(text)
    return encoded if encoded.endswith(b"\r\n") else encoded + _QP_SOFT


@dataclass(frozen=True, slots=True)
class _EncodedDoc:
    literals: tuple[bytes, ...]
    slots: tuple[str, ...]


def _encode_doc(doc: Spliced) -> _EncodedDoc:
    return _EncodedDoc(tuple(_qp_chunk(lit) for lit in doc.literals), doc.slots)


@dataclass(frozen=True, slots=True)
class Envelope:
    """Per-issue header facts."""

    from_name: str
    from_address: str
    list_id: str
    unsubscribe_url: str
    reply_to: str | None = None
    unsubscribe_mailto: str | None = None
    archive_url: str | None = None  # RFC 2369 List-Archive, when the archive is on the web


class Composer:
    """Built once per issue; ``compose`` makes one recipient's message."""

    def __init__(
        self,
        rendered: Rendered,
        envelope: Envelope,
        *,
        unsubscribe_token: Callable[[Recipient], str] | None,
        campaign_key: str,
        name_fallback: str = "reader",
        now: dt.datetime | None = None,
        forward_token: Callable[[Recipient], str] | None = None,
    ) -> None:
        self.envelope = envelope
        self._token = unsubscribe_token
        # One more HMAC per recipient, only when a template prints the forward token.
        uses_forward = "forward_token" in (*rendered.html.slots, *rendered.text.slots)
        self._forward_token = forward_token if uses_forward else None
        self._unsubscribe_prefix = unsubscribe_prefix(envelope.unsubscribe_url)
        self._mailto = None
        if unsubscribe_token is not None:
            # Settings refuse these with the setting's name; a library caller gets this.
            problem = unsubscribe_url_problem(envelope.unsubscribe_url, token_chars=0)
            if problem is not None:
                raise HeaderError(f"List-Unsubscribe: the unsubscribe URL {problem}")
            check_header_value("List-Unsubscribe", envelope.unsubscribe_url)
            if envelope.unsubscribe_mailto:
                check_header_value("List-Unsubscribe", envelope.unsubscribe_mailto)
                self._mailto = mailto_uri(envelope.unsubscribe_mailto)
        self._name_fallback = name_fallback
        self._domain = ascii_domain(envelope.from_address.rpartition("@")[2])
        self._mid_key = hashlib.sha256(f"mailer-mid\x00{campaign_key}".encode()).digest()[:16]
        self._mid_prefix = hashlib.sha256(campaign_key.encode()).hexdigest()[:10]
        boundary = "=_mailer_" + secrets.token_hex(12)
        # "=_" cannot occur in quoted-printable output, so the boundary never collides.
        when = now or dt.datetime.now(dt.UTC).astimezone()
        headers = [
            "From: " + format_address(envelope.from_name, envelope.from_address, field="From"),
            encode_header("Subject", rendered.subject),
            "Date: " + email.utils.format_datetime(when),
            "MIME-Version: 1.0",
            f'Content-Type: multipart/alternative; boundary="{boundary}"',
        ]
        if envelope.list_id:  # a one-off message (a forward) belongs to no list
            list_id = check_list_id(envelope.list_id)
            headers.append(
                "List-Id: " + format_address(envelope.from_name, list_id, field="List-Id")
            )
        if envelope.reply_to:
            headers.append("Reply-To: " + format_address("", envelope.reply_to, field="Reply-To"))
        if envelope.archive_url:
            headers.append(list_archive(envelope.archive_url))
        if unsubscribe_token is not None:
            headers.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
        # UTF-8, not ASCII: an address with a non-ASCII local part (SMTPUTF8) stays as it is.
        self._static_head = ("\r\n".join(headers) + "\r\n").encode("utf-8")
        part = (
            '--{b}\r\nContent-Type: text/{kind}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        )
        self._text_open = b"\r\n" + part.format(b=boundary, kind="plain").encode()
        self._html_open = b"\r\n" + part.format(b=boundary, kind="html").encode()
        self._close = f"\r\n--{boundary}--\r\n".encode()
        self._text = _encode_doc(rendered.text)
        self._html = _encode_doc(rendered.html)
        self._preamble = b"\r\nThis is a multi-part message in MIME format.\r\n"

    def message_id(self, recipient: Recipient) -> str:
        digest = hashlib.blake2b(
            recipient.email.lower().encode(), key=self._mid_key, digest_size=10
        ).hexdigest()
        return f"<{self._mid_prefix}.{digest}@{self._domain}>"

    def personal_values(self, recipient: Recipient, token: str | None) -> dict[str, str]:
        values = dict(recipient.fields)
        values["email"] = recipient.email
        values["name"] = recipient.name or self._name_fallback
        values["unsubscribe_url"] = self._unsubscribe_prefix + token if token else ""
        forward = self._forward_token
        values["forward_token"] = forward(recipient) if forward is not None else ""
        return values

    def compose(self, recipient: Recipient, index: int) -> Outgoing:
        token = self._token(recipient) if self._token is not None else None
        values = self.personal_values(recipient, token)
        message_id = self.message_id(recipient)
        head = [
            "To: " + format_address(recipient.name, recipient.email, field="To"),
            f"Message-ID: {message_id}",
        ]
        if token:
            check_header_value("List-Unsubscribe", token)
            field = list_unsubscribe(self._unsubscribe_prefix, token, self._mailto)
            if len(field) > MAX_LINE and any(
                len(line.encode()) > MAX_LINE for line in field.split("\r\n")
            ):
                raise HeaderError("List-Unsubscribe: a line would be longer than 998 octets")
            head.append(field)
        chunks: list[bytes] = [("\r\n".join(head) + "\r\n").encode("utf-8"), self._static_head]
        chunks.append(self._preamble)
        chunks.append(self._text_open)
        _fill(chunks, self._text, values, escape=None)
        chunks.append(self._html_open)
        _fill(chunks, self._html, values, escape=html.escape)
        chunks.append(self._close)
        return Outgoing(
            index=index,
            recipient=recipient,
            sender=self.envelope.from_address,
            message_id=message_id,
            data=b"".join(chunks),
        )

    def preview_documents(self, recipient: Recipient, rendered: Rendered) -> tuple[str, str]:
        """The personalised HTML and text, for ``digest.html`` / ``digest.txt`` previews."""
        token = self._token(recipient) if self._token is not None else None
        values = self.personal_values(recipient, token)
        escaped = {k: html.escape(v) for k, v in values.items()}
        return rendered.html.fill(escaped), rendered.text.fill(values)


def _fill(
    out: list[bytes],
    doc: _EncodedDoc,
    values: Mapping[str, str],
    *,
    escape: Callable[[str], str] | None,
) -> None:
    literals = doc.literals
    out.append(literals[0])
    for i, slot in enumerate(doc.slots):
        value = values[slot]
        if escape is not None:
            value = escape(value)
        out.append(_qp_chunk(value))
        out.append(literals[i + 1])
