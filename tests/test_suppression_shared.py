"""The suppression list in PostgreSQL (issue 14): one list for `mailer serve` on one machine
and senders on others. Changes reach every process in commit order; an unsubscribe made
mid-campaign is honoured by the running sender; a local lists/suppressed.csv the database
never had stops a send until `mailer ledger migrate-suppressions` moves it in."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import httpx
import psycopg
import pytest

from mailer.errors import ConfigError
from mailer.ledger.postgres_suppression import SharedSuppression, move_in
from mailer.ledger.suppression import open_suppression
from mailer.settings import load_settings
from mailer.suppression import Suppression
from mailer.tokens import make_token
from tests.cli import invoke, refused
from tests.process import start_mailer, wait_until
from tests.smtpd import Recorder, smtp_server
from tests.web import web_server

SECRET = "test-secret-key-0123456789-abcdefghijklmnop"  # tests.smtpd.Server.env's
DATE = "2026-11-27"


def test_each_process_sees_the_others_changes_and_the_first_entry_is_kept(url: str) -> None:
    a, b = SharedSuppression.open(url), SharedSuppression.open(url)
    try:
        assert a.add("Alice@Example.org", "unsubscribed", note="one-click")
        # b had not read it, but the database decides: the first entry stays, and b has
        # caught up with it.
        assert not b.add("alice@example.org", "bounced")
        entry = b.get("ALICE@example.org")
        assert entry is not None and entry.reason == "unsubscribed"
        made = b.add_each([("bob@example.net", "bounced"), ("bob@example.net", "manual")])
        assert [(e.email, e.reason) for e in made] == [("bob@example.net", "bounced")]
        assert a.refresh(force=True) and a.is_suppressed("bob@example.net") and len(a) == 2
        assert a.reason("bob@example.net") == f"suppressed: bounced on {dt.date.today()}"
        # Only what the reader's own unsubscribe did is undone.
        assert a.remove("bob@example.net", only="unsubscribed") is None
        lifted = a.remove("alice@example.org", note="web resubscribe", only="unsubscribed")
        assert lifted is not None and lifted.reason == "unsubscribed"
        assert b.refresh(force=True) and not b.is_suppressed("alice@example.org")
        assert not b.refresh(force=True)  # nothing new
    finally:
        a.close()
        b.close()
    with psycopg.connect(url) as conn:
        log = conn.execute(
            "SELECT action, email, note FROM suppression_log ORDER BY seq"
        ).fetchall()
    assert log == [
        ("suppress", "Alice@example.org", "one-click"),
        ("suppress", "bob@example.net", ""),
        ("resubscribe", "Alice@example.org", "web resubscribe"),
    ]


def test_a_reader_following_concurrent_writers_misses_no_change(url: str) -> None:
    """Four writers commit batches at once while a reader catches up again and again: it
    must end with exactly what a fresh read finds (changes are read in commit order)."""
    reader = SharedSuppression.open(url)
    writers = [SharedSuppression.open(url) for _ in range(4)]
    done = threading.Event()

    def write(n: int) -> None:
        for batch in range(20):
            items = [(f"w{n}b{batch}r{i}@example.org", "unsubscribed") for i in range(10)]
            writers[n].add_many(items)  # type: ignore[arg-type]
            if batch % 5 == 4:
                writers[n].remove(f"w{n}b{batch}r0@example.org")

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        reader.refresh(force=True)
    for thread in threads:
        thread.join()
    done.set()
    reader.refresh(force=True)
    fresh = SharedSuppression.open(url)
    try:
        assert len(reader) == len(fresh) == 4 * 20 * 10 - 4 * 4
        assert {e.email for e in reader} == {e.email for e in fresh}
    finally:
        for each in (reader, fresh, *writers):
            each.close()


def test_a_local_list_the_database_never_had_stops_a_send_until_moved_in(
    sample: Path, url: str
) -> None:
    local = Suppression.for_lists_dir(sample / "lists")
    local.add("bob@example.net", "bounced", date=dt.date(2026, 1, 5))
    local.add("carol@example.com", "unsubscribed", journal=True)  # in the journal only
    recorder = Recorder()
    with smtp_server(recorder) as server:
        env = server.env(MAILER_LEDGER=url, MAILER_PUBLIC_URL="https://news.example.org")
        send = ("digest", "--send", "--yes", "--date", DATE)
        line = refused(invoke(*send, env=env))
        assert "suppressed.csv: 2 suppressed address(es)" in line
        assert "migrate-suppressions" in invoke(*send, env=env).output
        assert recorder.received == []

        moved = invoke("ledger", "migrate-suppressions", env=env)
        assert moved.exit_code == 0, moved.output
        assert "Moved 2 address(es)" in moved.output
        shared = SharedSuppression.open(url)
        try:
            bob = shared.get("bob@example.net")
            assert bob is not None and (bob.reason, bob.date) == ("bounced", dt.date(2026, 1, 5))
            # A resubscribe in the shared list is not undone by moving the old file again.
            again = invoke("resubscribe", "carol@example.com", env=env)
            assert again.exit_code == 0, again.output
            assert "Moved 0 address(es)" in invoke("ledger", "migrate-suppressions", env=env).output
            shared.refresh(force=True)
            assert not shared.is_suppressed("carol@example.com") and len(shared) == 1
        finally:
            shared.close()
        assert (sample / "lists" / "suppressed.csv").exists()  # the user's file stays

        sent = invoke(*send, env=env)
        assert sent.exit_code == 0, sent.output
    got = {r.recipients[0] for r in recorder.received}
    assert "bob@example.net" not in got and {"alice@example.org", "carol@example.com"} <= got


def test_migrate_suppressions_needs_a_postgresql_ledger(sample: Path) -> None:
    line = refused(invoke("ledger", "migrate-suppressions"))
    assert "MAILER_LEDGER is a SQLite file" in line


def test_an_unsubscribe_on_the_web_reaches_a_running_sender_on_another_machine(
    sample: Path, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`mailer serve` and `mailer digest --send` share only the database: a reader who
    unsubscribes on the web while the campaign runs gets no copy."""
    emails = [f"reader{i:02d}@example.org" for i in range(30)]
    (sample / "lists" / "crowd.csv").write_text(
        "email\n" + "\n".join(emails) + "\n", encoding="utf-8"
    )
    last = emails[-1]
    monkeypatch.setenv("MAILER_SECRET_KEY", SECRET)
    monkeypatch.setenv("MAILER_PUBLIC_URL", "https://news.example.org")
    monkeypatch.setenv("MAILER_LEDGER", url)
    recorder = Recorder(delay=0.1)  # 30 messages one at a time: about 3 s
    with smtp_server(recorder) as server, web_server(load_settings()) as web:
        argv = ("digest", "--send", "--yes", "--date", DATE, "--list", "crowd")
        sender = start_mailer(*argv, "--concurrency", "1", cwd=sample, env=server.env(
            MAILER_LEDGER=url, MAILER_PUBLIC_URL="https://news.example.org"
        ))  # fmt: skip
        wait_until(lambda: len(recorder.received) >= 2, sender)
        token = make_token(SECRET, "crowd", last)
        answer = httpx.post(
            f"{web.url}/unsubscribe",
            params={"token": token},
            data={"List-Unsubscribe": "One-Click"},
        )
        assert answer.status_code == 200
        out, errors = sender.communicate(timeout=120)
    assert sender.returncode == 0, (out, errors)
    got = [r.recipients[0] for r in recorder.received]
    assert last not in got and sorted(got) == emails[:-1]
    assert not (sample / "lists" / "suppressed.journal").exists()  # not the local files
    shared = open_suppression(load_settings())
    entry = shared.get(last)
    assert entry is not None and entry.reason == "unsubscribed"
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT state, last_reply FROM deliveries WHERE email = %s", (last,)
        ).fetchone()
    assert row is not None and row[0] == "skipped" and "unsubscribed" in row[1]


def test_an_unreachable_database_is_one_line_without_its_password(sample: Path) -> None:
    env = {"MAILER_LEDGER": "postgresql://mailer:s3cret@/nowhere?host=/nonexistent&port=1"}
    result = invoke("lists", env=env)
    assert result.exit_code == 3, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and "cannot open the suppression list" in lines[0]
    assert "s3cret" not in result.output and "postgresql://mailer@/nowhere" in lines[0]


def test_until_moved_in_local_addresses_count_as_suppressed_and_only_a_send_refuses(
    sample: Path, url: str
) -> None:
    """Recording a suppression never waits for the migration, and nothing the local file
    holds is mailed meanwhile: a preview leaves it out; a send refuses to start."""
    Suppression.for_lists_dir(sample / "lists").add("bob@example.net", "complaint")
    env = {"MAILER_LEDGER": url}
    recorded = invoke("unsubscribe", "dave@example.org", env=env)
    assert recorded.exit_code == 0, recorded.output
    preview = invoke("digest", "--date", DATE, env=env)
    assert preview.exit_code == 0, preview.output
    names = [p.name for p in (sample / "previews" / f"digest-{DATE}").glob("*.eml")]
    assert names and not [n for n in names if "bob" in n]
    with smtp_server() as server:
        line = refused(invoke("digest", "--send", "--yes", "--date", DATE, env=server.env(**env)))
        assert "not in the shared suppression list" in line
        assert server.recorder.mail_from == []
    shared = SharedSuppression.open(url)
    try:
        assert shared.is_suppressed("dave@example.org")
        assert not shared.is_suppressed("bob@example.net")  # still only in the file
    finally:
        shared.close()


def test_a_local_suppression_newer_than_a_resubscribe_there_still_counts(
    tmp_path: Path, url: str
) -> None:
    """Alice came back through the shared list; later a command without MAILER_LEDGER wrote
    her complaint to the file: that complaint must not be lost. One older than her return
    must not undo it."""
    shared = SharedSuppression.open(url)
    try:
        shared.add("alice@example.org", "unsubscribed", date=dt.date(2026, 1, 5))
        shared.remove("alice@example.org", note="web resubscribe")
        shared.add("bob@example.net", "unsubscribed", date=dt.date(2026, 1, 5))
        shared.remove("bob@example.net", note="web resubscribe")
    finally:
        shared.close()
    local = Suppression.for_lists_dir(tmp_path / "lists")
    local.add("alice@example.org", "complaint")  # today: after (or on the day of) her return
    local.add("bob@example.net", "unsubscribed", date=dt.date(2026, 1, 5))  # the old one
    shared = SharedSuppression.open(url, local=local.path)
    try:
        assert [e.email for e in shared.not_moved_in] == ["alice@example.org"]
        assert shared.is_suppressed("alice@example.org")
        assert not shared.is_suppressed("bob@example.net")
        with pytest.raises(ConfigError, match="1 suppressed address"):
            SharedSuppression.open(url, local=local.path, refuse=True)
        assert move_in(shared, local.path) == (1, 1)
        shared.refresh(force=True)
        entry = shared.get("alice@example.org")
        assert entry is not None and entry.reason == "complaint"
    finally:
        shared.close()


def test_a_connection_the_server_dropped_is_made_again(url: str) -> None:
    """A PostgreSQL restart or an idle timeout ends the session of a long-running
    `mailer serve`: the next unsubscribe must still be recorded, and what others wrote
    meanwhile read."""
    shared, other = SharedSuppression.open(url), SharedSuppression.open(url)
    try:
        assert shared.add("first@example.org", "unsubscribed")
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND datname = current_database()"
            )
        assert other.add("meanwhile@example.org", "bounced")  # made again, too
        assert shared.add("second@example.org", "unsubscribed")
        assert shared.refresh(force=True) or shared.is_suppressed("meanwhile@example.org")
        assert {e.email for e in shared} == {
            "first@example.org",
            "meanwhile@example.org",
            "second@example.org",
        }
    finally:
        shared.close()
        other.close()


def test_a_password_in_the_url_is_never_shown(sample: Path, url: str) -> None:
    with_password = f"{url}&password=s3cret"
    shown = invoke("lists", env={"MAILER_LEDGER": with_password})
    assert shown.exit_code == 0, shown.output
    assert "table suppressions" in shown.output and "s3cret" not in shown.output
    for broken in (
        "postgresql://mailer:ab/cd@nowhere.invalid/db",
        "postgresql://mailer:50%off@nowhere.invalid/db",
    ):
        result = invoke("lists", env={"MAILER_LEDGER": broken})
        assert result.exit_code in (2, 3), result.output
        assert "ab/cd" not in result.output and "50%off" not in result.output
