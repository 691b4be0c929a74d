"""Real SMTP servers for tests: aiosmtpd in-process on 127.0.0.1, with recording and faults."""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from tests.mail import parsed


@contextmanager
def closed_port() -> Iterator[int]:
    """A port on 127.0.0.1 where nothing listens: a connection is refused at once. The socket
    stays bound (not listening) until the block ends, so no other server can take the port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        yield port


@dataclass
class Received:
    sender: str
    recipients: list[str]
    data: bytes
    at: float = field(default_factory=time.monotonic)  # when its final dot was answered

    @property
    def message(self) -> EmailMessage:
        return parsed(self.data)

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])


@dataclass
class MailFrom:
    """One MAIL FROM command: its address and its options (``SIZE=``, ``SMTPUTF8``...)."""

    address: str
    options: list[str]


@dataclass
class Recorder:
    """An aiosmtpd handler that records every accepted message and can inject faults.

    Faults, each keyed by recipient address:
    - ``refuse``: answer RCPT with this reply (e.g. ``550 5.1.1 no such user``) every time;
    - ``tempfail_once``: answer RCPT with 451 the first time only;
    - ``drop_after_data_once``: hang up after the final dot, before replying (first time);
    - ``drop_at_data_once``: hang up at the DATA command (before any content), first time;
    - ``stall_once``: sleep this long after the final dot before replying (first time).

    Refusals of every transaction, as a relay that refuses *us* gives them (clear them to
    "fix the relay"):
    - ``mail_reply``: answer every MAIL FROM with this reply;
    - ``rcpt_reply``: answer every RCPT with this reply.
    """

    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    tempfail_once: set[str] = field(default_factory=set)
    drop_after_data_once: set[str] = field(default_factory=set)
    drop_at_data_once: set[str] = field(default_factory=set)
    stall_once: dict[str, float] = field(default_factory=dict)
    mail_reply: str | None = None
    rcpt_reply: str | None = None
    delay: float = 0.0  # seconds to wait after the final dot before accepting
    mail_from: list[str] = field(default_factory=list)  # every MAIL FROM address seen
    mails: list[MailFrom] = field(default_factory=list)  # and each with its options
    rcpt_attempts: Counter[str] = field(default_factory=Counter)
    auth_attempts: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_MAIL(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self.lock:
            self.mail_from.append(address)
            self.mails.append(MailFrom(address, list(options)))
            if self.mail_reply is not None:
                return self.mail_reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        with self.lock:
            self.rcpt_attempts[address] += 1
            if self.rcpt_reply is not None:
                return self.rcpt_reply
            if address in self.refuse:
                return self.refuse[address]
            if address in self.tempfail_once:
                self.tempfail_once.discard(address)
                return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        rcpt = envelope.rcpt_tos[0]
        if rcpt in self.drop_after_data_once:
            self.drop_after_data_once.discard(rcpt)
            server.transport.close()
            return "250 never seen"
        if rcpt in self.stall_once:
            delay = self.stall_once.pop(rcpt)
            await asyncio.sleep(delay)
            return "451 4.4.2 too late"
        if self.delay:
            await asyncio.sleep(self.delay)
        with self.lock:
            self.received.append(
                Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content)
            )
        return "250 2.0.0 queued"

    def by_recipient(self) -> Counter[str]:
        return Counter(r for msg in self.received for r in msg.recipients)


class FaultySMTP(SMTP):
    """Answers 421 to the first ``busy`` connections, and can hang up at DATA."""

    def __init__(self, handler: Recorder, *, busy: list[int], **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._busy = busy
        self._recorder = handler

    async def _handle_client(self) -> None:
        if self._busy[0] > 0:
            self._busy[0] -= 1
            await self.push("421 4.3.2 too busy, try later")
            self.transport.close()
            return
        await super()._handle_client()

    async def smtp_DATA(self, arg: str) -> None:
        envelope = self.envelope
        if envelope is not None and envelope.rcpt_tos:
            rcpt = envelope.rcpt_tos[0]
            if rcpt in self._recorder.drop_at_data_once:
                self._recorder.drop_at_data_once.discard(rcpt)
                self.transport.close()
                return
        await super().smtp_DATA(arg)


class _Controller(Controller):
    def __init__(self, handler: Recorder, *, busy: int = 0, **kwargs: Any) -> None:
        self._busy = [busy]
        super().__init__(handler, **kwargs)

    protocol_class: type[SMTP] | None = None

    def factory(self) -> SMTP:
        cls = self.protocol_class or FaultySMTP
        return cls(self.handler, busy=self._busy, **self.SMTP_kwargs)

    async def _create_server(self) -> asyncio.AbstractServer:
        # Bound to port 0, so the system picks a free port and nobody can take it between
        # choosing and binding. ``start()`` then connects to ``self.port`` to check that the
        # server answers, so the real port is set before that.
        server = await self.loop.create_server(
            self._factory_invoker, host=self.hostname, port=0, ssl=self.ssl_context
        )
        self.port = server.sockets[0].getsockname()[1]
        return server


# What a test send is from, and where its unsubscribe links go: not the samples, which
# --send refuses. Tests that check these values read them from here (or from the env).
TEST_FROM = "newsletter@example.org"
TEST_UNSUBSCRIBE_URL = "https://news.example.org/unsubscribe"
# The site a test send's links and images are on: the sample's market hall article has a
# local image, which a send carries only from a public site (issue 13).
TEST_PUBLIC_URL = "https://news.example.org"


@dataclass
class Server:
    host: str
    port: int
    recorder: Recorder

    def env(self, **extra: str) -> dict[str, str]:
        values = {
            "MAILER_SMTP_HOST": self.host,
            "MAILER_SMTP_PORT": str(self.port),
            "MAILER_SMTP_SECURITY": "none",
            "MAILER_SMTP_TIMEOUT": "5",
            "MAILER_SECRET_KEY": "test-secret-key-0123456789-abcdefghijklmnop",
            "MAILER_RETRY_BASE_DELAY": "0.02",
            # --send refuses the sample From address and unsubscribe link (issue 13).
            "MAILER_FROM": TEST_FROM,
            "MAILER_UNSUBSCRIBE_URL": TEST_UNSUBSCRIBE_URL,
            "MAILER_PUBLIC_URL": TEST_PUBLIC_URL,
        }
        values.update(extra)
        return values


@contextmanager
def smtp_server(
    recorder: Recorder | None = None,
    *,
    busy: int = 0,
    tls_context: ssl.SSLContext | None = None,
    users: dict[str, str] | None = None,
    smtputf8: bool = True,
    data_size_limit: int | None = None,
    factory: type[SMTP] | None = None,
) -> Iterator[Server]:
    """Start aiosmtpd on 127.0.0.1, on a port the system picks (``Server.port``); with
    ``tls_context`` it offers STARTTLS (required for AUTH); with ``users`` it requires AUTH;
    ``smtputf8=False`` is a relay without SMTPUTF8; ``data_size_limit`` is the SIZE it
    declares and enforces (aiosmtpd's default otherwise); ``factory`` replaces the server's
    protocol class (a subclass of ``FaultySMTP``)."""
    recorder = recorder or Recorder()
    kwargs: dict[str, Any] = {"ident": "mailer-test", "enable_SMTPUTF8": smtputf8}
    if data_size_limit is not None:
        kwargs.update(data_size_limit=data_size_limit)
    if tls_context is not None:
        kwargs.update(tls_context=tls_context, require_starttls=False)
    if users is not None:

        def authenticator(
            server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any
        ) -> AuthResult:
            assert isinstance(auth_data, LoginPassword)
            login = auth_data.login.decode()
            recorder.auth_attempts.append(login)
            ok = users.get(login) == auth_data.password.decode()
            return AuthResult(success=ok, handled=False)

        kwargs.update(
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=tls_context is not None,
        )
    controller = _Controller(recorder, busy=busy, hostname="127.0.0.1", port=0, **kwargs)
    if factory is not None:
        controller.protocol_class = factory
    controller.start()
    port: int = controller.port
    try:
        yield Server("127.0.0.1", port, recorder)
    finally:
        controller.stop()
        # Collect what the test left for the garbage collector here, where it is attributable.
        # The server's own accepted connections are tolerated: before Python 3.12,
        # server.close() does not close them. A client socket left open is the client's bug
        # and fails the test (a TLS close still waiting for close_notify when the event loop
        # ended was one: SMTPTransport now aborts its sockets at the end of a run).
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            gc.collect()
        leaked = [
            str(w.message)
            for w in caught
            if "unclosed <socket.socket" in str(w.message)
            and f"laddr=('127.0.0.1', {port})" not in str(w.message)
        ]
        assert not leaked, f"a client left sockets open: {leaked}"
