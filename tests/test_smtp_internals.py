"""The one place that uses aiosmtplib's internals (``transports.smtp.write_body``) stays honest.

If a new aiosmtplib renames or changes what ``write_body`` relies on, these fail loudly; the
public ``SMTP.data()`` path (``SMTPConfig.fast_data=False``) must keep delivering the same
bytes, so there is always a way back.
"""

from __future__ import annotations

import asyncio
import inspect

import aiosmtplib
import pytest
from aiosmtplib.protocol import SMTPProtocol

from mailer.delivery import Delivery
from mailer.errors import DeliveryError
from mailer.models import DeliveryPolicy, Outgoing, Recipient, SMTPConfig, Status
from mailer.transports.smtp import SMTPTransport, write_body
from tests.smtpd import Recorder, smtp_server

SENDER = "news@example.com"


def messages(n: int, size: int = 200) -> list[Outgoing]:
    out = []
    for i in range(1, n + 1):
        body = ("line of text\r\n.leading dot\r\n" * (size // 28 + 1))[:size]
        data = f"From: {SENDER}\r\nTo: u{i}@example.org\r\nSubject: {i}\r\n\r\n{body}\r\n"
        out.append(Outgoing(i, Recipient(f"u{i}@example.org"), SENDER, f"<{i}@x>", data.encode()))
    return out


def transport(port: int, *, fast: bool) -> SMTPTransport:
    config = SMTPConfig(
        host="127.0.0.1", port=port, security="none", loopback=True, timeout=5, fast_data=fast
    )
    return SMTPTransport(config)


def test_the_internals_write_body_uses_are_still_there() -> None:
    protocol_source = inspect.getsource(SMTPProtocol)
    assert "self._command_lock" in protocol_source
    assert "self._response_pending" in protocol_source
    assert callable(SMTPProtocol.write)
    parameters = inspect.signature(SMTPProtocol.read_response).parameters
    assert "timeout" in parameters
    assert "self.protocol" in inspect.getsource(aiosmtplib.SMTP)  # the client's protocol


async def test_write_body_holds_the_command_lock_and_gets_the_reply() -> None:
    with smtp_server() as server:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=server.port, timeout=5)
        await client.connect()
        try:
            await client.ehlo()
            await client.execute_command(b"MAIL", b"FROM:<a@example.org>")
            await client.execute_command(b"RCPT", b"TO:<b@example.org>")
            assert (await client.execute_command(b"DATA")).code == 354
            protocol = client.protocol
            assert protocol is not None
            lock = protocol._command_lock
            assert isinstance(lock, asyncio.Lock)
            body = asyncio.ensure_future(write_body(client, b"Subject: x\r\n\r\nhi\r\n", 5))
            await asyncio.sleep(0)
            assert lock.locked()  # a concurrent command would wait for the reply
            reply = await body
            assert reply.code == 250
        finally:
            await client.quit()
    assert server.recorder.received[0].data.endswith(b"hi\r\n")


@pytest.mark.parametrize("fast", [True, False])
async def test_both_body_paths_deliver_the_same_bytes(fast: bool) -> None:
    recorder = Recorder()
    sent = messages(5)
    with smtp_server(recorder) as server:
        engine = Delivery(transport(server.port, fast=fast), sent, DeliveryPolicy(concurrency=2))
        results = [r async for r in engine.run()]
    assert {r.status for r in results} == {Status.SENT}
    got = {r.recipients[0]: r.data for r in recorder.received}
    for message in sent:
        assert got[message.recipient.email].rstrip(b"\r\n") == message.data.rstrip(b"\r\n")


@pytest.mark.parametrize("fast", [True, False])
async def test_size_is_declared_and_an_oversized_issue_stops_the_run_failing_no_one(
    fast: bool,
) -> None:
    recorder = Recorder()
    with smtp_server(recorder, data_size_limit=1000) as server:
        small = transport(server.port, fast=fast)
        ok = [r async for r in Delivery(small, messages(2, size=100), DeliveryPolicy()).run()]
        assert {r.status for r in ok} == {Status.SENT}
        assert all(any(o.upper().startswith("SIZE=") for o in r.options) for r in recorder.mails)
        big = transport(server.port, fast=fast)
        seen = []
        with pytest.raises(DeliveryError, match="refused us"):
            async for result in Delivery(big, messages(3, size=5000), DeliveryPolicy()).run():
                seen.append(result)
    assert {r.status for r in seen} <= {Status.UNSENT}  # back to pending, never failed
    assert len(recorder.received) == 2
