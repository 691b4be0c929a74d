"""Trust, from a review of the send path: each case was a real bug, reproduced against a real
aiosmtpd relay or the real ledger writer, and stays fixed."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP

from mailer.delivery import Delivery
from mailer.ledger import Ledger
from mailer.models import DeliveryPolicy, Outgoing, Recipient, SendResult, SMTPConfig, Status
from mailer.transports.smtp import SMTPTransport
from tests.cli import invoke
from tests.smtpd import Recorder, Server, smtp_server

KEY = "trust-review-tests-secret-key-0123456789"


def make_list(sample: Path, n: int) -> list[str]:
    emails = [f"reader{i}@example.org" for i in range(1, n + 1)]
    rows = ["email,name"] + [f"{e},R" for e in emails]
    (sample / "lists" / "crowd.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return emails


def env(server: Server, **extra: str) -> dict[str, str]:
    values = {"MAILER_SECRET_KEY": KEY, "MAILER_CONCURRENCY": "2", "MAILER_TIMEZONE": "UTC"}
    return server.env(**{**values, **extra})


def send(server: Server, **extra: str) -> Any:
    args = ("digest", "--send", "--yes", "--date", "2026-11-27", "--list", "crowd")
    return invoke(*args, env=env(server, **extra))


def counts(server: Server) -> dict[str, int]:
    found: dict[str, int] = json.loads(invoke("status", "--json", env=env(server)).output)["counts"]
    return found


def suppressed(sample: Path) -> list[str]:
    path = sample / "lists" / "suppressed.csv"
    return path.read_text(encoding="utf-8").splitlines()[1:] if path.exists() else []


class _Flips(Recorder):
    """Goes bad after ten recipients, while the first message is still in its DATA phase."""

    accepted = 0

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.accepted += 1
        if self.accepted > 10:
            self.rcpt_reply = "550 5.1.1 relay misconfigured, refusing everyone"
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        if envelope.rcpt_tos[0] == "reader1@example.org":
            await asyncio.sleep(2.0)  # one slow message (big, or a slow content scan)
        return await super().handle_DATA(server, session, envelope)


def test_an_acceptance_of_an_older_message_judges_no_refusal_after_it(sample: Path) -> None:
    make_list(sample, 100)
    with smtp_server(_Flips()) as server:
        result = send(server)
        assert result.exit_code == 3, result.output
        now = counts(server)
    assert now["failed"] == 0 and suppressed(sample) == [], now


def test_only_5xx_refusals_count_towards_giving_up_on_a_row(sample: Path) -> None:
    make_list(sample, 3)
    recorder = Recorder(rcpt_reply="451 4.3.0 try later")
    with smtp_server(recorder) as server:
        assert send(server).exit_code == 1  # four 4xx attempts each: deferred
        recorder.rcpt_reply = "550 5.1.1 relay misconfigured: unknown user"
        assert send(server).exit_code == 1  # refused once each, with nothing accepted
        now = counts(server)
    assert now["failed"] == 0 and now["deferred"] == 3
    assert suppressed(sample) == []


def test_a_resume_does_not_suppress_again_an_address_resubscribed_since(sample: Path) -> None:
    emails = make_list(sample, 4)
    recorder = Recorder(
        refuse={emails[0]: "550 5.1.1 no such user"}, tempfail_once={emails[3]}, delay=0.05
    )
    with smtp_server(recorder) as server:
        first = send(server, MAILER_MAX_ATTEMPTS="1", MAILER_CONCURRENCY="1")
        assert "Added 1 hard-bounced address" in first.output
        assert invoke("resubscribe", emails[0], env=env(server)).exit_code == 0
        again = send(server, MAILER_MAX_ATTEMPTS="1")  # resumes the deferred one
        assert "hard-bounced" not in again.output
    assert not any(line.startswith(emails[0]) for line in suppressed(sample))


def _messages(n: int) -> Iterator[Outgoing]:
    for i in range(1, n + 1):
        recipient = Recipient(email=f"r{i}@example.org")
        yield Outgoing(i, recipient, "news@example.org", f"<m{i}@x>", b"Subject: hi\r\n\r\nx\r\n")


async def test_a_stop_while_a_retry_waits_for_room_in_the_queue_ends_the_run() -> None:
    recorder = Recorder(delay=0.6)
    recorder.tempfail_once.add("r1@example.org")
    with smtp_server(recorder) as server:
        config = SMTPConfig("127.0.0.1", server.port, security="none", loopback=True, timeout=5)
        policy = DeliveryPolicy(concurrency=1, retry_base_delay=0.05, retry_max_delay=0.05)
        engine = Delivery(SMTPTransport(config), _messages(200), policy)
        results: list[SendResult] = []

        async def consume() -> None:
            async for result in engine.run():
                results.append(result)

        task = asyncio.create_task(consume())
        await asyncio.sleep(0.4)  # r1's backoff is over: its retry waits for room
        engine.stop()
        await asyncio.wait_for(task, 10)  # it hung here
    assert {r.email: r.status for r in results}["r1@example.org"] is Status.DEFERRED


async def test_an_outcome_queued_during_a_commit_is_committed_without_waiting_for_more(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ledger.sqlite3"
    with Ledger.open(path) as ledger:
        people = [Recipient(email=f"r{i}@example.org") for i in (1, 2, 3)]
        campaign = ledger.start_campaign("c", kind="digest", recipients=people)
        ledger.mark_sending(campaign, "r1@example.org", "<m1@x>")
        await ledger.mark_sending(campaign, "r2@example.org", "<m2@x>")
        third = ledger.mark_sending(campaign, "r3@example.org", "<m3@x>")  # a commit in flight
        ledger.record(campaign, SendResult(2, "r2@example.org", "<m2@x>", Status.SENT, 250, "ok"))
        await third
        await asyncio.sleep(0.5)  # r1 and r3 still at a slow relay: nothing else is queued
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            (state,) = db.execute(
                "SELECT state FROM deliveries WHERE email = 'r2@example.org'"
            ).fetchone()
        assert state == "sent"
        await ledger.flush()


def test_a_campaign_resumes_after_its_list_file_is_gone(sample: Path) -> None:
    emails = make_list(sample, 6)
    (sample / "state").mkdir()
    recorder = Recorder()
    with smtp_server(recorder) as server:
        ledger = {"MAILER_LEDGER": str(sample / "state" / "fresh.sqlite3")}

        def run(date: str, *extra: str) -> Any:
            args = ("digest", "--send", "--yes", "--date", date, "--list", "crowd", *extra)
            return invoke(*args, env=env(server, **ledger))

        first = run("2026-11-27", "--limit", "2")
        assert first.exit_code == 0, first.output
        (sample / "lists" / "crowd.csv").unlink()  # deleted or moved away mid-campaign
        rest = run("2026-11-27")
        assert rest.exit_code == 0, rest.output
        other = run("2026-11-28")
    assert recorder.by_recipient() == dict.fromkeys(emails, 1)
    assert other.exit_code == 2 and "list not found" in other.output  # a new issue needs it
