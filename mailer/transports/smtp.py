"""The SMTP transport on aiosmtplib: verified TLS, required STARTTLS, AUTH, reused connections."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Iterator
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib import (
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPDataError,
    SMTPException,
    SMTPResponse,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from mailer.errors import ConfigError, DeliveryError, MailerError
from mailer.headers import ascii_domain_address
from mailer.models import Outgoing, SMTPConfig
from mailer.transports.base import ChannelBroken, Reply

_DATA_END = b".\r\n"
NEEDS_SMTPUTF8 = "5.6.7 not sent: the address needs SMTPUTF8, which {where} does not offer"


def needs_smtputf8(address: str) -> bool:
    """Whether an address can only be sent with SMTPUTF8: its local part is not ASCII."""
    return not address.rpartition("@")[0].isascii()


@dataclass(frozen=True)
class ServerInfo:
    """What ``mailer check`` reports."""

    banner: str
    extensions: dict[str, str]
    tls: str | None
    authenticated_as: str | None


def _tls_context(config: SMTPConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if config.ca_file is not None:
        try:
            context.load_verify_locations(cafile=str(config.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"setting MAILER_SMTP_CA_FILE: cannot load {config.ca_file}") from exc
    return context


def stuff(data: bytes) -> bytes:
    """Dot-stuff a CRLF message and add the terminator.

    Messages from ``Composer`` already have CRLF line endings and short lines, so the
    normalising regex that aiosmtplib runs over every message (about half of its CPU cost
    per message) is replaced by one C-speed ``bytes.replace``.
    """
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + _DATA_END


async def write_body(client: aiosmtplib.SMTP, data: bytes, timeout: float) -> SMTPResponse:
    """Send a message's body after ``354`` and read the reply to its final dot.

    This is the one place that uses aiosmtplib's internals (``SMTP.protocol``, its
    ``_command_lock``, ``write`` and ``read_response``): ``SMTP.data()`` re-encodes and
    re-normalises every message with a regex, about half of its CPU cost per message, where
    ``stuff`` is one C-speed ``bytes.replace``. ``tests/test_smtp_internals.py`` fails loudly
    if a new aiosmtplib changes what this relies on; ``SMTPConfig.fast_data=False`` falls
    back to the public ``SMTP.data()`` path.
    """
    protocol = client.protocol
    lock = getattr(protocol, "_command_lock", None) if protocol is not None else None
    if protocol is None or lock is None:
        raise SMTPServerDisconnected("Connection lost")
    async with lock:  # as aiosmtplib's own commands do: one exchange at a time
        protocol._response_pending = True  # a reply is due: never dropped as unsolicited
        protocol.write(stuff(data))
        return await protocol.read_response(timeout=timeout)


class SMTPChannel:
    """One authenticated connection, used by one task at a time."""

    def __init__(self, client: aiosmtplib.SMTP, config: SMTPConfig) -> None:
        self._client = client
        self._config = config

    async def send(self, message: Outgoing, ready: Awaitable[None] | None = None) -> Reply:
        client = self._client
        data_sent = False
        try:
            refusal = await self._envelope(message)
            if refusal is not None:
                await self._reset()
                return refusal
            if not self._config.fast_data:
                if ready is not None:
                    await ready
                data_sent = True
                return await _public_data(client, message.data, self._config.timeout)
            start = await client.execute_command(b"DATA")
            if start.code != 354:
                await self._reset()
                return Reply(start.code, start.message, "data")
            if ready is not None:
                try:
                    await ready
                except BaseException:
                    # Nothing of the message went out; a DATA phase cannot be reset, only
                    # abandoned with the connection, which makes the server discard it.
                    client.close()
                    raise
            data_sent = True
            reply = await write_body(client, message.data, self._config.timeout)
        except (SMTPServerDisconnected, SMTPTimeoutError, ConnectionError, OSError) as exc:
            client.close()
            text = "timed out" if isinstance(exc, TimeoutError) else "connection lost"
            raise ChannelBroken(
                Reply(0, f"{text} ({self._config.where})"), data_sent=data_sent
            ) from None
        except SMTPResponseException as exc:
            client.close()
            raise ChannelBroken(Reply(exc.code, exc.message), data_sent=data_sent) from None
        except BaseException:
            # Cancelled mid-command (a forced quit): the session is in an unknown state, so
            # no QUIT may follow as if it were a command; hang up.
            client.close()
            raise
        if reply.code == 421:
            client.close()
        return Reply(reply.code, reply.message, "message")

    async def _envelope(self, message: Outgoing) -> Reply | None:
        """MAIL and RCPT for one recipient; a refusal is returned as a reply tagged with the
        command it answered.

        Addresses were validated and normalised upstream, so they go out as they are,
        without aiosmtplib's per-call address re-parsing. Without SMTPUTF8 at the relay,
        internationalised domains go out in their ASCII (IDNA) form; only a non-ASCII local
        part truly needs SMTPUTF8, and such a recipient is refused here, not at the relay.
        """
        sender, recipient = message.sender, message.recipient.email
        options: tuple[bytes, ...] = ()
        if not (sender.isascii() and recipient.isascii()):
            if self._client.supports_extension("smtputf8"):
                options = (b"SMTPUTF8",)
            else:
                sender, recipient = ascii_domain_address(sender), ascii_domain_address(recipient)
                if not sender.isascii():
                    raise DeliveryError(
                        f"the From address {message.sender} has a non-ASCII local part, and "
                        f"{self._config.where} does not offer SMTPUTF8"
                    )
                if not recipient.isascii():
                    return Reply(553, NEEDS_SMTPUTF8.format(where=self._config.where), "local")
        if self._client.supports_extension("size"):  # the relay can refuse a big one early
            options += (b"SIZE=%d" % len(message.data),)
        reply = await self._client.execute_command(
            b"MAIL", b"FROM:<" + sender.encode("utf-8") + b">", *options
        )
        if reply.code != 250:
            return Reply(reply.code, reply.message, "mail")
        reply = await self._client.execute_command(
            b"RCPT", b"TO:<" + recipient.encode("utf-8") + b">"
        )
        if reply.code not in (250, 251):
            return Reply(reply.code, reply.message, "rcpt")
        return None

    async def _reset(self) -> None:
        try:
            await self._client.rset()
        except (SMTPException, OSError):
            self._client.close()
            raise ChannelBroken(Reply(0, f"connection lost ({self._config.where})")) from None

    async def close(self) -> None:
        if not self._client.is_connected:
            self._client.close()
            return
        try:
            await asyncio.wait_for(self._client.quit(), timeout=5)
        except (SMTPException, OSError, TimeoutError):
            self._client.close()
        except BaseException:
            self._client.close()  # cancelled mid-QUIT: still release the socket
            raise


class SMTPTransport:
    """Opens authenticated connections to one relay."""

    def __init__(self, config: SMTPConfig) -> None:
        if config.security not in ("starttls", "tls", "none"):
            raise ConfigError(f"setting MAILER_SMTP_SECURITY: unknown mode {config.security!r}")
        if config.security == "none" and not (config.loopback or config.allow_plaintext):
            raise ConfigError(
                f"setting MAILER_SMTP_SECURITY: 'none' sends mail and passwords in clear to "
                f"{config.host}; it is allowed only for a loopback host",
                hint="use starttls (port 587) or tls (port 465), or set "
                "MAILER_SMTP_INSECURE_ALLOW_PLAINTEXT=true if you really mean it",
            )
        self.config = config
        self._context = _tls_context(config) if config.security != "none" else None
        # Every client this transport created, and the socket transport each connected
        # with, so that none can outlive the run whatever path abandoned it (a cancelled
        # task, an error between connect and use, a TLS close still waiting for the
        # server's close_notify when the run ends).
        self._clients: set[aiosmtplib.SMTP] = set()
        self._sockets: list[asyncio.BaseTransport] = []

    async def open_channel(self) -> SMTPChannel:
        client, _ = await self._connect()
        return SMTPChannel(client, self.config)

    async def finish(self, *, complete: bool) -> None:
        await self._release()

    async def _release(self) -> None:
        """Close every connection for good. Closing a TLS connection is asynchronous (it waits
        for the server's close_notify); by now every session has ended with QUIT or been
        given up, so the sockets are aborted rather than left to the garbage collector
        when the caller's event loop ends."""
        for client in self._clients:
            client.close()
        for transport in self._sockets:
            if isinstance(transport, asyncio.Transport):
                transport.abort()
        self._clients.clear()
        self._sockets.clear()
        await _settle_closes()

    async def probe(self) -> ServerInfo:
        """Connect, EHLO, upgrade TLS, authenticate, report, and QUIT without sending.
        ``DeliveryError`` if the relay cannot be used now (a refusal, a dropped connection)."""
        try:
            client, info = await self._connect()
            await SMTPChannel(client, self.config).close()
        except ChannelBroken as exc:
            raise DeliveryError(
                f"{self.config.where} is not accepting connections now: {exc.reply}",
                hint="try again later",
            ) from None
        finally:
            await self._release()
        return info

    async def _connect(self) -> tuple[aiosmtplib.SMTP, ServerInfo]:
        cfg = self.config
        client = aiosmtplib.SMTP(
            hostname=cfg.host,
            port=cfg.port,
            timeout=cfg.timeout,
            use_tls=cfg.security == "tls",
            start_tls=False,  # upgraded by hand below, so that it is required, not optional
            tls_context=self._context,
            local_hostname=cfg.helo_name,
        )
        self._clients.add(client)
        with _session_errors(client, cfg):
            banner = await client.connect()
            if client.transport is not None:
                self._sockets.append(client.transport)
            await client.ehlo()
            if cfg.security == "starttls":
                if not client.supports_extension("starttls"):
                    raise DeliveryError(
                        f"{cfg.where} does not offer STARTTLS; refusing to go on in clear "
                        "(no credentials were sent)",
                        hint="a local test server: set MAILER_SMTP_SECURITY=none"
                        if cfg.loopback
                        else "for implicit TLS (usually port 465) set MAILER_SMTP_SECURITY=tls",
                    )
                await _upgrade(client, cfg)
                await client.ehlo()
            authenticated = None
            if cfg.username:
                await client.login(cfg.username, cfg.password or "")
                authenticated = cfg.username
        tls = None
        ssl_object = client.get_transport_info("ssl_object")
        if isinstance(ssl_object, ssl.SSLObject):
            cipher = ssl_object.cipher()
            tls = f"{ssl_object.version()} {cipher[0] if cipher else ''}".strip()
        info = ServerInfo(
            banner=banner.message,
            extensions=dict(client.esmtp_extensions),
            tls=tls,
            authenticated_as=authenticated,
        )
        return client, info


@contextlib.contextmanager
def _session_errors(client: aiosmtplib.SMTP, cfg: SMTPConfig) -> Iterator[None]:
    """Map what opening a session can raise to our errors, closing the client on any:

    - a 4xx reply (at connect, EHLO, AUTH…), a timeout or a dropped connection: the
      relay is busy now; ``ChannelBroken``, which the engine retries with backoff;
    - failed authentication, TLS, a 5xx reply, an unreachable host: ``DeliveryError``,
      which stops the run at once (no retry storm against a relay that refuses us).

    Each error is chained to its cause but for a failed AUTH, whose exchange is not kept.
    """
    where = cfg.where
    try:
        yield
    except BaseException as exc:
        client.close()
        if isinstance(exc, MailerError | asyncio.CancelledError):
            raise
        if isinstance(exc, SMTPAuthenticationError):
            raise DeliveryError(
                f"authentication failed at {where}: {exc.code} {exc.message}",
                hint="check MAILER_SMTP_USERNAME and MAILER_SMTP_PASSWORD",
            ) from None
        if isinstance(exc, ssl.SSLError):
            raise _tls_failed(cfg, exc) from exc
        if isinstance(exc, SMTPResponseException):
            if 400 <= exc.code < 500:
                raise ChannelBroken(Reply(exc.code, exc.message)) from exc
            verb = "refused the connection" if isinstance(exc, SMTPConnectError) else "refused us"
            raise DeliveryError(f"{where} {verb}: {exc.code} {exc.message}") from exc
        if isinstance(exc, SMTPTimeoutError | SMTPServerDisconnected):
            raise ChannelBroken(Reply(0, f"{_reason(exc)} ({where})")) from exc
        if isinstance(exc, SMTPException | OSError) and "WRONG_VERSION_NUMBER" in _reason(exc):
            raise _not_tls(cfg) from exc  # aiosmtplib wraps the SSL error of a TLS connect
        if isinstance(exc, SMTPException | OSError):
            raise DeliveryError(
                f"cannot connect to {where}: {_reason(exc)}",
                hint="check MAILER_SMTP_HOST and MAILER_SMTP_PORT (`mailer check` tries them)",
            ) from exc
        raise


async def _upgrade(client: aiosmtplib.SMTP, cfg: SMTPConfig) -> None:
    """STARTTLS. Any failure once the server has agreed (a handshake it drops, a certificate
    that does not verify) is a TLS failure, which stops the run: retrying would only repeat
    it, and going on in clear is never an option."""
    try:
        await client.starttls()
    except SMTPResponseException:
        raise  # the server refused STARTTLS itself: reported with its reply
    except ssl.SSLError as exc:
        client.close()
        raise _tls_failed(cfg, exc) from None
    except (SMTPException, OSError) as exc:
        client.close()
        raise DeliveryError(
            f"TLS failed with {cfg.where}: the connection was lost during the TLS handshake "
            f"after the server agreed to STARTTLS ({_reason(exc)})",
            hint="the relay may not speak TLS on this port, or something between us "
            "interferes; check MAILER_SMTP_SECURITY and MAILER_SMTP_PORT",
        ) from None


def _not_tls(cfg: SMTPConfig) -> DeliveryError:
    """TLS spoken to a server that speaks plain SMTP on that port."""
    return DeliveryError(
        f"TLS failed with {cfg.where}: the server does not speak TLS on this port",
        hint="for port 587 set MAILER_SMTP_SECURITY=starttls (the default); implicit TLS "
        "(tls) is usually port 465",
    )


def _tls_failed(cfg: SMTPConfig, exc: ssl.SSLError) -> DeliveryError:
    if "WRONG_VERSION_NUMBER" in str(exc):
        return _not_tls(cfg)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return DeliveryError(
            f"TLS failed with {cfg.where}: the server's certificate does not verify "
            f"({exc.verify_message or _reason(exc)})",
            hint="if the relay uses a private CA, point MAILER_SMTP_CA_FILE at its "
            "certificate (PEM); certificates are always verified",
        )
    return DeliveryError(f"TLS failed with {cfg.where}: {_reason(exc)}")


async def _public_data(client: aiosmtplib.SMTP, data: bytes, timeout: float) -> Reply:
    """DATA and the body through aiosmtplib's public ``SMTP.data()`` (the mark was awaited
    before DATA rather than after 354; kept to compare in bench/ and as a fallback)."""
    try:
        reply = await client.data(data, timeout=timeout)
    except SMTPDataError as exc:
        return Reply(exc.code, exc.message, "message")
    return Reply(reply.code, reply.message, "message")


async def _settle_closes() -> None:
    """Let the loop run the connection_lost callbacks of sockets just closed, so that
    nothing is left half-closed if the caller's event loop ends right after."""
    for _ in range(3):
        await asyncio.sleep(0)


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text}: {cause}"
    return " ".join(text.split())
