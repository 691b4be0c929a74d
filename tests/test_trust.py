"""Trust: no send may suppress, skip or lose subscribers by mistake, whatever the relay says.

Every test runs the real CLI against a real aiosmtpd server that refuses us the way real
relays do, then "fixes the relay" and checks that everyone ends up with exactly one copy and
nobody was suppressed.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import Result

from mailer.delivery import Verdict, classify, is_hard_bounce
from mailer.transports.base import Reply
from tests.cli import invoke, state_counts, status_json
from tests.smtpd import Recorder, Server, smtp_server

DATE = "2026-11-27"
KEY = "trust-tests-secret-key-0123456789-abcdef"


def make_list(sample: Path, name: str, emails: list[str], *, extra: str = "") -> list[str]:
    header = "email,name" + ("," + extra if extra else "")
    rows = [header] + [f"{e},Reader" + ("," + "x" if extra else "") for e in emails]
    (sample / "lists" / f"{name}.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return emails


def crowd(sample: Path, n: int = 30, name: str = "crowd") -> list[str]:
    return make_list(sample, name, [f"reader{i}@example.org" for i in range(1, n + 1)])


def env(server: Server, **extra: str) -> dict[str, str]:
    return server.env(**{"MAILER_SECRET_KEY": KEY, "MAILER_CONCURRENCY": "4", **extra})


def send(server: Server, *args: str, **extra: str) -> Result:
    return invoke("digest", "--send", "--yes", "--date", DATE, *args, env=env(server, **extra))


def status(server: Server, *args: str) -> dict[str, object]:
    return status_json(*args, env=env(server))


def counts(server: Server, *args: str) -> dict[str, int]:
    return state_counts(*args, env=env(server))


def suppressed(sample: Path) -> str:
    path = sample / "lists" / "suppressed.csv"
    return path.read_text(encoding="utf-8") if path.exists() else ""


# --- what a reply means ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "verdict"),
    [
        (Reply(553, "5.1.8 <news@example.com>: Sender address rejected", "mail"), "refused-us"),
        (Reply(550, "5.7.1 not allowed", "mail"), "refused-us"),
        (Reply(550, "5.1.1 no such user", "mail"), "refused-us"),  # MAIL is never a recipient
        (
            Reply(553, "5.1.8 <news@x>: Sender address rejected: Domain not found", "rcpt"),
            "refused-us",
        ),
        (Reply(550, "5.1.7 bad sender mailbox syntax", "rcpt"), "refused-us"),
        (Reply(530, "5.7.0 Authentication required", "rcpt"), "refused-us"),
        (Reply(552, "5.3.4 message too big", "message"), "refused-us"),
        (Reply(554, "5.7.1 <a@b>: Relay access denied", "rcpt"), "refused"),
        (Reply(550, "5.7.1 message refused as spam", "message"), "refused"),
        (Reply(550, "5.1.1 <a@b>: Recipient address rejected: no such user", "rcpt"), "refused"),
        (Reply(550, "no such user here", "rcpt"), "refused"),
        (Reply(552, "5.2.2 mailbox full", "rcpt"), "refused"),
        (Reply(554, "Transaction failed", "data"), "refused-us"),  # the DATA command
        (Reply(550, "5.1.1 no such user", "data"), "refused-us"),
        (Reply(451, "4.3.0 try later", "mail"), "temporary"),
        (Reply(250, "2.0.0 ok", "message"), "sent"),
    ],
)
def test_a_reply_is_judged_by_what_it_is_about(reply: Reply, verdict: str) -> None:
    assert classify(reply) is Verdict(verdict)


def test_only_a_destination_address_code_at_rcpt_is_a_hard_bounce() -> None:
    assert is_hard_bounce(Reply(550, "5.1.1 no such user", "rcpt"))
    assert is_hard_bounce(Reply(550, "5.1.10 null MX", "rcpt"))
    assert not is_hard_bounce(Reply(553, "5.1.8 Sender address rejected", "rcpt"))
    assert not is_hard_bounce(Reply(553, "5.1.7 bad sender", "rcpt"))
    assert not is_hard_bounce(Reply(550, "5.7.1 policy", "rcpt"))
    assert not is_hard_bounce(Reply(550, "5.1.1 no such user", "message"))  # after the dot
    assert not is_hard_bounce(Reply(450, "4.1.1 try later", "rcpt"))


# --- relays that refuse us -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "reply"),
    [
        ("mail", "553 5.1.8 <news@example.com>: Sender address rejected: Domain not found"),
        ("mail", "550 5.7.1 Sender not authorised to send from this domain"),
        # Postfix with smtpd_delay_reject=yes gives sender restrictions at RCPT
        ("rcpt", "553 5.1.8 <news@example.com>: Sender address rejected: Domain not found"),
        ("rcpt", "530 5.7.0 Authentication required"),
    ],
)
def test_a_refused_sender_stops_the_run_harms_no_one_and_a_fixed_relay_delivers_once(
    sample: Path, where: str, reply: str
) -> None:
    emails = crowd(sample)
    recorder = Recorder()
    setattr(recorder, f"{where}_reply", reply)
    with smtp_server(recorder) as server:
        first = send(server, "--list", "crowd")
        assert first.exit_code == 3, first.output
        assert "Error: the relay refused us" in first.output
        assert "hard-bounced" not in first.output
        stopped = counts(server)
        assert stopped["failed"] == stopped["unknown"] == stopped["sending"] == 0
        assert stopped["pending"] == len(emails)
        recorder.mail_reply = recorder.rcpt_reply = None  # the relay is fixed
        second = send(server, "--list", "crowd")
        assert second.exit_code == 0, second.output
        done = counts(server)
    assert recorder.by_recipient() == dict.fromkeys(emails, 1)
    assert done["sent"] == len(emails)
    assert suppressed(sample) == ""


def test_policy_refusals_halt_and_stay_retryable_then_a_fixed_relay_delivers_once(
    sample: Path,
) -> None:
    emails = crowd(sample, n=40)
    recorder = Recorder(rcpt_reply="554 5.7.1 <x@example.org>: Relay access denied")
    with smtp_server(recorder) as server:
        first = send(server, "--list", "crowd", MAILER_POLICY_HALT_AFTER="5")
        assert first.exit_code == 3, first.output
        assert "relay is refusing us" in first.output
        stopped = counts(server)
        # every refused recipient (the in-flight ones too) is deferred, never failed
        assert stopped["failed"] == 0 and stopped["deferred"] >= 5
        assert stopped["pending"] + stopped["deferred"] == len(emails)
        recorder.rcpt_reply = None
        second = send(server, "--list", "crowd", MAILER_POLICY_HALT_AFTER="5")
        assert second.exit_code == 0, second.output
    assert recorder.by_recipient() == dict.fromkeys(emails, 1)
    assert suppressed(sample) == ""


def test_a_lone_policy_refusal_fails_that_recipient_once_the_relay_takes_others(
    sample: Path,
) -> None:
    emails = crowd(sample, n=6)
    recorder = Recorder(refuse={emails[0]: "550 5.7.1 this domain does not accept your mail"})
    with smtp_server(recorder) as server:
        result = send(server, "--list", "crowd", MAILER_CONCURRENCY="1")
        assert result.exit_code == 1, result.output
        done = counts(server)
    assert done["failed"] == 1 and done["sent"] == 5 and done["deferred"] == 0
    assert suppressed(sample) == ""  # a policy refusal is not a bounce


def test_a_5_1_1_at_rcpt_is_that_recipients_bounce_and_only_theirs(sample: Path) -> None:
    emails = crowd(sample, n=8)
    recorder = Recorder(refuse={emails[3]: "550 5.1.1 <x>: Recipient address rejected"})
    with smtp_server(recorder) as server:
        # Two connections: messages are handed over after the refused one, and their
        # acceptance is what judges it (with eight, all could start together: held deferred).
        result = send(server, "--list", "crowd", "--concurrency", "2")
    assert result.exit_code == 1
    assert "Added 1 hard-bounced address to suppression." in result.output
    assert emails[3] in suppressed(sample)
    assert sum(1 for e in emails if e in suppressed(sample)) == 1


# --- which campaign a run continues ----------------------------------------------------------


def test_a_test_send_to_one_list_does_not_stand_for_another(sample: Path) -> None:
    make_list(sample, "you", ["editor@example.org"])
    emails = crowd(sample, n=12)
    recorder = Recorder()
    with smtp_server(recorder) as server:
        first = send(server, "--list", "you", "--limit", "1")
        assert first.exit_code == 0, first.output
        real = send(server, "--list", "crowd")
        assert real.exit_code == 0, real.output
        assert "Resuming" not in real.output
    assert recorder.by_recipient() == dict.fromkeys(["editor@example.org", *emails], 1)


def test_a_test_send_during_a_half_sent_campaign_goes_to_its_own_list(sample: Path) -> None:
    make_list(sample, "you", ["editor@example.org"])
    emails = crowd(sample, n=12)
    recorder = Recorder()
    with smtp_server(recorder) as server:
        assert send(server, "--list", "crowd", "--limit", "5").exit_code == 0
        before = len(recorder.received)
        test = send(server, "--list", "you", "--limit", "1")
        assert test.exit_code == 0, test.output
        assert [r.recipients for r in recorder.received[before:]] == [["editor@example.org"]]
        rest = send(server, "--list", "crowd")
        assert rest.exit_code == 0, rest.output
    assert recorder.by_recipient() == dict.fromkeys(["editor@example.org", *emails], 1)


def test_a_changed_issue_is_not_resumed_silently_and_never_mailed_twice(sample: Path) -> None:
    emails = crowd(sample, n=12)
    recorder = Recorder()
    with smtp_server(recorder) as server:
        assert send(server, "--list", "crowd", "--limit", "5").exit_code == 0
        renamed = send(server, "--list", "crowd", MAILER_NEWSLETTER_NAME="The Renamed Weekly")
        assert renamed.exit_code == 2, renamed.output
        assert "was started with a different issue" in renamed.output
        assert "--accept-changes" in renamed.output
        assert len(recorder.received) == 5
        accepted = send(
            server,
            "--list",
            "crowd",
            "--accept-changes",
            MAILER_NEWSLETTER_NAME="The Renamed Weekly",
        )
        assert accepted.exit_code == 0, accepted.output
    assert recorder.by_recipient() == dict.fromkeys(emails, 1)


def test_a_resume_whose_template_needs_a_column_added_since_is_one_clear_error(
    sample: Path,
) -> None:
    emails = crowd(sample, n=8)
    recorder = Recorder()
    with smtp_server(recorder) as server:
        assert send(server, "--list", "crowd", "--limit", "3").exit_code == 0
        make_list(sample, "crowd", emails, extra="city")
        templates = sample / "my-templates"
        templates.mkdir()
        (templates / "digest.txt.j2").write_text(
            "Hello {{ subscriber.name }} from {{ subscriber.city }}\n", encoding="utf-8"
        )
        extra = {"MAILER_TEMPLATES_DIR": str(templates)}
        changed = send(server, "--list", "crowd", **extra)
        assert changed.exit_code == 2, changed.output
        forced = send(server, "--list", "crowd", "--accept-changes", **extra)
    assert forced.exit_code == 2, forced.output
    errors = [line for line in forced.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "city" in errors[0] and "digest.txt.j2" in errors[0]
    assert len(recorder.received) == 3


def test_an_empty_audience_is_refused_and_freezes_nothing(sample: Path) -> None:
    make_list(sample, "later", [])
    recorder = Recorder()
    with smtp_server(recorder) as server:
        empty = send(server, "--list", "later")
        assert empty.exit_code == 2, empty.output
        assert "no valid recipients" in empty.output
        emails = make_list(sample, "later", ["a@example.org", "b@example.org"])
        filled = send(server, "--list", "later")
        assert filled.exit_code == 0, filled.output
    assert recorder.by_recipient() == dict.fromkeys(emails, 1)


def test_an_all_suppressed_audience_is_refused_too(sample: Path) -> None:
    make_list(sample, "gone", ["a@example.org"])
    (sample / "lists" / "suppressed.csv").write_text(
        "email,reason,date\na@example.org,unsubscribed,2026-11-01\n", encoding="utf-8"
    )
    with smtp_server() as server:
        result = send(server, "--list", "gone")
    assert result.exit_code == 2 and "no valid recipients" in result.output


# --- internationalised addresses -------------------------------------------------------------


def test_idn_domains_go_out_in_ascii_and_utf8_local_parts_are_reported_up_front(
    sample: Path,
) -> None:
    make_list(sample, "intl", ["user@bücher.example", "plain@example.org", "jörg@example.org"])
    recorder = Recorder()
    with smtp_server(recorder, smtputf8=False) as server:
        extra = {"MAILER_FROM": "news@bücher.example"}
        check = invoke("check", "--list", "intl", env=env(server, **extra))
        assert check.exit_code == 0, check.output
        assert "1 address(es) of intl have a non-ASCII local part" in check.output
        result = send(server, "--list", "intl", **extra)
        failed = status(server, "--list", "failed")
    assert result.exit_code == 1, result.output
    assert "1 recipient(s) have an address whose local part is not ASCII" in result.output
    assert set(recorder.mail_from) == {"news@xn--bcher-kva.example"}
    assert set(recorder.by_recipient()) == {"user@xn--bcher-kva.example", "plain@example.org"}
    assert failed["addresses"] == ["jörg@example.org"]
    assert suppressed(sample) == ""


def test_a_relay_with_smtputf8_gets_the_unicode_forms(sample: Path) -> None:
    make_list(sample, "intl", ["jörg@bücher.example"])
    recorder = Recorder()
    with smtp_server(recorder, smtputf8=True) as server:
        result = send(server, "--list", "intl")
    assert result.exit_code == 0, result.output
    assert set(recorder.by_recipient()) == {"jörg@bücher.example"}
