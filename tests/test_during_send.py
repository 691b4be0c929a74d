"""What happens while a send runs: unsubscribes, signals, the clock passing midnight, TLS.

Each test runs the real command in a subprocess against a real, slowed-down aiosmtpd
server, does something to it mid-run, and checks what the readers received.
"""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import trustme

from mailer.delivery import Delivery, DeliveryPolicy
from mailer.errors import DeliveryError
from mailer.models import Outgoing, Recipient
from mailer.suppression_list import RECHECK_EVERY
from mailer.transports.smtp import SMTPConfig, SMTPTransport
from tests.cli import invoke, status_json
from tests.process import faked, start_mailer, wait_until
from tests.smtpd import FaultySMTP, Recorder, Server, smtp_server

KEY = "during-send-tests-secret-key-0123456789"
GRACE = RECHECK_EVERY + 1.0  # the README's promise: an unsubscribe is honoured within this


def crowd(sample: Path, n: int, name: str = "crowd") -> list[str]:
    emails = [f"reader{i}@example.org" for i in range(1, n + 1)]
    rows = ["email,name"] + [f"{e},Reader" for e in emails]
    (sample / "lists" / f"{name}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return emails


def env(server: Server, sample: Path, **extra: str) -> dict[str, str]:
    return server.env(
        **{
            "MAILER_SECRET_KEY": KEY,
            "MAILER_LEDGER": str(sample / "state" / "ledger.sqlite3"),
            "MAILER_CONCURRENCY": "2",
            "MAILER_TIMEZONE": "UTC",
            **extra,
        }
    )


def start(server: Server, sample: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    """``mailer digest --send --list crowd ARGS``; ``extra`` may hold more than MAILER_*."""
    argv = ["digest", "--send", "--yes", "--list", "crowd", *args]
    return start_mailer(*argv, cwd=sample, env=env(server, sample, **extra))


def status(server: Server, sample: Path, *args: str) -> dict[str, Any]:
    return status_json(*args, env=env(server, sample))


# --- unsubscribes during a send ----------------------------------------------------------------


@pytest.mark.slow
def test_an_unsubscribe_during_a_send_is_honoured_by_that_send(sample: Path) -> None:
    emails = crowd(sample, 150)
    recorder = Recorder(delay=0.1)  # about 20 messages a second on 2 connections
    times: dict[str, float] = {}
    with smtp_server(recorder) as server:
        proc = start(server, sample, "--date", "2026-11-27")
        wait_until(lambda: len(recorder.received) >= 10, proc)
        leaving = emails[60:120:3]  # still ahead of the send when they leave
        for address in leaving:
            result = invoke("unsubscribe", address, env=env(server, sample))
            assert result.exit_code == 0, result.output
            times[address] = time.monotonic()
        out, errors = proc.communicate(timeout=120)
        assert proc.returncode == 0, errors  # suppressed rows are done, not pending
        doc = status(server, sample)
    arrivals = {r.recipients[0]: r.at for r in recorder.received}
    late = [a for a in leaving if a in arrivals and arrivals[a] > times[a] + GRACE]
    assert late == [], f"mailed after they unsubscribed: {late}"
    skipped = doc["counts"]["skipped"]
    assert skipped + sum(1 for a in leaving if a in arrivals) == len(leaving)
    assert skipped >= len(leaving) // 2
    assert doc["counts"]["sent"] + skipped == len(emails)
    assert doc["campaign"]["finished_at"] is not None
    assert "suppressed address" in out


@pytest.mark.slow
def test_a_campaign_with_rows_suppressed_since_it_started_finishes_with_0(sample: Path) -> None:
    emails = crowd(sample, 10)
    recorder = Recorder()
    with smtp_server(recorder) as server:
        first = start(server, sample, "--date", "2026-11-27", "--limit", "4")
        first.communicate(timeout=60)
        assert first.returncode == 0  # six left for later, none failed
        for address in emails[6:9]:
            assert invoke("unsubscribe", address, env=env(server, sample)).exit_code == 0
        again = start(server, sample, "--date", "2026-11-27")
        out, errors = again.communicate(timeout=60)
        assert again.returncode == 0, errors + out
        doc = status(server, sample)
        listed = invoke("status", "--list", "skipped", env=env(server, sample))
    assert doc["counts"]["skipped"] == 3 and doc["counts"]["sent"] == 7
    assert doc["campaign"]["finished_at"] is not None
    assert set(recorder.by_recipient()) == set(emails[:6] + emails[9:])
    assert all(address in listed.output for address in emails[6:9])


# --- signals -----------------------------------------------------------------------------------


@pytest.mark.slow
def test_sighup_drains_like_sigterm_and_the_resume_delivers_everyone_once(sample: Path) -> None:
    emails = crowd(sample, 80)
    recorder = Recorder(delay=0.01)
    with smtp_server(recorder) as server:
        proc = start(server, sample, "--date", "2026-11-27")
        wait_until(lambda: len(recorder.received) >= 20, proc)
        proc.send_signal(signal.SIGHUP)
        _, errors = proc.communicate(timeout=60)
        assert proc.returncode == 75, errors
        stopped = status(server, sample)["counts"]
        assert stopped["unknown"] == 0 and stopped["sending"] == 0
        again = start(server, sample, "--date", "2026-11-27")
        _, errors = again.communicate(timeout=60)
        assert again.returncode == 0, errors
        counts = status(server, sample)["counts"]
    assert recorder.by_recipient() == dict.fromkeys(emails, 1)
    assert counts["unknown"] == 0 and counts["sent"] == len(emails)


@pytest.mark.slow
def test_ctrl_c_before_sending_starts_exits_75_and_freezes_nothing(sample: Path) -> None:
    crowd(sample, 60_000)
    recorder = Recorder()
    ledger = sample / "state" / "ledger.sqlite3"
    with smtp_server(recorder) as server:
        proc = start(server, sample, "--date", "2026-11-27")
        wait_until(ledger.exists, proc)  # the ledger is open; the issue and audience come next
        proc.send_signal(signal.SIGINT)
        out, errors = proc.communicate(timeout=60)
        campaigns = invoke("status", "--all", "--json", env=env(server, sample))
    assert proc.returncode == 75, errors
    assert "Sending" not in out and "Traceback" not in errors
    assert "Interrupted" in errors
    assert recorder.received == []
    assert campaigns.exit_code == 0, campaigns.output
    assert json.loads(campaigns.output)["campaigns"] == []


@pytest.mark.slow
def test_three_interrupts_quit_at_once_and_say_what_is_unknown(sample: Path) -> None:
    emails = crowd(sample, 10)
    recorder = Recorder(delay=4.0)  # every message waits 4 s for its reply after the dot
    with smtp_server(recorder) as server:
        proc = start(server, sample, "--date", "2026-11-27", MAILER_SMTP_TIMEOUT="30")
        wait_until(lambda: len(recorder.mail_from) >= 2, proc)
        time.sleep(0.3)  # both messages are past their final dot, waiting
        began = time.monotonic()
        for _ in range(3):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.3)
        out, errors = proc.communicate(timeout=60)
        took = time.monotonic() - began
        counts = status(server, sample)["counts"]
        unknown = status(server, sample, "--list", "unknown")["addresses"]
    assert proc.returncode == 75, errors
    assert took < 3.5  # did not wait for the replies
    assert "Still waiting for 2 message(s) in flight" in errors
    assert "Quit at once: 2 message(s) were in flight; their outcome is unknown" in out
    assert counts["unknown"] == 2 and counts["sending"] == 0
    assert set(unknown) == set(emails[:2])
    assert counts["pending"] == len(emails) - 2


# --- the clock ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_send_resumed_after_midnight_continues_the_same_issue(sample: Path) -> None:
    emails = crowd(sample, 60)
    recorder = Recorder(delay=0.01)
    with smtp_server(recorder) as server:
        before = start(server, sample, **faked("2026-11-27 23:59:50"))
        wait_until(lambda: len(recorder.received) >= 15, before)
        before.send_signal(signal.SIGTERM)
        out, errors = before.communicate(timeout=60)
        assert before.returncode == 75, errors
        after = start(server, sample, **faked("2026-11-28 00:00:10"))
        out, errors = after.communicate(timeout=60)
        assert after.returncode == 0, errors
    assert "Resuming the unfinished issue of 2026-11-27" in out
    assert recorder.by_recipient() == dict.fromkeys(emails, 1)
    subjects = {r.message["Subject"] for r in recorder.received}
    assert subjects == {"The Sample Weekly: week of November 27, 2026"}


@pytest.mark.slow
def test_a_new_day_after_a_finished_issue_starts_the_next_one(sample: Path) -> None:
    emails = crowd(sample, 5)
    recorder = Recorder()
    with smtp_server(recorder) as server:
        first = start(server, sample, **faked("2026-11-27 12:00:00"))
        first.communicate(timeout=60)
        assert first.returncode == 0
        second = start(server, sample, **faked("2026-11-28 12:00:00"))
        out, _ = second.communicate(timeout=60)
    assert second.returncode == 0
    assert "Resuming" not in out
    assert recorder.by_recipient() == dict.fromkeys(emails, 2)


# --- TLS ---------------------------------------------------------------------------------------


class _DropsTLS(FaultySMTP):
    """Agrees to STARTTLS, then hangs up instead of doing the handshake."""

    async def smtp_STARTTLS(self, arg: str) -> None:
        await self.push("220 Ready to start TLS")
        self.transport.close()


def _message() -> list[Outgoing]:
    return [Outgoing(1, Recipient("a@example.org"), "news@example.com", "<1@x>", b"x\r\n")]


async def test_a_tls_handshake_dropped_after_220_is_a_tls_failure(tmp_path: Path) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with smtp_server(tls_context=context, factory=_DropsTLS) as server:
        config = SMTPConfig(
            host="127.0.0.1", port=server.port, security="starttls", ca_file=ca_file, timeout=5
        )
        engine = Delivery(SMTPTransport(config), _message(), DeliveryPolicy(concurrency=1))
        with pytest.raises(DeliveryError, match="TLS failed") as caught:
            async for _ in engine.run():
                pass
    assert "TLS handshake" in caught.value.message
    assert server.recorder.received == []


async def test_an_untrusted_certificate_hints_at_the_ca_file(tmp_path: Path) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    other = tmp_path / "other.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    with smtp_server(tls_context=context) as server:
        config = SMTPConfig(
            host="127.0.0.1", port=server.port, security="starttls", ca_file=other, timeout=5
        )
        with pytest.raises(DeliveryError) as caught:
            await SMTPTransport(config).probe()
    assert "certificate does not verify" in caught.value.message
    assert caught.value.hint is not None and "MAILER_SMTP_CA_FILE" in caught.value.hint
