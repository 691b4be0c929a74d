"""The delivery ledger on real SQLite files and a real PostgreSQL cluster: schema,
permissions, frozen audiences, resume rules, recovery, and what survives SIGKILL.

Tests that take ``where`` or ``ledger`` run once per backend: a SQLite file, and a fresh
database on a throwaway PostgreSQL cluster (tests/pg.py). The others are about SQLite's
files, lock and writer."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import fcntl
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailer.delivery import is_hard_bounce
from mailer.ledger import (
    MIGRATIONS,
    SCHEMA_VERSION,
    Campaign,
    Ledger,
    LedgerBusy,
    LedgerError,
    State,
)
from mailer.ledger.pacing import MARGIN, MAX_DELAY, Pace
from mailer.models import Recipient, SendResult, Status
from mailer.subscribers import read_list
from mailer.transports.base import Reply
from tests.conftest import REPO
from tests.pg import Cluster


def people(n: int, start: int = 0) -> Iterator[Recipient]:
    for i in range(start, start + n):
        yield Recipient(f"reader{i:06d}@example.org", f"Reader {i}", {"city": "Lyon"}, i + 2)


def result(email: str, status: Status, code: int | None = 250, reply: str = "") -> SendResult:
    """A result as the engine makes it: a failed RCPT with 5.1.x is a hard bounce."""
    hard = status is Status.FAILED and is_hard_bounce(Reply(code or 0, reply, "rcpt"))
    return SendResult(0, email, f"<{email}>", status, code, reply, hard_bounce=hard)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ledger.sqlite3"


@pytest.fixture(params=["sqlite", "postgresql"])
def where(request: pytest.FixtureRequest, db: Path) -> Path | str:
    """Where a ledger lives: a SQLite file, or a new PostgreSQL database (its URL)."""
    if request.param == "sqlite":
        return db
    found: Cluster = request.getfixturevalue("postgres")
    return found.database()


@pytest.fixture
def ledger(where: Path | str) -> Iterator[Ledger]:
    book = Ledger.open(where)
    yield book
    book.close()


def raw(path: Path) -> contextlib.closing[sqlite3.Connection]:
    """A plain connection, to look under the API."""
    return contextlib.closing(sqlite3.connect(path))


def states(book: Ledger, campaign: Campaign) -> dict[str, str]:
    found = {}
    for state in State:
        for address in book.addresses(campaign, state):
            found[address] = state.value
    return found


# --- schema and files ----------------------------------------------------------------------


def test_migrations_create_the_schema_and_a_reopened_ledger_keeps_its_version(db: Path) -> None:
    with Ledger.open(db) as book:
        book.start_campaign("one", kind="digest", recipients=people(3))
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"campaigns", "deliveries", "forwards"} <= tables
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 1

    with Ledger.open(db) as book:
        campaign = book.campaign("one")
        assert campaign is not None and book.counts(campaign)[State.PENDING] == 3
    with raw(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_ledger_from_a_newer_mailer_or_another_sqlite_file_is_refused(tmp_path: Path) -> None:
    newer = tmp_path / "newer.sqlite3"
    Ledger.open(newer).close()
    with raw(newer) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.commit()
    with pytest.raises(LedgerError, match="newer than this mailer"):
        Ledger.open(newer)
    with pytest.raises(LedgerError, match="newer than this mailer"):
        Ledger.open(newer, readonly=True)

    other = tmp_path / "other.sqlite3"
    with raw(other) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.commit()
    with pytest.raises(LedgerError, match="not a mailer ledger"):
        Ledger.open(other)


def test_files_are_created_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / "ledger.sqlite3"
    old = os.umask(0o022)  # a typical umask: the ledger must not rely on a strict one
    try:
        book = Ledger.open(path)
        try:
            book.start_campaign("c", kind="digest", recipients=people(2))
            files = [path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}.lock")]
            for file in files:
                assert file.exists(), file
                assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        finally:
            book.close()
    finally:
        os.umask(old)


def test_one_writer_at_a_time_and_readers_see_committed_rows(db: Path) -> None:
    with Ledger.open(db) as book:
        campaign = book.start_campaign("c", kind="digest", recipients=people(2))
        with pytest.raises(LedgerBusy, match="in use by another mailer run"):
            Ledger.open(db)
        with Ledger.open(db, readonly=True) as reader:
            seen = reader.campaign("c")
            assert seen == campaign
            assert reader.counts(campaign)[State.PENDING] == 2
            with pytest.raises(LedgerError, match="read-only"):
                reader.start_campaign("d", kind="digest", recipients=[])
    Ledger.open(db).close()  # the lock went with the first ledger
    with pytest.raises(LedgerError, match="no ledger here"):
        Ledger.open(db.parent / "nothing.sqlite3", readonly=True)


def test_a_closed_ledger_refuses_work(ledger: Ledger) -> None:
    ledger.close()
    ledger.close()  # idempotent
    with pytest.raises(LedgerError, match="closed"):
        ledger.campaigns()


# --- campaigns -----------------------------------------------------------------------------


def test_the_audience_is_frozen_when_the_campaign_starts(ledger: Ledger, tmp_path: Path) -> None:
    source = tmp_path / "list.csv"
    source.write_text("email,name\nann@example.org,Ann\nbob@example.org,Bob\n", encoding="utf-8")
    first = ledger.start_campaign(
        "weekly-2026-11-27",
        kind="digest",
        list_path=source,
        subject="Week 48",
        recipients=read_list(source),
    )
    assert first.frozen_count == 2

    # Mid-run, someone edits the list: Bob leaves, Cid joins.
    source.write_text("email,name\nann@example.org,Ann\ncid@example.org,Cid\n", encoding="utf-8")

    def untouched() -> Iterator[Recipient]:
        raise AssertionError("a started campaign must not read its list again")
        yield  # pragma: no cover

    again = ledger.start_campaign(
        "weekly-2026-11-27",
        kind="digest",
        list_path=source,
        subject="Week 48, edited",
        recipients=untouched(),
    )
    assert again == first
    assert [r.email for r in ledger.to_send(again)] == ["ann@example.org", "bob@example.org"]
    with pytest.raises(LedgerError, match="already exists as a digest campaign"):
        ledger.start_campaign("weekly-2026-11-27", kind="forward", recipients=[])


def test_a_campaign_appears_only_when_fully_inserted(ledger: Ledger) -> None:
    def broken() -> Iterator[Recipient]:
        yield from people(500)
        raise ValueError("the list broke on line 502")

    with pytest.raises(ValueError, match="line 502"):
        ledger.start_campaign("c", kind="digest", recipients=broken())
    assert ledger.campaign("c") is None and ledger.campaigns() == []

    campaign = ledger.start_campaign("c", kind="digest", recipients=people(500))
    assert campaign.frozen_count == 500


def test_addresses_are_keyed_case_insensitively_first_row_wins(ledger: Ledger) -> None:
    rows = [
        Recipient("Ann@example.org", "Ann", {"plan": "pro"}, 2),
        Recipient("ann@example.org", "Other Ann", {}, 3),
        Recipient("bob@example.org", "Bob", {}, 4),
    ]
    campaign = ledger.start_campaign("c", kind="digest", recipients=rows)
    assert campaign.frozen_count == 2
    assert list(ledger.to_send(campaign)) == [rows[0], rows[2]]  # name, fields and line kept


@pytest.mark.slow
def test_a_large_audience_is_inserted_and_streamed_quickly(ledger: Ledger) -> None:
    n = 120_000
    start = time.perf_counter()
    campaign = ledger.start_campaign("big", kind="digest", recipients=people(n))
    inserted = time.perf_counter() - start
    assert campaign.frozen_count == n
    count, last = 0, ""
    for recipient in ledger.to_send(campaign):
        assert recipient.email > last  # list order
        last = recipient.email
        count += 1
    assert count == n
    assert inserted < 20, f"{n} rows took {inserted:.1f} s"  # about 2 s on a slow machine


# --- states, resume and recovery ------------------------------------------------------------


async def test_to_send_skips_sent_and_failed_and_unknown_unless_asked(ledger: Ledger) -> None:
    emails = [r.email for r in people(6)]
    campaign = ledger.start_campaign("c", kind="digest", recipients=people(6))
    for email in emails[:5]:
        await ledger.mark_sending(campaign, email, f"<{email}>")
    await ledger.record(campaign, result(emails[0], Status.SENT))
    await ledger.record(campaign, result(emails[1], Status.FAILED, 550, "5.7.1 Rejected"))
    await ledger.record(campaign, result(emails[2], Status.DEFERRED, 451, "4.3.0 Later"))
    await ledger.record(campaign, result(emails[3], Status.UNKNOWN, None, "connection lost"))
    # emails[4] is left sending: in flight, not to be sent again; emails[5] is pending.

    # pending rows first, in list order, then the retries
    assert [r.email for r in ledger.to_send(campaign)] == [emails[5], emails[2]]
    assert [r.email for r in ledger.to_send(campaign, resend_unknown=True)] == [
        emails[5],
        emails[2],
        emails[3],
    ]
    counts = ledger.counts(campaign)
    assert counts == {
        State.PENDING: 1,
        State.SENDING: 1,
        State.SENT: 1,
        State.DEFERRED: 1,
        State.FAILED: 1,
        State.UNKNOWN: 1,
        State.SKIPPED: 0,
    }


async def test_a_sent_or_failed_row_cannot_be_marked_or_downgraded(ledger: Ledger) -> None:
    campaign = ledger.start_campaign("c", kind="digest", recipients=people(2))
    sent, failed = (r.email for r in people(2))
    await ledger.mark_sending(campaign, sent, "<1@x>")
    await ledger.record(campaign, result(sent, Status.SENT))
    await ledger.mark_sending(campaign, failed, "<2@x>")
    await ledger.record(campaign, result(failed, Status.FAILED, 550, "5.1.1 No such user"))

    with pytest.raises(LedgerError, match="already sent"):
        await ledger.mark_sending(campaign, sent.upper(), "<3@x>")
    with pytest.raises(LedgerError, match="already failed"):
        await ledger.mark_sending(campaign, failed, "<4@x>")
    with pytest.raises(LedgerError, match="is not in campaign"):
        await ledger.mark_sending(campaign, "stranger@example.org", "<5@x>")
    with pytest.raises(LedgerError, match="already sent"):
        await ledger.record(campaign, result(sent, Status.DEFERRED, 451))
    with pytest.raises(LedgerError, match="already sent"):  # nor skipped afterwards
        await ledger.record(campaign, result(sent, Status.SKIPPED))
    # A refused change fails alone: the ledger goes on.
    assert ledger.counts(campaign)[State.SENT] == 1
    await ledger.flush()


async def test_each_row_keeps_attempts_reply_message_id_and_timestamps(ledger: Ledger) -> None:
    campaign = ledger.start_campaign("c", kind="digest", recipients=people(1))
    email = next(people(1)).email
    await ledger.mark_sending(campaign, email, "<first@x>")
    ledger.record(campaign, result(email, Status.DEFERRED, 451, "4.7.1 Greylisted"))
    await ledger.mark_sending(campaign, email, "<second@x>")
    await ledger.record(
        campaign,
        SendResult(0, email, "<second@x>", Status.SENT, 250, "2.0.0 Ok: queued as ABC", 2),
    )
    (row,) = ledger.rows(campaign, [State.SENT], 10)
    assert (row.email, row.attempts, row.message_id) == (email, 2, "<second@x>")
    assert (row.last_code, row.last_reply) == (250, "2.0.0 Ok: queued as ABC")
    assert row.sending_at is not None and row.sent_at is not None
    assert row.sending_at <= row.sent_at == row.updated_at
    assert not row.hard_bounce


async def test_hard_bounces_are_5xx_with_enhanced_code_5_1_x(ledger: Ledger) -> None:
    emails = [r.email for r in people(4)]
    campaign = ledger.start_campaign("c", kind="digest", recipients=people(4))
    replies = [
        (550, "5.1.1 <x>: Recipient address rejected: User unknown"),
        (550, "5.7.1 Message rejected as spam"),
        (553, "5.1.3 Bad destination mailbox address syntax"),
        (550, "Mailbox unavailable"),
    ]
    for email, (code, reply) in zip(emails, replies, strict=True):
        await ledger.mark_sending(campaign, email, f"<{email}>")
        ledger.record(campaign, result(email, Status.FAILED, code, reply))
    await ledger.flush()
    assert [row.email for row in ledger.hard_bounces(campaign)] == [emails[0], emails[2]]
    assert is_hard_bounce(Reply(550, "5.1.10 Recipient not found", "rcpt"))
    assert not is_hard_bounce(Reply(450, "4.1.1 Try later", "rcpt"))
    assert not is_hard_bounce(Reply(550, "5.1.1x odd", "rcpt"))
    assert not is_hard_bounce(Reply(0, "5.1.1 no code", "rcpt"))


async def test_rows_left_sending_become_unknown_when_the_ledger_is_reopened(
    where: Path | str,
) -> None:
    book = Ledger.open(where)
    campaign = book.start_campaign("c", kind="digest", recipients=people(3))
    emails = [r.email for r in people(3)]
    await book.mark_sending(campaign, emails[0], "<0@x>")
    await book.mark_sending(campaign, emails[1], "<1@x>")
    await book.record(campaign, result(emails[1], Status.SENT))
    book.close()  # as if the process died between DATA and the reply of emails[0]

    with Ledger.open(where) as book:
        assert book.recovered == 1
        assert states(book, campaign) == {
            emails[0]: "unknown",
            emails[1]: "sent",
            emails[2]: "pending",
        }
        (row,) = book.rows(campaign, [State.UNKNOWN], 5)
        assert row.message_id == "<0@x>" and row.last_reply == "interrupted: no reply was recorded"
        assert [r.email for r in book.to_send(campaign)] == [emails[2]]

        # recover() does the same on demand, for one campaign.
        await book.mark_sending(campaign, emails[2], "<2@x>")
        assert book.recover(campaign) == 1
        assert book.counts(campaign)[State.UNKNOWN] == 2


async def test_records_need_not_be_awaited(where: Path | str) -> None:
    book = Ledger.open(where)
    campaign = book.start_campaign("c", kind="digest", recipients=people(50))
    for recipient in people(50):
        await book.mark_sending(campaign, recipient.email, f"<{recipient.email}>")
        book.record(campaign, result(recipient.email, Status.SENT))  # queued, not awaited
    book.close()  # commits what is queued
    with Ledger.open(where) as book:
        assert book.counts(campaign)[State.SENT] == 50
        assert book.recovered == 0


async def test_one_group_commit_takes_everything_queued(ledger: Ledger) -> None:
    campaign = ledger.start_campaign("c", kind="digest", recipients=people(200))
    before = ledger.commits
    marks = [ledger.mark_sending(campaign, r.email, f"<{r.email}>") for r in people(200)]
    await asyncio.gather(*marks)
    assert ledger.counts(campaign)[State.SENDING] == 200
    assert ledger.commits - before < 20  # grouped, not one fsync per message


async def test_one_row_changed_twice_in_one_commit_ends_in_its_last_state(ledger: Ledger) -> None:
    campaign = ledger.start_campaign("c", kind="digest", recipients=people(3))
    a, b, c = (r.email for r in people(3))
    # Queued without awaiting, so that one group commit takes them all, in this order.
    changes = [
        ledger.mark_sending(campaign, a, "<a1@x>"),
        ledger.mark_sending(campaign, b, "<b1@x>"),
        ledger.record(campaign, result(a, Status.DEFERRED, 451, "4.7.1 Later")),
        ledger.mark_sending(campaign, a, "<a2@x>"),
        ledger.record(campaign, result(b, Status.SENT)),
        ledger.record(campaign, result(a, Status.SENT)),
        ledger.mark_sending(campaign, c, "<c1@x>"),
        ledger.mark_sending(campaign, b, "<b2@x>"),  # already sent: refused alone
    ]
    outcomes = await asyncio.gather(*changes, return_exceptions=True)
    assert outcomes[:7] == [None] * 7
    assert isinstance(outcomes[7], LedgerError) and "already sent" in str(outcomes[7])
    rows = {row.email: row for row in ledger.rows(campaign, list(State), 10)}
    assert (rows[a].state, rows[a].attempts, rows[a].last_code) == (State.SENT, 2, 250)
    assert (rows[b].state, rows[b].attempts) == (State.SENT, 1)
    assert (rows[c].state, rows[c].attempts, rows[c].message_id) == (State.SENDING, 1, "<c1@x>")


# --- lists, campaigns, forwards --------------------------------------------------------------


async def test_reads_for_status(where: Path | str) -> None:
    ticks = iter(dt.datetime(2026, 11, 27, 9, 0, i, tzinfo=dt.UTC) for i in range(1000))
    with Ledger.open(where, clock=lambda: next(ticks)) as book:
        assert book.latest_campaign() is None
        old = book.start_campaign("old", kind="digest", recipients=people(2))
        new = book.start_campaign("new", kind="digest", recipients=people(4))
        assert [c.name for c in book.campaigns()] == ["new", "old"]
        assert book.latest_campaign() == new
        assert book.latest_campaign(kind="forward") is None
        emails = [r.email for r in people(4)]
        for email, code, reply in [
            (emails[0], 550, "5.1.1 No such user"),
            (emails[1], 451, "4.7.1 Greylisted"),
            (emails[3], 554, "5.7.1 Spam"),
        ]:
            await book.mark_sending(new, email, f"<{email}>")
            status = Status.DEFERRED if code < 500 else Status.FAILED
            await book.record(new, result(email, status, code, reply))
        recent = book.recent_failures(new, 2)
        assert [(r.email, r.last_code) for r in recent] == [(emails[3], 554), (emails[1], 451)]
        assert list(book.addresses(new, "failed")) == [emails[0], emails[3]]
        assert list(book.addresses(new, State.PENDING)) == [emails[2]]
        assert book.counts(old)[State.PENDING] == 2
        finished = book.finish(new)
        assert finished.finished_at is not None and book.campaign("new") == finished


async def test_forwards_count_only_messages_actually_sent(where: Path | str) -> None:
    now = [dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.UTC)]
    with Ledger.open(where, clock=lambda: now[0]) as book:

        async def forward(friend: str, article: str, status: Status) -> None:
            name = f"forward/{article}/{friend}"
            recipients = [Recipient(friend)]
            campaign = book.start_campaign(name, kind="forward", recipients=recipients)
            book.record_forward(campaign, sender="Ann@example.org", friend=friend, article=article)
            await book.mark_sending(campaign, friend, f"<{name}>")
            if status is not Status.UNKNOWN:
                await book.record(campaign, result(friend, status, 250 if status else 550))

        day_ago = now[0] - dt.timedelta(hours=24)
        await forward("bob@example.org", "bread", Status.SENT)
        await forward("cid@example.org", "bread", Status.FAILED)
        await forward("dan@example.org", "bread", Status.UNKNOWN)  # left sending
        assert book.forward_count_since("ann@example.org", day_ago) == 1
        assert book.forward_exists("BOB@example.org", "bread")
        assert not book.forward_exists("bob@example.org", "cheese")
        assert not book.forward_exists("cid@example.org", "bread")  # failed: may try again
        assert book.forward_exists("dan@example.org", "bread")  # may have gone out

        now[0] += dt.timedelta(hours=25)
        await forward("eve@example.org", "cheese", Status.SENT)
        later = now[0] - dt.timedelta(hours=24)
        assert book.forward_count_since("ann@example.org", later) == 1
        assert book.forward_count_since("ann@example.org", day_ago) == 2
        assert book.forward_count_since("zed@example.org", day_ago) == 0
        with pytest.raises(ValueError, match="timezone-aware"):
            book.forward_count_since("ann@example.org", dt.datetime(2026, 1, 1))


# --- SIGKILL ---------------------------------------------------------------------------------

# A stand-in for the delivery engine: W workers share the resume stream; each marks its
# message, "delivers" it (appends the address to a sink file, as a server would record it),
# then records the reply without awaiting it, as the engine does.
SENDER = """
import asyncio, os, sys
from mailer.ledger import Ledger
from mailer.models import SendResult, Status

path, sink, mode, workers = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])

async def main() -> None:
    ledger = Ledger.open(path, wait=30)
    campaign = ledger.campaign("kill")
    stream = ledger.to_send(campaign)
    fd = os.open(sink, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    async def worker() -> None:
        for recipient in stream:
            email = recipient.email
            await ledger.mark_sending(campaign, email, f"<{email}>")
            os.write(fd, (email + "\\n").encode())  # DATA accepted by the server
            await asyncio.sleep(0)  # the reply is on its way
            done = ledger.record(campaign, SendResult(0, email, f"<{email}>", Status.SENT, 250))
            if mode == "await":
                await done

    await asyncio.gather(*(worker() for _ in range(workers)))
    await ledger.flush()
    print("flushed", flush=True)
    if mode == "await":
        await asyncio.sleep(3600)  # committed: wait for the kill
    ledger.close()

asyncio.run(main())
"""


def start_sender(
    tmp_path: Path, db: Path, sink: Path, mode: str, workers: int
) -> subprocess.Popen[str]:
    script = tmp_path / "sender.py"
    script.write_text(SENDER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, str(script), str(db), str(sink), mode, str(workers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def released(db: Path, timeout: float = 30.0) -> None:
    """Wait until no process holds the ledger's writer lock."""
    fd = os.open(f"{db}.lock", os.O_RDWR)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                assert time.monotonic() < deadline, "the ledger lock was never released"
                time.sleep(0.01)
    finally:
        os.close(fd)


def sink_lines(sink: Path) -> list[str]:
    return sink.read_text(encoding="utf-8").splitlines() if sink.exists() else []


def writer_children(db: Path) -> list[int]:
    """The pids of the writer processes committing to ``db`` (children of this process, or
    orphans of a killed one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"writer_process" in a for a in argv) and str(db).encode() in argv:
            found.append(int(entry.name))
    return found


async def test_the_writer_is_a_child_process_started_by_the_first_change_and_ended_by_close(
    db: Path,
) -> None:
    book = Ledger.open(db)
    campaign = book.start_campaign("c", kind="digest", recipients=people(3))
    emails = [r.email for r in people(3)]
    assert writer_children(db) == []  # started by the first state change
    await book.mark_sending(campaign, emails[0], "<0@x>")
    # No thread of ours: its acknowledgements are read on the event loop.
    assert not [t for t in threading.enumerate() if t.name.startswith("mailer-ledger")]
    (child,) = writer_children(db)
    assert child != os.getpid()
    # A process group of its own: the terminal's Ctrl-C is for the sender, which drains.
    assert os.getpgid(child) == child != os.getpgid(0)
    await book.record(campaign, result(emails[0], Status.SENT))
    book.mark_sending(campaign, emails[1], "<1@x>")  # queued only: close commits it
    book.close()
    assert writer_children(db) == []  # it ended with the ledger, and was reaped
    with Ledger.open(db) as book:
        assert states(book, campaign) == {
            emails[0]: "sent",
            emails[1]: "unknown",
            emails[2]: "pending",
        }


def test_the_pace_holds_marks_only_for_the_slack_a_distant_relay_leaves() -> None:
    """Against a relay on loopback a mark is awaited sooner than a commit takes: no hold.
    Farther off, a batch is held for the slack less the commit and a margin, never over
    MAX_DELAY; a shorter slack is believed at once, a longer one slowly."""
    pace = Pace()
    assert pace.delay() == 0.0  # nothing measured yet
    for _ in range(100):
        pace.awaited(0.0004)  # loopback: MAIL, RCPT and DATA in 0.4 ms
        pace.committed(0.0006)
    assert pace.delay() == 0.0
    for _ in range(100):
        pace.awaited(0.0045)  # about 1.5 ms a round trip
        pace.committed(0.0008)
    assert pace.delay() == pytest.approx(0.0045 - 0.0008 - MARGIN, abs=1e-4)
    pace.awaited(0.0005)  # the relay got faster (or this send went quiet): hold less now
    assert pace.delay() < 0.0015
    pace.committed(0.010)  # a slow commit (a checkpoint): no hold until commits are fast
    assert pace.delay() == 0.0
    far = Pace()
    for _ in range(200):
        far.awaited(0.150)  # 50 ms a round trip
        far.committed(0.001)
    assert far.delay() == MAX_DELAY


async def test_held_marks_and_outcomes_commit_without_anyone_awaiting_them(db: Path) -> None:
    """SQLite's writer learns from the awaits how long after queueing a mark is awaited, and
    then holds a batch of marks for more to join. What it holds commits on its own timer, in
    one commit; an await of a held mark hands it over at once."""
    ledger = Ledger.open(db)
    campaign = ledger.start_campaign("c", kind="digest", recipients=people(40))
    emails = [r.email for r in people(40)]
    for email in emails[:5]:  # marks awaited 20 ms after they were queued
        mark = ledger.mark_sending(campaign, email, f"<{email}>")
        await asyncio.sleep(0.02)
        await mark
        ledger.record(campaign, result(email, Status.SENT))
    writer = ledger._writer  # the pace is the writer's own business
    assert writer is not None and writer.pace.slack > 0.002  # learnt from those awaits
    await ledger.flush()
    writer.pace.slack, writer.pace.latency = 0.02, 0.001  # steady, whatever this disk does
    before, handed = ledger.commits, writer._seq
    ledger.mark_sending(campaign, emails[30], "<30@x>")
    ledger.record(campaign, result(emails[30], Status.DEFERRED, 451, "4.3.0 later"))
    await asyncio.sleep(0)
    assert writer._held is not None and writer._seq == handed  # held, not handed over
    for _ in range(400):
        await asyncio.sleep(0.005)
        if writer._seq > handed:
            break
    assert writer._seq == handed + 1  # released by its timer: the mark and record together
    await ledger.flush()
    assert ledger.commits == before + 1
    writer.pace.slack, writer.pace.latency = 0.02, 0.001
    ledger.mark_sending(campaign, emails[31], "<31@x>")
    assert writer._held is not None
    await ledger.mark_sending(campaign, emails[32], "<32@x>")  # awaited: not held any more
    assert writer._held is None and writer._seq == handed + 2
    ledger.close()
    with Ledger.open(db) as again:
        found = states(again, campaign)
    assert found[emails[30]] == "deferred"
    assert found[emails[31]] == found[emails[32]] == "unknown"
    assert [found[e] for e in emails[:5]] == ["sent"] * 5


def test_a_batch_held_when_its_event_loop_ends_is_committed_by_close(db: Path) -> None:
    """A held batch's timer dies with its event loop; close() still commits what it held."""
    ledger = Ledger.open(db)
    campaign = ledger.start_campaign("c", kind="digest", recipients=people(3))
    emails = [r.email for r in people(3)]

    async def send() -> None:
        await ledger.mark_sending(campaign, emails[0], "<0@x>")
        writer = ledger._writer
        assert writer is not None
        writer.pace.slack, writer.pace.latency = 0.02, 0.001
        ledger.record(campaign, result(emails[0], Status.SENT))
        ledger.mark_sending(campaign, emails[1], "<1@x>")
        await asyncio.sleep(0)
        assert writer._held is not None

    asyncio.run(send())
    ledger.close()
    with Ledger.open(db) as again:
        assert states(again, campaign) == {
            emails[0]: "sent",
            emails[1]: "unknown",
            emails[2]: "pending",
        }


async def test_a_writer_child_that_dies_fails_what_it_had_not_committed(db: Path) -> None:
    """The writer process killed under a running send (the OOM killer, say): every change
    it had not acknowledged fails at once (no connection waits forever), later ones too, and
    close says so; what it committed stays."""
    book = Ledger.open(db)
    campaign = book.start_campaign("c", kind="digest", recipients=people(4))
    emails = [r.email for r in people(4)]
    await book.mark_sending(campaign, emails[0], "<0@x>")
    await book.record(campaign, result(emails[0], Status.SENT))
    (child,) = writer_children(db)
    os.kill(child, signal.SIGSTOP)  # it cannot commit what comes now
    stuck = book.mark_sending(campaign, emails[1], "<1@x>")
    await asyncio.sleep(0.05)
    os.kill(child, signal.SIGKILL)
    with pytest.raises(LedgerError, match="ledger writer"):
        await asyncio.wait_for(stuck, 10)
    with pytest.raises(LedgerError, match="ledger writer"):
        await asyncio.wait_for(book.mark_sending(campaign, emails[2], "<2@x>"), 10)
    with pytest.raises(LedgerError, match="ledger writer"):
        book.close()
    with Ledger.open(db) as again:
        assert states(again, campaign)[emails[0]] == "sent"
        assert states(again, campaign)[emails[2]] == "pending"


async def test_a_failed_commit_fails_every_change_queued_after_it(db: Path) -> None:
    """A commit the writer cannot make (a full disk, an I/O error) must not strand the marks
    gathered meanwhile: each connection waiting for one would wait forever."""
    book = Ledger.open(db)
    campaign = book.start_campaign("c", kind="digest", recipients=people(3))
    emails = [r.email for r in people(3)]
    with raw(db) as conn, conn:  # stands in for SQLITE_FULL or SQLITE_IOERR in the writer
        conn.execute(
            "CREATE TRIGGER boom BEFORE UPDATE ON deliveries "
            f"WHEN NEW.email = '{emails[0]}' BEGIN SELECT RAISE(ABORT, 'disk is full'); END"
        )
    first = book.mark_sending(campaign, emails[0], "<0@x>")  # the writer is idle: sent now
    second = book.mark_sending(campaign, emails[1], "<1@x>")  # gathered for the next commit
    for change in (first, second):
        with pytest.raises(LedgerError, match="cannot write the ledger \\(disk is full\\)"):
            await asyncio.wait_for(change, 10)
    with pytest.raises(LedgerError, match="disk is full"):
        await book.mark_sending(campaign, emails[2], "<2@x>")
    with pytest.raises(LedgerError, match="disk is full"):
        await asyncio.wait_for(book.flush(), 10)
    with pytest.raises(LedgerError, match="disk is full"):
        book.close()
    with Ledger.open(db) as book:
        assert set(states(book, campaign).values()) == {"pending"}


def test_close_commits_what_was_queued_even_after_its_event_loop_ended(where: Path | str) -> None:
    """Records need not be awaited; queued in bulk (more than a pipe holds) by a loop that
    has ended, they are still all committed by ``close``."""
    n = 3000
    book = Ledger.open(where)
    campaign = book.start_campaign("c", kind="digest", recipients=people(n))

    async def send() -> None:
        # Only the end state matters: the marks are queued together, in a few group commits.
        marks = (book.mark_sending(campaign, r.email, f"<{r.email}>") for r in people(n))
        await asyncio.gather(*marks)
        for recipient in people(n):
            book.record(campaign, result(recipient.email, Status.SENT, 250, "2.0.0 " + "x" * 60))

    asyncio.run(send())
    assert book.finish(campaign).finished_at is not None  # a job drains what was queued
    book.close()
    with Ledger.open(where) as book:
        assert book.recovered == 0
        assert book.counts(campaign)[State.SENT] == n


@pytest.mark.slow
def test_committed_rows_survive_sigkill(tmp_path: Path, db: Path) -> None:
    with Ledger.open(db) as book:
        campaign = book.start_campaign("kill", kind="digest", recipients=people(300))
    sender = start_sender(tmp_path, db, tmp_path / "sink", "await", 4)
    try:
        assert sender.stdout is not None
        assert sender.stdout.readline() == "flushed\n", sender.stderr
        sender.send_signal(signal.SIGKILL)
    finally:
        _, stderr = sender.communicate(timeout=30)
    assert sender.returncode == -signal.SIGKILL, stderr
    with Ledger.open(db) as book:
        assert book.recovered == 0
        assert book.counts(campaign)[State.SENT] == 300


@pytest.mark.slow
def test_after_sigkill_at_random_points_nobody_gets_two_copies(tmp_path: Path, db: Path) -> None:
    n, workers = 10_000, 8
    sink = tmp_path / "sink"
    with Ledger.open(db) as book:
        campaign = book.start_campaign("kill", kind="digest", recipients=people(n))
    rng = random.Random(20261127)
    kills = 0
    for _round in range(4):
        target = len(sink_lines(sink)) + rng.randint(1, 600)
        sender = start_sender(tmp_path, db, sink, "forget", workers)
        deadline = time.monotonic() + 60
        try:
            while len(sink_lines(sink)) < target and sender.poll() is None:
                assert time.monotonic() < deadline, "the sender made no progress"
                time.sleep(0.001)
            sender.send_signal(signal.SIGKILL)
        finally:
            _, stderr = sender.communicate(timeout=30)
        assert sender.returncode == -signal.SIGKILL, stderr
        kills += 1
        released(db)  # the killed run's writer child finished, and the kernel let go
        assert writer_children(db) == []  # no orphan left committing
        with raw(db) as conn:  # before any recovery: what the killed run left in flight
            (sending,) = conn.execute(
                "SELECT count(*) FROM deliveries WHERE state = 'sending'"
            ).fetchone()
        assert sending <= workers, f"{sending} rows in sending after a kill"

        # Every message the server got was marked before it went out: none is to be resent.
        delivered = set(sink_lines(sink))
        with Ledger.open(db) as book:
            assert book.recovered == sending
            assert delivered.isdisjoint(r.email for r in book.to_send(campaign))

    # A last, complete run resumes.
    sender = start_sender(tmp_path, db, sink, "forget", workers)
    stdout, stderr = sender.communicate(timeout=120)
    assert sender.returncode == 0 and stdout == "flushed\n", stderr

    copies = collections.Counter(sink_lines(sink))
    assert max(copies.values()) == 1, "someone got two copies"
    with Ledger.open(db) as book:
        final = states(book, campaign)
        counts = book.counts(campaign)
    assert len(final) == n
    for email, state in final.items():
        if copies[email] == 0:
            assert state == "unknown", email  # never silently skipped
        else:
            assert state in ("sent", "unknown"), email
    assert counts[State.SENT] + counts[State.UNKNOWN] == n
    assert counts[State.UNKNOWN] <= workers * kills
    assert counts[State.SENT] == sum(1 for e, s in final.items() if s == "sent" and copies[e])
