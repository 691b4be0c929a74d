"""``mailer status``: counts, recent failures, address lists, JSON and every campaign."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.testing import Result

from mailer.bounces import RECORD_FILE, Bounce, Reading, SqliteStore
from mailer.cli.report import BOUNCE_RECORD
from mailer.delivery import is_hard_bounce
from mailer.ledger import Campaign, Ledger
from mailer.models import Recipient, SendResult, Status
from mailer.transports.base import Reply
from tests.cli import invoke


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    return invoke("status", *args, env=env)


AUDIENCE = [f"{name}@example.org" for name in ("ann", "bob", "cid", "dan", "eve", "fay")]
OUTCOMES = {
    "ann@example.org": (Status.SENT, 250, "2.0.0 Ok: queued"),
    "bob@example.org": (Status.SENT, 250, "2.0.0 Ok: queued"),
    "cid@example.org": (Status.FAILED, 550, "5.1.1 <cid@example.org>: User unknown"),
    "dan@example.org": (Status.DEFERRED, 451, "4.7.1 Greylisted, try again later"),
    # eve: marked sending, then the process "dies": unknown when reopened. fay: pending.
}


async def _send(book: Ledger, campaign: Campaign) -> None:
    for email in AUDIENCE[:5]:
        await book.mark_sending(campaign, email, f"<{email}>")
    for email, (status, code, reply) in OUTCOMES.items():
        hard = status is Status.FAILED and is_hard_bounce(Reply(code or 0, reply, "rcpt"))
        book.record(
            campaign, SendResult(0, email, f"<{email}>", status, code, reply, hard_bounce=hard)
        )
    await book.flush()


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    path = tmp_path / ".mailer" / "ledger.sqlite3"
    with Ledger.open(path) as book:
        book.start_campaign(
            "older", kind="digest", recipients=[Recipient("zoe@example.org", "Zoe")]
        )
        weekly = book.start_campaign(
            "weekly-2026-11-27",
            kind="digest",
            list_path="lists/example.csv",
            subject="Week 48",
            recipients=[Recipient(email) for email in AUDIENCE],
        )
        asyncio.run(_send(book, weekly))
    return path


def test_status_shows_counts_and_recent_failures_of_the_latest_campaign(ledger_path: Path) -> None:
    result = cli("--ledger", str(ledger_path))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Campaign  weekly-2026-11-27 (digest)" in out
    assert "lists/example.csv, 6 recipients" in out
    for state, count in [("sent", 2), ("deferred", 1), ("failed", 1), ("unknown", 1)]:
        assert f"  {state:<10}{count:>10}\n" in out
    assert f"  {'pending':<10}{1:>10}\n" in out
    assert "cid@example.org  failed    550 5.1.1 <cid@example.org>: User unknown" in out
    assert "dan@example.org  deferred  451 4.7.1 Greylisted, try again later" in out
    assert "1 hard bounce" in out
    assert "--resend-unknown" in out and "mailer status --list unknown" in out
    assert "2 recipients left to send" in out


def test_status_json(ledger_path: Path) -> None:
    result = cli("--ledger", str(ledger_path), "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["campaign"]["name"] == "weekly-2026-11-27"
    assert document["campaign"]["recipients"] == 6
    assert document["counts"] == {
        "sent": 2,
        "deferred": 1,
        "failed": 1,
        "unknown": 1,
        "skipped": 0,
        "pending": 1,
        "sending": 0,
    }
    assert document["hard_bounces"] == 1
    replies = {row["email"]: (row["code"], row["reply"]) for row in document["recent_failures"]}
    assert replies == {
        "cid@example.org": (550, "5.1.1 <cid@example.org>: User unknown"),
        "dan@example.org": (451, "4.7.1 Greylisted, try again later"),
    }


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("failed", ["cid@example.org"]),
        ("deferred", ["dan@example.org"]),
        ("unknown", ["eve@example.org"]),
        ("sent", ["ann@example.org", "bob@example.org"]),
    ],
)
def test_status_list_prints_addresses_one_per_line(
    ledger_path: Path, state: str, expected: list[str]
) -> None:
    result = cli("--ledger", str(ledger_path), "--list", state)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == expected
    as_json = json.loads(cli("--ledger", str(ledger_path), "--list", state, "--json").stdout)
    assert as_json == {"campaign": "weekly-2026-11-27", "state": state, "addresses": expected}


def test_status_of_a_named_campaign_and_of_all(ledger_path: Path) -> None:
    older = cli("older", "--ledger", str(ledger_path), "--json")
    assert json.loads(older.stdout)["counts"]["pending"] == 1

    table = cli("--all", "--ledger", str(ledger_path))
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split()[:4] == ["CAMPAIGN", "KIND", "STARTED", "TOTAL"]
    assert lines[1].startswith("weekly-2026-11-27") and lines[2].startswith("older")
    assert lines[1].split()[-7:] == ["2", "1", "1", "1", "0", "1", "0"]

    every = json.loads(cli("--all", "--json", "--ledger", str(ledger_path)).stdout)
    assert [c["name"] for c in every["campaigns"]] == ["weekly-2026-11-27", "older"]
    assert every["campaigns"][1]["counts"]["pending"] == 1


def test_status_reads_the_ledger_path_from_the_environment(
    ledger_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILER_LEDGER", str(ledger_path))
    result = cli("--list", "failed")
    assert result.stdout == "cid@example.org\n"


def test_status_during_a_send_reads_live_counts(ledger_path: Path) -> None:
    with Ledger.open(ledger_path):  # a send holds the ledger
        result = cli("--ledger", str(ledger_path))
    assert result.exit_code == 0, result.output
    assert "a send is in progress" in result.stdout
    assert f"  {'sent':<10}{2:>10}\n" in result.stdout


def test_status_errors_are_one_line(tmp_path: Path, ledger_path: Path) -> None:
    missing = cli("--ledger", str(tmp_path / "none.sqlite3"))
    assert missing.exit_code == 2
    assert missing.stderr.startswith(f"Error: {tmp_path / 'none.sqlite3'}: no ledger yet\n")

    unknown = cli("nosuch", "--ledger", str(ledger_path))
    assert unknown.exit_code == 2
    assert unknown.stderr.startswith("Error: no campaign named 'nosuch' in ")
    assert "Hint: `mailer status --all` lists the campaigns" in unknown.stderr

    both = cli("--all", "--list", "failed", "--ledger", str(ledger_path))
    assert both.exit_code == 2 and both.stderr.startswith("Error: --all lists every campaign")

    bad_state = cli("--list", "lost", "--ledger", str(ledger_path))
    assert bad_state.exit_code == 2

    empty = tmp_path / "empty.sqlite3"
    Ledger.open(empty).close()
    nothing = cli("--ledger", str(empty))
    assert nothing.exit_code == 2 and "no campaign yet" in nothing.stderr
    assert cli("--all", "--ledger", str(empty)).stdout.startswith("No campaign in ")


def test_status_has_help() -> None:
    result = cli("--help")
    assert result.exit_code == 0
    for option in ("--list", "--json", "--all", "--ledger", "--failures"):
        assert option in result.stdout


def _record_bounces(ledger_path: Path) -> None:
    """What `mailer bounces scan` would have recorded beside the ledger: for the weekly
    campaign two addresses hard (one reported twice) and one soft; one hard for the older;
    one the scan could match to no campaign."""
    with Ledger.open(ledger_path, readonly=True) as book:
        weekly, older = book.campaign("weekly-2026-11-27"), book.campaign("older")
    assert weekly is not None and older is not None
    reports = [
        ("hard", "cid@example.org", weekly.id),
        ("hard", "CID@example.org", weekly.id),
        ("hard", "eve@example.org", weekly.id),
        ("soft", "dan@example.org", weekly.id),
        ("hard", "zoe@example.org", older.id),
        ("soft", "fay@example.org", None),
    ]
    with SqliteStore(ledger_path.parent / RECORD_FILE) as store:
        for serial, (kind, email, campaign) in enumerate(reports):
            sid = f"mid:<dsn{serial}@relay.example>"
            bounce = Bounce(kind, email, campaign, None, f"{kind[0]}.1.1", "", sid)  # type: ignore[arg-type]
            store.record(Reading(sid, "bounce", (bounce,)))


def test_status_shows_bounce_mail_per_campaign(ledger_path: Path) -> None:
    quiet = cli("--ledger", str(ledger_path))
    assert "Bounces " not in quiet.stdout  # no scan has run: nothing to say
    assert json.loads(cli("--ledger", str(ledger_path), "--json").stdout)["bounce_mail"] is None
    assert "HARD" not in cli("--all", "--ledger", str(ledger_path)).stdout

    _record_bounces(ledger_path)
    result = cli("--ledger", str(ledger_path))
    assert result.exit_code == 0, result.output
    assert "Bounces   2 addresses hard, 1 soft, in bounce mail read by" in result.stdout
    document = json.loads(cli("--ledger", str(ledger_path), "--json").stdout)
    assert document["bounce_mail"] == {"hard": 2, "soft": 1}
    older = json.loads(cli("older", "--ledger", str(ledger_path), "--json").stdout)
    assert older["bounce_mail"] == {"hard": 1, "soft": 0}

    lines = cli("--all", "--ledger", str(ledger_path)).stdout.splitlines()
    assert lines[0].split()[-2:] == ["HARD", "SOFT"]
    assert lines[1].startswith("weekly-2026-11-27") and lines[1].split()[-2:] == ["2", "1"]
    assert lines[2].startswith("older") and lines[2].split()[-2:] == ["1", "0"]
    every = json.loads(cli("--all", "--json", "--ledger", str(ledger_path)).stdout)
    assert [c["bounce_mail"] for c in every["campaigns"]] == [
        {"hard": 2, "soft": 1},
        {"hard": 1, "soft": 0},
    ]


def test_status_names_a_broken_bounce_record_in_one_line(ledger_path: Path) -> None:
    (ledger_path.parent / RECORD_FILE).write_bytes(b"not a database" * 100)
    result = cli("--ledger", str(ledger_path))
    assert result.exit_code == 3
    assert result.stderr.startswith(f"Error: {ledger_path.parent / RECORD_FILE}: cannot read")
    assert "Traceback" not in result.output


def test_status_and_the_scan_agree_on_where_the_record_is() -> None:
    assert BOUNCE_RECORD == RECORD_FILE


def test_the_states_named_in_the_help_are_the_ledger_s() -> None:
    from mailer.cli.status import STATES
    from mailer.ledger import State

    assert STATES.split(", ") == [state.value for state in State]
