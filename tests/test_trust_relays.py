"""Trust, from an adversarial probe: relays that refuse everyone in ways that look like
recipient refusals, a broken suppression file mid-send, campaigns under other names, the
clock moving, rates, and signals at start-up. Each case ends with everyone mailed once and
nobody failed or suppressed by mistake."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP

from tests.cli import invoke
from tests.process import faked, start_mailer, wait_until
from tests.smtpd import FaultySMTP, Recorder, Server, smtp_server

DATE = "2026-11-27"
KEY = "trust-relay-tests-secret-key-0123456789"


def make_list(sample: Path, name: str, n: int, domain: str = "example.org") -> list[str]:
    emails = [f"reader{i}@{domain}" for i in range(1, n + 1)]
    rows = ["email,name"] + [f"{e},Reader" for e in emails]
    (sample / "lists" / f"{name}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return emails


def env(server: Server, sample: Path | None = None, **extra: str) -> dict[str, str]:
    values = {"MAILER_SECRET_KEY": KEY, "MAILER_CONCURRENCY": "2", "MAILER_TIMEZONE": "UTC"}
    if sample is not None:
        values["MAILER_LEDGER"] = str(sample / "state" / "ledger.sqlite3")
    return server.env(**{**values, **extra})


def send(server: Server, *args: str, **extra: str) -> Any:
    return invoke("digest", "--send", "--yes", "--date", DATE, *args, env=env(server, **extra))


def counts(server: Server, **extra: str) -> dict[str, int]:
    result = invoke("status", "--json", env=env(server, **extra))
    assert result.exit_code == 0, result.output
    found: dict[str, int] = json.loads(result.output)["counts"]
    return found


def suppressed(sample: Path) -> str:
    path = sample / "lists" / "suppressed.csv"
    return path.read_text(encoding="utf-8") if path.exists() else ""


class _Relay(Recorder):
    """A recorder whose every DATA command, or every message after its final dot, gets the
    same refusal while ``broken``."""

    data_command: str | None = None
    after_dot: str | None = None

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        if self.after_dot is not None:
            return self.after_dot
        return await super().handle_DATA(server, session, envelope)


class _RefusesDATA(FaultySMTP):
    async def smtp_DATA(self, arg: str) -> None:
        relay = self.event_handler
        if isinstance(relay, _Relay) and relay.data_command is not None:
            await self.push(relay.data_command)
            return
        await super().smtp_DATA(arg)


# --- relays that refuse everyone like a recipient refusal ------------------------------------


@pytest.mark.parametrize(
    ("where", "reply", "code"),
    [
        ("data_command", "554 Transaction failed", 3),
        ("data_command", "550 5.1.1 mailbox unavailable", 3),
        ("after_dot", "550 5.1.1 <x@example.org>: no such user", 1),
        ("after_dot", "554 Transaction failed: content rejected", 1),
        ("after_dot", "550 5.6.0 content refused", 1),
        ("rcpt_reply", "554 Relay access denied", 1),
        ("rcpt_reply", "550 5.1.1 <x@example.org>: Recipient address rejected", 1),
        ("rcpt_reply", "550 5.1.0 relaying denied", 1),
    ],
)
def test_a_relay_refusing_everyone_fails_and_suppresses_no_one(
    sample: Path, where: str, reply: str, code: int
) -> None:
    emails = make_list(sample, "crowd", 10)
    relay = _Relay()
    setattr(relay, where, reply)
    with smtp_server(relay, factory=_RefusesDATA) as server:
        first = send(server, "--list", "crowd")
        assert first.exit_code == code, first.output
        stopped = counts(server)
        assert stopped["failed"] == 0 and stopped["sent"] == 0, stopped
        assert stopped["pending"] + stopped["deferred"] == len(emails)
        assert suppressed(sample) == ""
        setattr(relay, where, None)  # the relay is fixed
        fixed = send(server, "--list", "crowd")
        assert fixed.exit_code == 0, fixed.output
    assert relay.by_recipient() == dict.fromkeys(emails, 1)
    assert suppressed(sample) == ""


def test_a_long_list_refused_everywhere_halts_and_loses_no_one(sample: Path) -> None:
    emails = make_list(sample, "crowd", 40)
    relay = _Relay(rcpt_reply="550 5.1.1 <x@example.org>: Recipient address rejected")
    with smtp_server(relay) as server:
        first = send(server, "--list", "crowd", MAILER_POLICY_HALT_AFTER="5")
        assert first.exit_code == 3 and "relay is refusing us" in first.output
        assert counts(server)["failed"] == 0 and suppressed(sample) == ""
        relay.rcpt_reply = None
        assert send(server, "--list", "crowd", MAILER_POLICY_HALT_AFTER="5").exit_code == 0
    assert relay.by_recipient() == dict.fromkeys(emails, 1)


def test_a_bounce_with_nothing_after_it_is_retried_then_given_up_and_the_campaign_ends(
    sample: Path,
) -> None:
    emails = make_list(sample, "crowd", 6)
    recorder = Recorder(refuse={emails[-1]: "550 5.1.1 no such user"})
    with smtp_server(recorder) as server:
        tries = {"MAILER_MAX_ATTEMPTS": "2"}
        assert send(server, "--list", "crowd", "--limit", "5", **tries).exit_code == 0
        second = send(server, "--list", "crowd", **tries)  # only the bad address is left
        assert second.exit_code == 1, second.output
        assert counts(server)["deferred"] == 1 and suppressed(sample) == ""  # no evidence yet
        third = send(server, "--list", "crowd", **tries)  # refused a second time: given up
        assert third.exit_code == 1, third.output
        assert counts(server)["failed"] == 1
        assert emails[-1] in suppressed(sample)
        again = send(server, "--list", "crowd", **tries)
    assert "is finished; nothing to send" in again.output and again.exit_code == 0
    assert recorder.rcpt_attempts[emails[-1]] == 2


def test_a_relay_that_breaks_mid_campaign_fails_no_one_on_the_earlier_evidence(
    sample: Path,
) -> None:
    emails = make_list(sample, "crowd", 15)
    recorder = Recorder()
    with smtp_server(recorder) as server:
        assert send(server, "--list", "crowd", "--limit", "3").exit_code == 0
        recorder.rcpt_reply = "550 5.1.1 <x@example.org>: Recipient address rejected"
        broken = send(server, "--list", "crowd")
        assert broken.exit_code == 1, broken.output
        now = counts(server)
        assert now["failed"] == 0 and now["deferred"] == 12 and suppressed(sample) == ""
        recorder.rcpt_reply = None
        assert send(server, "--list", "crowd").exit_code == 0
    assert recorder.by_recipient() == dict.fromkeys(emails, 1)


def test_the_same_issue_under_another_name_while_the_first_is_half_sent_mails_no_one_twice(
    sample: Path,
) -> None:
    emails = make_list(sample, "crowd", 6)
    lists = sample / "lists"
    (lists / "alias.csv").symlink_to(lists / "crowd.csv")
    recorder = Recorder()
    with smtp_server(recorder) as server:
        assert send(server, "--list", "crowd", "--limit", "2").exit_code == 0
        assert send(server, "--list", "alias").exit_code == 0  # the other four
        back = send(server, "--list", "crowd")  # its pending four got it from 'alias'
        assert back.exit_code == 0, back.output
        other = send(server, "--list", "crowd", "--campaign", "third name")
        assert other.exit_code == 0, other.output
    assert recorder.by_recipient() == dict.fromkeys(emails, 1)


def test_a_domain_that_blocks_us_at_the_head_of_the_list_starves_no_one(sample: Path) -> None:
    blocked = make_list(sample, "head", 25, domain="example.net")
    rest = [f"reader{i}@example.org" for i in range(1, 6)]
    rows = ["email,name"] + [f"{e},R" for e in [*blocked, *rest]]
    (sample / "lists" / "crowd.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    recorder = Recorder(refuse=dict.fromkeys(blocked, "550 5.7.1 client host blocked"))
    with smtp_server(recorder) as server:
        for _ in range(2):
            send(server, "--list", "crowd")
    assert set(recorder.by_recipient()) == set(rest)
    assert suppressed(sample) == ""


# --- nobody gets the same issue twice, whatever the campaign is called ------------------------


@pytest.mark.parametrize("how", ["symlink", "renamed", "campaign"])
def test_the_same_issue_under_another_campaign_name_mails_no_one_twice(
    sample: Path, how: str
) -> None:
    emails = make_list(sample, "crowd", 8)
    lists = sample / "lists"
    recorder = Recorder()
    with smtp_server(recorder) as server:
        if how == "campaign":
            assert send(server, "--list", "crowd", "--campaign", "first try").exit_code == 0
            second = send(server, "--list", "crowd")
        else:
            assert send(server, "--list", "crowd", "--limit", "3").exit_code == 0
            if how == "symlink":
                (lists / "alias.csv").symlink_to(lists / "crowd.csv")
            else:
                (lists / "crowd.csv").rename(lists / "alias.csv")
            second = send(server, "--list", "alias")
        assert second.exit_code == 0, second.output
    assert recorder.by_recipient() == dict.fromkeys(emails, 1)


# --- bad values are refused, never guessed ---------------------------------------------------


@pytest.mark.parametrize(
    ("args", "extra", "says"),
    [
        (("--list", ""), {}, "--list"),
        (("--list", "crowd", "--campaign", "a\nb"), {}, "--campaign"),
        (("--list", "crowd", "--campaign", "x" * 5000), {}, "--campaign"),
        (("--list", "crowd"), {"TZ": "Mars/Olympus", "MAILER_TIMEZONE": ""}, "TZ="),
        (("--list", "crowd"), {"MAILER_RATE": "1e-300"}, "MAILER_RATE"),
    ],
)
def test_bad_values_are_one_error_line_and_nothing_is_sent(
    sample: Path, args: tuple[str, ...], extra: dict[str, str], says: str
) -> None:
    make_list(sample, "crowd", 3)
    recorder = Recorder()
    with smtp_server(recorder) as server:
        values = env(server, **extra)
        if extra.get("MAILER_TIMEZONE") == "":
            del values["MAILER_TIMEZONE"]
        result = invoke("digest", "--send", "--yes", *args, env=values)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2, result.output
    assert len(errors) == 1 and says in errors[0], result.output
    assert recorder.received == []


# --- in a real process ------------------------------------------------------------------------


def _start(server: Server, sample: Path, *args: str, **extra: str) -> subprocess.Popen[str]:
    variables = {**env(server, sample), **extra}
    return start_mailer(
        "digest", "--send", "--yes", "--list", "crowd", *args, cwd=sample, env=variables
    )


@pytest.mark.slow
def test_a_suppression_file_broken_mid_send_stops_it_with_one_line(sample: Path) -> None:
    make_list(sample, "crowd", 60)
    recorder = Recorder(delay=0.05)
    with smtp_server(recorder) as server:
        proc = _start(server, sample, "--date", DATE)
        wait_until(lambda: len(recorder.received) >= 5, proc)
        (sample / "lists" / "suppressed.csv").write_text(
            "email,reason,date\nreader50@exa\n", encoding="utf-8"
        )
        _, errors = proc.communicate(timeout=30)  # no hang
    assert proc.returncode == 2, errors
    lines = [line for line in errors.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "suppressed.csv" in lines[0], errors
    assert "Traceback" not in errors


@pytest.mark.slow
def test_a_stop_during_a_slow_rate_takes_no_new_message(sample: Path) -> None:
    make_list(sample, "crowd", 20)
    recorder = Recorder()
    with smtp_server(recorder) as server:
        proc = _start(server, sample, "--date", DATE, "--rate", "0.5")
        wait_until(lambda: len(recorder.received) >= 1, proc)
        proc.send_signal(signal.SIGTERM)
        stopped_at = (time.monotonic(), len(recorder.received))
        proc.communicate(timeout=30)
        took = time.monotonic() - stopped_at[0]
    assert proc.returncode == 75
    assert took < 3
    assert len(recorder.received) <= stopped_at[1] + 1  # at most the one already going out


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_a_signal_while_starting_up_exits_75_without_a_traceback(sample: Path, signum: int) -> None:
    make_list(sample, "crowd", 3)
    with smtp_server() as server:
        for delay in (0.05, 0.15, 0.3):
            proc = _start(server, sample, "--date", DATE)
            time.sleep(delay)
            proc.send_signal(signum)
            _, errors = proc.communicate(timeout=30)
            assert proc.returncode in (75, 0), (delay, proc.returncode, errors)
            assert "Traceback" not in errors


def _faked(moment: str, **zone: str) -> dict[str, str]:
    return {**faked(moment), **zone}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("before", "after", "days"),
    [
        (_faked("2026-11-27 23:59:50"), _faked("2026-11-28 00:00:10"), "1"),
        (_faked("2026-11-28 00:00:05"), _faked("2026-11-27 23:59:58"), "7"),  # clock back
        (
            _faked("2026-11-27 12:00:00", MAILER_TIMEZONE="Pacific/Auckland"),
            _faked("2026-11-27 12:00:10", MAILER_TIMEZONE="UTC"),
            "7",
        ),
    ],
)
def test_a_resume_never_depends_on_the_clock_or_the_zone(
    sample: Path, before: dict[str, str], after: dict[str, str], days: str
) -> None:
    article = sample / "articles" / "2026-11-28-late.md"
    article.write_text(
        "---\ntitle: Late\ndate: 2026-11-27T22:00:00Z\nurl: https://example.com/late\n---\nx\n",
        encoding="utf-8",
    )
    emails = make_list(sample, "crowd", 40)
    recorder = Recorder(delay=0.02)
    with smtp_server(recorder) as server:
        first = _start(server, sample, "--days", days, **before)
        wait_until(lambda: len(recorder.received) >= 8, first)
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=60)
        assert first.returncode == 75
        second = _start(server, sample, "--days", days, **after)
        out, errors = second.communicate(timeout=60)
        assert second.returncode == 0, errors + out
    assert "Resuming the unfinished issue" in out
    assert recorder.by_recipient() == dict.fromkeys(emails, 1)


@pytest.mark.parametrize("reply", ["451 4.3.0 try later", "550 5.1.1 no such user"])
def test_a_row_deferred_during_a_run_is_not_handed_out_again_by_that_run(
    sample: Path, reply: str
) -> None:
    emails = make_list(sample, "crowd", 20)
    recorder = Recorder(refuse={emails[0]: reply})  # deferred first, while the rest go out
    with smtp_server(recorder) as server:
        slow = {"MAILER_MAX_ATTEMPTS": "2", "MAILER_RETRY_BASE_DELAY": "3"}
        result = send(server, "--list", "crowd", **slow)
        assert result.exit_code == 1, result.output
    # a 4xx: its own retry after the backoff, once; a held 5xx: once; never another copy
    # from the scan of retries, which reaches it while it waits
    assert recorder.rcpt_attempts[emails[0]] == (2 if reply.startswith("4") else 1)
    assert len(recorder.received) == 19
