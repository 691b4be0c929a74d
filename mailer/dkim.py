"""DKIM signatures (RFC 6376, relaxed/relaxed; RSA-SHA256 and Ed25519-SHA256, RFC 8463).

Canonicalisation and the signature header are ours, written from the RFC; the public-key
operations are OpenSSL's, through ``cryptography`` (pure-Python RSA costs 10-40 ms a
signature, OpenSSL well under one). The tests verify every signature with dkimpy.

Over-signing: each name in ``OVERSIGNED`` is listed in ``h=`` once more than the message
holds it (once when absent), so a From, Subject, List-Unsubscribe... added after signing,
or a Reply-To or Cc added where there was none, breaks the signature.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from mailer.errors import ConfigError
from mailer.headers import ascii_domain

KeyKind = Literal["rsa", "ed25519"]
KEY_KINDS: tuple[KeyKind, ...] = ("rsa", "ed25519")
PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

MIN_RSA_BITS = 2048
RSA_KEYGEN_BITS = 2048
MAX_KEY_FILE = 64 * 1024  # a PEM private key is a few KB; refuse to read a large file

# Signed when present. The first group is what issue 15 (and Gmail's bulk-sender rules, via
# RFC 8058 §3.1) require; the rest are what a reader sees or a client acts on.
SIGNED: tuple[str, ...] = (
    "from", "to", "subject", "date", "message-id", "mime-version", "content-type",
    "list-id", "list-unsubscribe", "list-unsubscribe-post",
    "cc", "reply-to", "sender", "in-reply-to", "references", "content-transfer-encoding",
    "list-help", "list-owner", "list-post", "list-subscribe", "list-archive",
    "feedback-id",
)  # fmt: skip
# Signed once more than present: nobody may add one of these after us.
OVERSIGNED: frozenset[str] = frozenset(
    {
        "from", "to", "cc", "reply-to", "subject", "date", "message-id", "mime-version",
        "content-type", "content-transfer-encoding", "list-id", "list-unsubscribe",
        "list-unsubscribe-post",
    }
)  # fmt: skip

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_SELECTOR_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_DOMAIN_RE = re.compile(rf"(?:{_LABEL}\.)+[a-z0-9-]{{2,63}}")
_WSP_RUN = re.compile(rb"[ \t]+")
_SPACES = re.compile(rb"  +")  # a literal prefix: the regex engine skips to each match
_BARE_LF = re.compile(rb"(?<!\r)\n")
_LINE = 76  # fold the DKIM-Signature header below this many characters a line
_TXT_STRING = 255  # octets in one DNS character-string


# --- keys --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SigningKey:
    """One private key and the selector its public key is published under."""

    selector: str
    key: PrivateKey

    @property
    def kind(self) -> KeyKind:
        return "rsa" if isinstance(self.key, rsa.RSAPrivateKey) else "ed25519"

    @property
    def algorithm(self) -> str:
        return "rsa-sha256" if self.kind == "rsa" else "ed25519-sha256"

    def public_key_b64(self) -> str:
        """The ``p=`` value: SubjectPublicKeyInfo DER for RSA, the raw 32 octets for Ed25519."""
        public = self.key.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            der = public.public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        else:
            der = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return base64.b64encode(der).decode("ascii")

    def txt_value(self) -> str:
        """The TXT record's text, unsplit: ``v=DKIM1; k=rsa; p=…``."""
        return f"v=DKIM1; k={self.kind}; p={self.public_key_b64()}"


def check_selector(selector: str) -> str:
    """A DKIM selector: one or more DNS labels (letters, digits, hyphens), lower-cased."""
    lowered = selector.strip().lower()
    if not _SELECTOR_RE.fullmatch(lowered) or len(lowered) > 200:
        raise ConfigError(
            f"DKIM selector {selector[:64]!r}: must be DNS labels of letters, digits and "
            "hyphens joined by dots (e.g. mail2026)"
        )
    return lowered


def check_domain(domain: str) -> str:
    """A signing domain in its ASCII (IDNA) form, lower-cased."""
    ascii = ascii_domain(domain.strip()).lower().rstrip(".")
    if not _DOMAIN_RE.fullmatch(ascii) or len(ascii) > 253:
        raise ConfigError(f"DKIM domain {domain[:64]!r}: not a domain name")
    return ascii


def load_key(selector: str, pem: bytes, *, source: str) -> SigningKey:
    """Parse a PEM private key (RSA of 2048 bits or more, or Ed25519).

    ``source`` names the key in errors (its file); no error carries any of the key's text.
    """
    selector = check_selector(selector)
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except TypeError:
        raise ConfigError(
            f"{source}: the DKIM key is encrypted; give an unencrypted PEM key "
            "(readable by this user only)"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        # The library's message may quote the input: say nothing of it.
        raise ConfigError(
            f"{source}: not a PEM private key (expected an RSA or Ed25519 key; "
            "`mailer dkim keygen` writes one)"
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(
                f"{source}: the RSA key has {key.key_size} bits; DKIM keys need at least "
                f"{MIN_RSA_BITS} (receivers ignore or distrust shorter ones)"
            )
    elif not isinstance(key, ed25519.Ed25519PrivateKey):
        raise ConfigError(
            f"{source}: a {type(key).__name__.removeprefix('_')} key; DKIM signs with "
            "RSA (2048 bits or more) or Ed25519 keys"
        )
    return SigningKey(selector, key)


def read_key(selector: str, path: Path) -> SigningKey:
    """``load_key`` on a file; an unreadable or oversized file is a ``ConfigError`` naming it."""
    try:
        with open(path, "rb") as handle:
            pem = handle.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the DKIM key ({exc.strerror})") from None
    if len(pem) > MAX_KEY_FILE:
        raise ConfigError(f"{path}: too large for a PEM private key")
    return load_key(selector, pem, source=str(path))


# --- canonicalisation (RFC 6376 §3.4.2, §3.4.4) --------------------------------------------


def split_message(message: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """Header fields as ``(lower-cased name, raw field without its final CRLF)``, and the body.

    The message has CRLF line endings. A line that starts neither a field nor a continuation
    (no colon) ends the header section, as a blank line does.
    """
    end = message.find(b"\r\n\r\n")
    if message.startswith(b"\r\n"):
        head, body = b"", message[2:]
    elif end < 0:
        head, body = message, b""
    else:
        head, body = message[:end], message[end + 4 :]
    fields: list[tuple[str, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, raw = fields[-1]
            fields[-1] = (name, raw + b"\r\n" + line)
            continue
        raw_name, colon, _ = line.partition(b":")
        if not colon:
            break
        fields.append((raw_name.rstrip(b" \t").decode("ascii", "replace").lower(), line))
    return fields, body


def relaxed_header(name: str, raw: bytes) -> bytes:
    """``name:value`` unfolded, runs of WSP as one space, none at the ends, then CRLF."""
    value = raw.partition(b":")[2].replace(b"\r\n", b"")
    value = _WSP_RUN.sub(b" ", value).strip(b" ")
    return name.encode("ascii") + b":" + value + b"\r\n"


def relaxed_body(body: bytes) -> bytes:
    """No WSP before a line end, runs of WSP as one space, no empty lines at the end."""
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    # A QP-encoded HTML body holds thousands of single spaces: touch only runs and line
    # ends (a regex matching every space costs milliseconds on a 50 KB message).
    if b"\t" in body:
        body = body.replace(b"\t", b" ")
    if b"  " in body:
        body = _SPACES.sub(b" ", body)
    if b" \r\n" in body:
        body = body.replace(b" \r\n", b"\r\n")
    end = len(body)
    while end >= 2 and body[end - 2 : end] == b"\r\n":
        end -= 2
    return body[:end] + b"\r\n" if end else b""


def _chosen(fields: Sequence[tuple[str, bytes]], names: Sequence[str]) -> tuple[list[str], bytes]:
    """The ``h=`` names and the canonical header block they select: the n-th listing of a
    name selects its n-th instance from the bottom (§5.4.2); a listing with no instance left
    selects nothing, which is what makes over-signing work."""
    instances: dict[str, list[bytes]] = {}
    for name, raw in fields:
        instances.setdefault(name, []).append(raw)
    listed: list[str] = []
    block: list[bytes] = []
    for name in names:
        present = instances.get(name, [])
        count = len(present) + (1 if name in OVERSIGNED else 0)
        listed += [name] * count
        block += [relaxed_header(name, raw) for raw in reversed(present)]
    return listed, b"".join(block)


def _wrap(lines: list[str], text: str) -> None:
    """Append ``text`` to the last line, carrying on over continuation lines as needed."""
    while text:
        room = _LINE - len(lines[-1])
        if room <= 0:
            lines.append(" ")
            continue
        lines[-1] += text[:room]
        text = text[room:]


def _fold(tags: Iterable[tuple[str, str]]) -> list[str]:
    """The lines of ``DKIM-Signature: t=v; …;`` folded at tag boundaries, ``h=`` at colons
    and a long value anywhere (whitespace in a tag value is ignored by verifiers)."""
    lines = ["DKIM-Signature:"]
    for tag, value in tags:
        piece = f" {tag}={value};"
        if len(lines[-1]) + len(piece) <= _LINE:
            lines[-1] += piece
        elif tag == "h":
            lines.append(" h=")
            for name in value.split(":"):
                word = name + ":"
                if len(lines[-1]) + len(word) > _LINE:
                    lines.append(" ")
                lines[-1] += word
            lines[-1] = lines[-1][:-1] + ";"
        elif len(piece) > _LINE:
            lines.append(f" {tag}=")
            _wrap(lines, value + ";")
        else:
            lines.append(piece)
    return lines


def _with_signature(lines: list[str], value: str) -> bytes:
    """The folded field with ``b=<value>`` last, so that whitespace a careless verifier
    leaves where it cut the value out is trailing whitespace, which relaxed ignores."""
    out = list(lines)
    if len(out[-1]) + 4 > _LINE:
        out.append(" b=")
    else:
        out[-1] += " b="
    _wrap(out, value)
    return "\r\n".join(out).encode("ascii") + b"\r\n"


# --- signing ------------------------------------------------------------------------------


class Signer:
    """Signs whole messages (bytes with CRLF line endings) with one or two keys.

    ``sign`` returns the message with one DKIM-Signature field per key prepended, in the
    order of ``keys``. It is pure CPU, holding the GIL (bench/bench_dkim.py: about 0.8 ms
    with RSA-2048 and 0.4 ms with Ed25519 for a 35 KB digest), and thread-safe.
    """

    def __init__(
        self,
        domain: str,
        keys: Sequence[SigningKey],
        *,
        headers: Sequence[str] = SIGNED,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not keys:
            raise ConfigError("DKIM: no signing key")
        selectors = [k.selector for k in keys]
        if len(set(selectors)) != len(selectors):
            raise ConfigError(
                "DKIM: each key needs a selector of its own (one public key per DNS record)"
            )
        self.domain = check_domain(domain)
        self.keys = tuple(keys)
        self._names = tuple(dict.fromkeys(h.lower() for h in headers))
        self._clock = clock

    @classmethod
    def from_files(cls, domain: str, keys: Iterable[tuple[str, Path]]) -> Signer:
        """One key per ``(selector, PEM file)``: an RSA and an Ed25519 key sign twice."""
        return cls(domain, [read_key(selector, path) for selector, path in keys])

    def sign(self, message: bytes) -> bytes:
        """The message with its DKIM-Signature field(s) prepended; bare LFs become CRLF."""
        if message.count(b"\n") != message.count(b"\r\n"):
            message = _BARE_LF.sub(b"\r\n", message)
        return self.signature_fields(message) + message

    def signature_fields(self, message: bytes) -> bytes:
        """Only the DKIM-Signature field(s), each ending with CRLF, for a CRLF message."""
        fields, body = split_message(message)
        body_hash = base64.b64encode(hashlib.sha256(relaxed_body(body)).digest()).decode()
        listed, block = _chosen(fields, self._names)
        stamp = str(int(self._clock()))
        out: list[bytes] = []
        for key in self.keys:
            tags = [
                ("v", "1"),
                ("a", key.algorithm),
                ("c", "relaxed/relaxed"),
                ("d", self.domain),
                ("s", key.selector),
                ("t", stamp),
                ("h", ":".join(listed)),
                ("bh", body_hash),
            ]
            lines = _fold(tags)
            unsigned = ("\r\n".join(lines) + " b=").encode("ascii")
            data = block + relaxed_header("dkim-signature", unsigned)[:-2]
            if isinstance(key.key, rsa.RSAPrivateKey):
                raw = key.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
            else:  # RFC 8463: PureEdDSA over the SHA-256 hash of the same data
                raw = key.key.sign(hashlib.sha256(data).digest())
            out.append(_with_signature(lines, base64.b64encode(raw).decode("ascii")))
        return b"".join(out)


# --- key generation and DNS ---------------------------------------------------------------


def txt_record(key: SigningKey, domain: str) -> str:
    """``<selector>._domainkey.<domain> TXT "v=DKIM1; k=…; p=…"`` in strings of ≤255 octets."""
    value = key.txt_value()
    strings = [value[i : i + _TXT_STRING] for i in range(0, len(value), _TXT_STRING)]
    quoted = " ".join(f'"{s}"' for s in strings)
    return f"{key.selector}._domainkey.{check_domain(domain)}. IN TXT {quoted}"


@dataclass(frozen=True, slots=True)
class NewKey:
    """What ``keygen`` made: the private key's file and the DNS record to publish."""

    path: Path
    record: str
    key: SigningKey


def key_file_name(selector: str) -> str:
    return f"{selector}.dkim.pem"


def keygen(selector: str, kind: KeyKind, out_dir: Path, domain: str) -> NewKey:
    """Make a key (RSA-2048 or Ed25519), write it as ``<out_dir>/<selector>.dkim.pem``
    (mode 0600, never over an existing file) and return it with its DNS TXT record."""
    selector = check_selector(selector)
    domain = check_domain(domain)
    if kind not in KEY_KINDS:
        raise ConfigError(f"DKIM key kind {kind!r}: use rsa or ed25519")
    key: PrivateKey = (
        rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEYGEN_BITS)
        if kind == "rsa"
        else ed25519.Ed25519PrivateKey.generate()
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path = out_dir / key_file_name(selector)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"{path}: already exists; keygen never overwrites a key (choose another "
            "selector, or move the old key away first)"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write the key ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # whatever the umask
            handle.write(pem)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise ConfigError(f"{path}: cannot write the key ({exc.strerror})") from None
    signing = SigningKey(selector, key)
    return NewKey(path, txt_record(signing, domain), signing)


def self_check(signer: Signer) -> None:
    """Sign a small test message and verify it with dkimpy against ``signer``'s own public
    keys (what ``mailer check`` runs); ``ConfigError`` if dkimpy disagrees."""
    import dkim as dkimpy  # type: ignore[import-untyped]  # independent; only for the check

    records = {
        f"{k.selector}._domainkey.{signer.domain}.".encode(): k.txt_value().encode()
        for k in signer.keys
    }

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name if name.endswith(b".") else name + b".")

    sample = (
        f"From: check@{signer.domain}\r\nTo: check@{signer.domain}\r\nSubject: DKIM check\r\n"
        "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <dkim-check@mailer>\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nDKIM check.\r\n"
    ).encode()
    signed = signer.sign(sample)
    checker = dkimpy.DKIM(signed)
    for index, key in enumerate(signer.keys):
        try:
            good = checker.verify(idx=index, dnsfunc=dns)
        except dkimpy.DKIMException as exc:
            raise ConfigError(f"DKIM selector {key.selector}: dkimpy refused it ({exc})") from None
        if not good:
            raise ConfigError(f"DKIM selector {key.selector}: the test signature does not verify")
