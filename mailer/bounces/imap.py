"""The bounce mailbox over IMAP: TLS with a verified certificate, each message read up to
``MAX_MESSAGE`` octets and, once acted on, moved to a done folder (never deleted)."""

from __future__ import annotations

import contextlib
import imaplib
import re
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mailer.bounces.reader import MAX_MESSAGE, clean
from mailer.errors import ConfigError, DeliveryError

IMAPS_PORT = 993
TIMEOUT = 30.0  # seconds for the connection and for each reply
# Printable ASCII only: other folder names need modified UTF-7 (RFC 3501 §5.1.3).
_FOLDER_RE = re.compile(r"[\x20-\x7e]{1,200}")
_CREDENTIAL_RE = re.compile(r"[\x20-\x7e]{1,1000}")
_UID_RE = re.compile(rb"\d{1,10}")


@dataclass(frozen=True, slots=True)
class _Account:
    host: str
    port: int
    username: str
    password: str = field(repr=False)  # never in a log or a traceback's locals
    folder: str
    done_folder: str
    context: ssl.SSLContext
    timeout: float

    @property
    def where(self) -> str:
        return f"IMAP server {self.host}:{self.port}"


def read_imap(
    host: str,
    port: int,
    username: str,
    password: str,
    *,
    folder: str = "INBOX",
    done_folder: str = "Processed",
    ca_file: Path | None = None,
    timeout: float = TIMEOUT,
) -> Iterator[bytes]:
    """Each message of ``folder`` (those not flagged deleted), at most ``MAX_MESSAGE``
    octets of it, over implicit TLS (IMAPS) with the certificate verified against the
    system's CAs or only ``ca_file``.

    A message is moved to ``done_folder`` (created when missing) when the next one is asked
    for, or when the iteration ends: so only messages the caller has acted on are moved.
    An iteration abandoned half-way moves nothing more; what it left is read again next time.
    Nothing is ever deleted outright: without the MOVE extension a message is copied, then
    flagged ``\\Deleted`` and expunged from ``folder``.

    The settings are checked at once; the connection is made when the first message is
    asked for. Login failures are ``ConfigError``; a server that cannot be reached, fails
    TLS or breaks off is ``DeliveryError``. The password is never part of an error.
    """
    for name, value in (("MAILER_IMAP_FOLDER", folder), ("MAILER_IMAP_DONE_FOLDER", done_folder)):
        if not _FOLDER_RE.fullmatch(value):
            raise ConfigError(
                f"setting {name}: {value[:60]!r} is not a folder name this reader supports",
                hint="use printable ASCII (e.g. Processed, or INBOX.Processed on servers "
                "that keep every folder under INBOX)",
            )
    if folder == done_folder or folder.upper() == done_folder.upper() == "INBOX":
        raise ConfigError("settings MAILER_IMAP_FOLDER and MAILER_IMAP_DONE_FOLDER are the same")
    if not host or any(c in host for c in "\r\n\x00/ "):
        raise ConfigError(f"setting MAILER_IMAP_HOST: {host[:60]!r} is not a host name")
    if not 0 < port < 65536:
        raise ConfigError(f"setting MAILER_IMAP_PORT: {port} is not a port")
    if not _CREDENTIAL_RE.fullmatch(username):
        raise ConfigError("setting MAILER_IMAP_USERNAME: empty, or not printable ASCII")
    if not _CREDENTIAL_RE.fullmatch(password):
        raise ConfigError("setting MAILER_IMAP_PASSWORD: empty, or not printable ASCII")
    account = _Account(
        host, port, username, password, folder, done_folder, _tls_context(ca_file), timeout
    )
    return _messages(account)


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ConfigError(
            f"setting MAILER_IMAP_CA_FILE: {ca_file}: cannot read CA certificates from it "
            f"({getattr(exc, 'strerror', None) or type(exc).__name__})"
        ) from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _quote(text: str) -> str:
    """An IMAP quoted string (the caller has checked: printable ASCII)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _said(data: Sequence[object]) -> str:
    """What the server said, as one clean line."""
    parts = [p.decode("utf-8", "replace") if isinstance(p, bytes) else str(p) for p in data]
    return clean(" ".join(p for p in parts if p and p != "None"), 200) or "no reason given"


def _messages(account: _Account) -> Iterator[bytes]:
    client = _connect(account)
    try:
        mover = _session(client, account)
        for uid in _uids(client, account):
            raw = _fetch(client, account, uid)
            if raw is None:
                continue  # expunged meanwhile by another client
            yield raw
            mover.move(uid)
        mover.finish()
    except imaplib.IMAP4.abort as exc:  # the connection broke (a subclass of error)
        raise DeliveryError(f"{account.where}: the connection broke ({clean(str(exc))})") from exc
    except imaplib.IMAP4.error as exc:
        raise DeliveryError(
            f"{account.where}: the server refused a command ({_said([exc])})"
        ) from exc
    except OSError as exc:
        raise DeliveryError(f"{account.where}: {_os_reason(exc)}") from exc
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            client.logout()  # closes the socket whatever the server answers


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS failed: the certificate is not trusted ({clean(exc.verify_message or '')})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({clean(exc.reason or type(exc).__name__)})"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    return f"cannot connect ({clean(exc.strerror or type(exc).__name__)})"


def _connect(account: _Account) -> imaplib.IMAP4_SSL:
    try:
        return imaplib.IMAP4_SSL(
            account.host, account.port, ssl_context=account.context, timeout=account.timeout
        )
    except OSError as exc:
        hint = (
            "MAILER_IMAP_CA_FILE names the CA that signed the server's certificate, when it "
            "is not one the system trusts"
            if isinstance(exc, ssl.SSLCertVerificationError)
            else "check MAILER_IMAP_HOST and MAILER_IMAP_PORT (IMAP over TLS, usually 993)"
        )
        raise DeliveryError(f"{account.where}: {_os_reason(exc)}", hint=hint) from exc
    except imaplib.IMAP4.error as exc:
        raise DeliveryError(f"{account.where}: not an IMAP server ({_said([exc])})") from exc


class _Mover:
    """Moves read messages to the done folder: UID MOVE (RFC 6851) where the server has
    it, else COPY, flag \\Deleted and expunge (only those UIDs with UIDPLUS)."""

    def __init__(self, client: imaplib.IMAP4_SSL, account: _Account, capabilities: set[str]):
        self._client = client
        self._account = account
        self._target = _quote(account.done_folder)
        self._move = "MOVE" in capabilities
        self._uid_expunge = "UIDPLUS" in capabilities
        self._flagged = False

    def _check(self, typ: str, data: list[object], what: str) -> None:
        if typ != "OK":
            raise DeliveryError(
                f"{self._account.where}: cannot {what} to {self._account.done_folder!r} "
                f"({_said(data)})"
            )

    def move(self, uid: bytes) -> None:
        client, id_ = self._client, uid.decode()
        if self._move:
            self._check(*client.uid("MOVE", id_, self._target), "move a read message")
            return
        self._check(*client.uid("COPY", id_, self._target), "copy a read message")
        self._check(
            *client.uid("STORE", id_, "+FLAGS.SILENT", "(\\Deleted)"), "flag a copied message"
        )
        if self._uid_expunge:
            self._check(*client.uid("EXPUNGE", id_), "expunge a copied message")
        else:
            self._flagged = True

    def finish(self) -> None:
        if self._flagged:  # plain EXPUNGE: also removes what others flagged \Deleted
            self._check(*self._client.expunge(), "expunge the copied messages")


def _session(client: imaplib.IMAP4_SSL, account: _Account) -> _Mover:
    """Log in, open the folder, make sure the done folder exists."""
    try:
        client.login(_quote(account.username), account.password)
    except imaplib.IMAP4.abort:
        raise
    except imaplib.IMAP4.error as exc:
        raise ConfigError(
            f"{account.where}: login refused for MAILER_IMAP_USERNAME={account.username!r} "
            f"({_said([exc])})",
            hint="check MAILER_IMAP_USERNAME and MAILER_IMAP_PASSWORD",
        ) from exc
    typ, data = client.capability()
    capabilities = {
        word.upper()
        for line in (data if typ == "OK" else [])
        if isinstance(line, bytes)
        for word in line.decode("ascii", "replace").split()
    }
    typ, data = client.select(_quote(account.folder))
    if typ != "OK":
        raise ConfigError(
            f"{account.where}: cannot open folder {account.folder!r} ({_said(data)})",
            hint="MAILER_IMAP_FOLDER names the folder bounces arrive in",
        )
    if not _exists(client, account.done_folder):
        typ, data = client.create(_quote(account.done_folder))
        if typ != "OK" and not _exists(client, account.done_folder):
            raise ConfigError(
                f"{account.where}: cannot create folder {account.done_folder!r} ({_said(data)})",
                hint="MAILER_IMAP_DONE_FOLDER: some servers keep every folder under INBOX "
                "(INBOX.Processed)",
            )
    return _Mover(client, account, capabilities)


def _exists(client: imaplib.IMAP4_SSL, folder: str) -> bool:
    typ, data = client.list('""', _quote(folder))
    return typ == "OK" and any(isinstance(line, bytes | tuple) for line in data)


def _uids(client: imaplib.IMAP4_SSL, account: _Account) -> list[bytes]:
    """The folder's messages as the scan starts (later arrivals wait for the next scan)."""
    typ, data = client.uid("SEARCH", "UNDELETED")
    if typ != "OK":
        raise DeliveryError(f"{account.where}: cannot list the messages ({_said(data)})")
    words = b" ".join(d for d in data if isinstance(d, bytes)).split()
    return sorted((w for w in words if _UID_RE.fullmatch(w)), key=int)


def _fetch(client: imaplib.IMAP4_SSL, account: _Account, uid: bytes) -> bytes | None:
    """The first ``MAX_MESSAGE`` octets of one message (a partial fetch: the server sends no
    more), without setting \\Seen; None when it is gone."""
    typ, data = client.uid("FETCH", uid.decode(), f"(BODY.PEEK[]<0.{MAX_MESSAGE}>)")
    if typ != "OK":
        raise DeliveryError(f"{account.where}: cannot read a message ({_said(data)})")
    for item in data:
        if isinstance(item, tuple) and len(item) == 2 and b"BODY[" in item[0].upper():
            return bytes(item[1][:MAX_MESSAGE])
    return None
