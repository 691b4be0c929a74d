"""Real sending against aiosmtpd servers on 127.0.0.1: plain, STARTTLS+AUTH, and every fault."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable
from pathlib import Path

import pytest
import trustme

from mailer.delivery import Delivery, DeliveryPolicy
from mailer.errors import ConfigError, DeliveryError
from mailer.ledger import LedgerError
from mailer.models import Outgoing, Recipient, SendResult, Status
from mailer.transports.smtp import SMTPConfig, SMTPTransport, stuff
from tests.cli import invoke
from tests.process import run_mailer
from tests.smtpd import Recorder, closed_port, smtp_server

SENDER = "news@example.com"


def make_messages(n: int, *, prefix: str = "user") -> list[Outgoing]:
    out = []
    for i in range(1, n + 1):
        address = f"{prefix}{i}@example.org"
        data = (
            f"From: {SENDER}\r\nTo: {address}\r\nSubject: test {i}\r\n"
            f"Message-ID: <m{i}.{prefix}@example.com>\r\n\r\nhello {i}\r\n.leading dot\r\n"
        ).encode()
        out.append(Outgoing(i, Recipient(address), SENDER, f"<m{i}.{prefix}@example.com>", data))
    return out


def plain(port: int, **kw: object) -> SMTPTransport:
    return SMTPTransport(
        SMTPConfig(host="127.0.0.1", port=port, security="none", loopback=True, timeout=2, **kw)  # type: ignore[arg-type]
    )


FAST = DeliveryPolicy(concurrency=4, max_attempts=3, retry_base_delay=0.01)


async def run(
    transport: SMTPTransport, messages: list[Outgoing], policy: DeliveryPolicy = FAST
) -> list[SendResult]:
    return [r async for r in Delivery(transport, messages, policy).run()]


def by_status(results: list[SendResult]) -> dict[Status, set[str]]:
    out: dict[Status, set[str]] = {}
    for r in results:
        out.setdefault(r.status, set()).add(r.email)
    return out


def test_stuff_dot_stuffs_and_terminates() -> None:
    assert stuff(b".a\r\nb\r\n.c\r\n") == b"..a\r\nb\r\n..c\r\n.\r\n"


async def test_plain_smtp_delivers_each_message_once_with_its_message_id() -> None:
    with smtp_server() as server:
        messages = make_messages(40)
        results = await run(plain(server.port), messages)
    assert {r.status for r in results} == {Status.SENT}
    assert len(results) == 40
    got = {(m.recipients[0], m.message_id) for m in server.recorder.received}
    assert got == {(m.recipient.email, m.message_id) for m in messages}
    # dot-stuffing round-trips: the server un-stuffs the leading dot
    assert b"\r\n.leading dot" in server.recorder.received[0].data


async def test_550_fails_only_that_recipient_and_is_never_retried() -> None:
    recorder = Recorder(refuse={"user3@example.org": "550 5.1.1 no such user"})
    with smtp_server(recorder) as server:
        results = await run(plain(server.port), make_messages(10))
    groups = by_status(results)
    assert groups[Status.FAILED] == {"user3@example.org"}
    assert len(groups[Status.SENT]) == 9
    assert recorder.rcpt_attempts["user3@example.org"] == 1
    failed = next(r for r in results if r.status is Status.FAILED)
    assert failed.code == 550 and "5.1.1" in failed.reply


async def test_451_once_is_retried_and_delivered() -> None:
    recorder = Recorder(tempfail_once={"user2@example.org"})
    with smtp_server(recorder) as server:
        results = await run(plain(server.port), make_messages(5))
    assert {r.status for r in results} == {Status.SENT}
    retried = next(r for r in results if r.email == "user2@example.org")
    assert retried.attempts == 2
    assert recorder.by_recipient()["user2@example.org"] == 1


async def test_persistent_451_ends_deferred_after_max_attempts() -> None:
    recorder = Recorder(refuse={"user1@example.org": "451 4.7.1 greylisted"})
    with smtp_server(recorder) as server:
        results = await run(plain(server.port), make_messages(3))
    deferred = next(r for r in results if r.email == "user1@example.org")
    assert deferred.status is Status.DEFERRED and deferred.attempts == FAST.max_attempts
    assert recorder.rcpt_attempts["user1@example.org"] == FAST.max_attempts


async def test_hangup_at_data_command_is_retried_on_a_new_connection() -> None:
    recorder = Recorder(drop_at_data_once={"user4@example.org"})
    with smtp_server(recorder) as server:
        results = await run(plain(server.port), make_messages(8))
    assert {r.status for r in results} == {Status.SENT}
    assert recorder.by_recipient()["user4@example.org"] == 1


async def test_hangup_after_final_dot_is_unknown_and_not_resent() -> None:
    recorder = Recorder(drop_after_data_once={"user5@example.org"})
    with smtp_server(recorder) as server:
        results = await run(plain(server.port), make_messages(8))
    groups = by_status(results)
    assert groups[Status.UNKNOWN] == {"user5@example.org"}
    assert len(groups[Status.SENT]) == 7
    assert recorder.rcpt_attempts["user5@example.org"] == 1  # never sent twice


async def test_server_that_stalls_past_the_timeout_gives_unknown_not_a_hang() -> None:
    recorder = Recorder(stall_once={"user2@example.org": 3.0})
    with smtp_server(recorder) as server:
        transport = SMTPTransport(
            SMTPConfig(
                host="127.0.0.1", port=server.port, security="none", loopback=True, timeout=0.5
            )
        )
        results = await run(transport, make_messages(4))
    groups = by_status(results)
    assert groups[Status.UNKNOWN] == {"user2@example.org"}
    assert len(groups[Status.SENT]) == 3


async def test_421_at_connect_is_retried_then_delivered() -> None:
    with smtp_server(busy=2) as server:
        results = await run(
            plain(server.port),
            make_messages(3),
            DeliveryPolicy(concurrency=1, max_attempts=4, retry_base_delay=0.01),
        )
    assert {r.status for r in results} == {Status.SENT}


async def test_421_forever_stops_the_run_with_one_clear_error() -> None:
    with smtp_server(busy=1000) as server:
        with pytest.raises(DeliveryError, match="keeps refusing connections: 421"):
            await run(
                plain(server.port),
                make_messages(5),
                DeliveryPolicy(concurrency=2, max_attempts=2, retry_base_delay=0.01),
            )


async def test_unreachable_server_stops_at_once() -> None:
    with closed_port() as port:
        transport = plain(port)
        with pytest.raises(DeliveryError, match="cannot connect"):
            await run(transport, make_messages(50))


async def test_policy_rejections_in_a_row_halt_the_campaign() -> None:
    refuse = {f"user{i}@example.org": "550 5.7.1 sending blocked by policy" for i in range(1, 61)}
    recorder = Recorder(refuse=refuse)
    with smtp_server(recorder) as server:
        engine = Delivery(
            plain(server.port),
            make_messages(60),
            DeliveryPolicy(concurrency=1, policy_halt_after=20),
        )
        seen = []
        with pytest.raises(DeliveryError, match="relay is refusing us"):
            async for result in engine.run():
                seen.append(result)
    assert len(seen) == 20
    assert sum(recorder.rcpt_attempts.values()) == 20


def test_security_none_is_refused_for_a_remote_host() -> None:
    with pytest.raises(ConfigError, match="MAILER_SMTP_SECURITY"):
        SMTPTransport(SMTPConfig(host="smtp.example.com", port=25, security="none"))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def tls_transport(port: int, ca_file: Path, password: str = "s3cret") -> SMTPTransport:
    return SMTPTransport(
        SMTPConfig(
            host="127.0.0.1",
            port=port,
            security="starttls",
            username="editor",
            password=password,
            ca_file=ca_file,
            timeout=5,
        )
    )


async def test_starttls_with_verified_certificate_and_auth(
    server_tls: ssl.SSLContext, ca_file: Path
) -> None:
    with smtp_server(tls_context=server_tls, users={"editor": "s3cret"}) as server:
        results = await run(tls_transport(server.port, ca_file), make_messages(6))
        info = await tls_transport(server.port, ca_file).probe()
    assert {r.status for r in results} == {Status.SENT}
    assert len(server.recorder.received) == 6
    assert info.tls and info.tls.startswith("TLS")
    assert info.authenticated_as == "editor"


async def test_535_auth_failure_stops_at_once_without_retry_storm(
    server_tls: ssl.SSLContext, ca_file: Path
) -> None:
    with smtp_server(tls_context=server_tls, users={"editor": "s3cret"}) as server:
        with pytest.raises(DeliveryError, match=r"authentication failed .*535"):
            await run(tls_transport(server.port, ca_file, password="wrong"), make_messages(20))
    assert len(server.recorder.received) == 0
    # one connection only; aiosmtplib tries each advertised mechanism (PLAIN, LOGIN) once
    assert len(server.recorder.auth_attempts) <= 2


async def test_untrusted_certificate_is_a_tls_failure(
    server_tls: ssl.SSLContext, tmp_path: Path
) -> None:
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with smtp_server(tls_context=server_tls, users={"editor": "s3cret"}) as server:
        with pytest.raises(DeliveryError, match="TLS failed"):
            await run(tls_transport(server.port, other), make_messages(2))
    assert server.recorder.auth_attempts == []


async def test_server_without_starttls_never_sees_credentials(ca_file: Path) -> None:
    recorder = Recorder()
    with smtp_server(recorder) as server:
        with pytest.raises(DeliveryError, match="does not offer STARTTLS"):
            await run(tls_transport(server.port, ca_file), make_messages(2))
    assert recorder.auth_attempts == [] and recorder.received == []


# --- the command line ------------------------------------------------------------------


@pytest.fixture
def big_list(sample: Path) -> Path:
    path = sample / "lists" / "big.csv"
    rows = ["email,name"] + [f"reader{i}@example.org,Reader {i}" for i in range(1, 301)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_digest_send_300_recipients_with_550_and_451(big_list: Path) -> None:
    recorder = Recorder(
        refuse={"reader7@example.org": "550 5.1.1 no such user"},
        tempfail_once={"reader9@example.org"},
    )
    with smtp_server(recorder) as server:
        result = invoke(
            *(
                "digest",
                "--send",
                "--yes",
                "--date",
                "2026-11-27",
                "--list",
                "big",
                "--concurrency",
                "6",
            ),
            env=server.env(),
        )
    assert result.exit_code == 1, result.output
    counts = recorder.by_recipient()
    assert len(counts) == 299 and set(counts.values()) == {1}
    assert "reader7@example.org" not in counts
    assert recorder.rcpt_attempts["reader7@example.org"] == 1
    assert counts["reader9@example.org"] == 1 and recorder.rcpt_attempts["reader9@example.org"] == 2
    assert "failed: reader7@example.org: 550" in result.output
    # every accepted message is the digest, addressed to the envelope recipient
    for received in recorder.received[:20]:
        msg = received.message
        assert msg["To"].addresses[0].addr_spec == received.recipients[0]
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


@pytest.mark.slow
def test_digest_send_exit_0_when_all_sent_and_refuses_sample_secret(sample: Path) -> None:
    with smtp_server() as server:
        env = server.env()
        done = run_mailer("digest", "--send", "--yes", "--date", "2026-11-27", cwd=sample, env=env)
        assert done.returncode == 0, done.stderr
        assert len(server.recorder.received) == 5
        env.pop("MAILER_SECRET_KEY")
        refused = run_mailer(
            "digest", "--send", "--yes", "--date", "2026-11-27", cwd=sample, env=env
        )
    assert refused.returncode == 2
    assert "MAILER_SECRET_KEY" in refused.stderr and "Traceback" not in refused.stderr
    assert len(server.recorder.received) == 5


def test_check_reports_capabilities_and_sends_nothing(
    server_tls: ssl.SSLContext, ca_file: Path, sample: Path
) -> None:
    with smtp_server(tls_context=server_tls, users={"editor": "s3cret"}) as server:
        env = server.env(
            MAILER_SMTP_SECURITY="starttls",
            MAILER_SMTP_USERNAME="editor",
            MAILER_SMTP_PASSWORD="s3cret",
            MAILER_SMTP_CA_FILE=str(ca_file),
        )
        result = invoke("check", env=env)
        bad = invoke("check", env={**env, "MAILER_SMTP_PASSWORD": "hunter2-wrong"})
    assert result.exit_code == 0, result.output
    assert "Authenticated: editor" in result.output and "AUTH" in result.output
    assert server.recorder.received == []
    assert bad.exit_code == 3
    assert "authentication failed" in bad.output and "hunter2-wrong" not in bad.output


def test_digest_skips_suppressed_and_suppresses_hard_bounces(big_list: Path) -> None:
    (big_list.parent / "suppressed.csv").write_text(
        "email,reason,date\nreader2@example.org,unsubscribed,2026-11-01\n", encoding="utf-8"
    )
    recorder = Recorder(refuse={"reader5@example.org": "550 5.1.1 no such user"})
    with smtp_server(recorder) as server:
        args = [
            "digest",
            "--send",
            "--yes",
            "--date",
            "2026-11-27",
            "--list",
            "big",
            "--limit",
            "10",
        ]
        first = invoke(*args, env=server.env())
        assert first.exit_code == 1, first.output
        assert "Skipped 1 suppressed address." in first.output
        assert "Added 1 hard-bounced address to suppression." in first.output
        assert "reader2@example.org" not in recorder.rcpt_attempts
        # a new campaign freezes a new audience, without both suppressed addresses
        second = invoke(*args, "--campaign", "again", env=server.env())
    assert "Skipped 2 suppressed addresses." in second.output
    assert recorder.rcpt_attempts["reader5@example.org"] == 1
    suppressed = (big_list.parent / "suppressed.csv").read_text(encoding="utf-8")
    assert "reader5@example.org,bounced" in suppressed


async def test_the_ledger_mark_gates_the_body_and_a_refused_mark_sends_nothing() -> None:
    """The engine hands each message's mark to the channel, which awaits it after DATA is
    accepted and before any of the body goes out; if the mark fails, the run stops and the
    server gets nothing for that recipient (the connection is abandoned mid-DATA)."""
    order: list[str] = []

    class Gate:
        def __init__(self, email: str) -> None:
            self.email = email

        def __await__(self):  # type: ignore[no-untyped-def]
            order.append(f"awaited {self.email}")
            if self.email == "user3@example.org":
                raise RuntimeError("the ledger refused user3")
            return iter(())

    def before_send(message: Outgoing, attempt: int) -> Gate:
        order.append(f"queued {message.recipient.email}")
        return Gate(message.recipient.email)

    recorder = Recorder(refuse={"user2@example.org": "550 5.1.1 no such user"})
    policy = DeliveryPolicy(concurrency=1, max_attempts=1)
    with smtp_server(recorder) as server:
        engine = Delivery(plain(server.port), make_messages(5), policy, before_send=before_send)
        results: list[SendResult] = []
        with pytest.raises(RuntimeError, match="refused user3"):
            async for result in engine.run():
                results.append(result)
    assert [r.recipients[0] for r in server.recorder.received] == ["user1@example.org"]
    # user2's RCPT was refused, so its mark was never awaited; user3's failed: nothing sent
    assert order == [
        "queued user1@example.org",
        "awaited user1@example.org",
        "queued user2@example.org",
        "queued user3@example.org",
        "awaited user3@example.org",
    ]
    # user2's refusal had no acceptance after it: held, and deferred for a later run
    assert by_status(results) == {
        Status.SENT: {"user1@example.org"},
        Status.DEFERRED: {"user2@example.org"},
    }


async def test_a_mark_that_cannot_even_be_queued_stops_the_run_with_its_error() -> None:
    """``before_send`` may fail at once (the ledger's writer cannot start): the run stops
    with that error rather than losing the worker and hanging."""
    calls = 0

    def before_send(message: Outgoing, attempt: int) -> Awaitable[None]:
        nonlocal calls
        calls += 1
        raise LedgerError("x: cannot start the ledger writer (no processes left)")

    with smtp_server() as server:
        engine = Delivery(plain(server.port), make_messages(20), FAST, before_send=before_send)
        with pytest.raises(LedgerError, match="cannot start the ledger writer"):
            async with asyncio.timeout(20):
                async for _ in engine.run():
                    pass
    assert calls >= 1
    assert server.recorder.received == []
