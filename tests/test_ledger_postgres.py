"""The PostgreSQL ledger with several senders: one audience however many start it, claims
that never hand one row to two senders, leases that run out, and senders killed mid-run.

The tests shared with SQLite are in test_ledger.py (parametrised over both backends)."""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from mailer.ledger import Campaign, Ledger, LedgerError, State, postgres_schema
from mailer.models import Recipient, SendResult, Status
from tests.conftest import REPO


def people(n: int) -> Iterator[Recipient]:
    for i in range(n):
        yield Recipient(f"reader{i:06d}@example.org", f"Reader {i}", {}, i + 2)


def sent(email: str) -> SendResult:
    return SendResult(0, email, f"<{email}>", Status.SENT, 250, "2.0.0 OK")


def test_senders_starting_one_campaign_at_once_freeze_one_audience(url: str) -> None:
    n, senders = 3000, 4
    books = [Ledger.open(url) for _ in range(senders)]
    start = threading.Barrier(senders)
    found: list[Campaign] = []

    def begin(book: Ledger) -> None:
        start.wait()
        found.append(book.start_campaign("c", kind="digest", recipients=people(n)))

    threads = [threading.Thread(target=begin, args=(book,)) for book in books]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert len({c.id for c in found}) == 1 and len(found) == senders
        assert books[0].counts(found[0])[State.PENDING] == n == found[0].frozen_count
        assert len(books[0].campaigns()) == 1
    finally:
        for book in books:
            book.close()


async def test_claims_never_hand_one_row_to_two_senders(url: str) -> None:
    a, b = Ledger.open(url), Ledger.open(url)
    try:
        campaign = a.start_campaign("c", kind="digest", recipients=people(1000))
        streams = [a.to_send(campaign), b.to_send(campaign)]
        got: list[list[str]] = [[], []]
        live = [0, 1]
        while live:  # the two senders take turns, a row at a time
            for index in list(live):
                recipient = next(streams[index], None)
                if recipient is None:
                    live.remove(index)
                else:
                    got[index].append(recipient.email)
        assert got[0] and got[1]
        assert set(got[0]).isdisjoint(got[1])
        assert sorted(got[0] + got[1]) == [r.email for r in people(1000)]
        # A sender may mark only what it holds: b cannot mark a row a holds.
        with pytest.raises(Exception, match="another sender holds it"):
            await b.mark_sending(campaign, got[0][0], "<x>")
        await a.mark_sending(campaign, got[0][0], "<x>")
        await a.record(campaign, sent(got[0][0]))
    finally:
        a.close()
        b.close()


# A sender that claims rows, marks one, then waits to be killed: "claim K MARKED".
HOLDER = """
import asyncio, sys
from mailer.ledger import Ledger

async def main() -> None:
    ledger = Ledger.open(sys.argv[1], lease=float(sys.argv[2]))
    campaign = ledger.campaign("c")
    stream = ledger.to_send(campaign)
    first = next(stream)
    await ledger.mark_sending(campaign, first.email, "<held@x>")
    print(first.email, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.mark.slow
def test_a_dead_senders_claims_go_back_and_its_sending_row_becomes_unknown(
    url: str, tmp_path: Path
) -> None:
    with Ledger.open(url) as book:
        campaign = book.start_campaign("c", kind="digest", recipients=people(50))
    script = tmp_path / "holder.py"
    script.write_text(HOLDER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    holder = subprocess.Popen(
        [sys.executable, str(script), url, "1"], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout is not None
        marked = holder.stdout.readline().strip()
        with Ledger.open(url) as other:  # the holder is alive: its rows are not free
            assert list(other.to_send(campaign)) == []
            assert other.recovered == 0
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=30)
    time.sleep(2.5)  # its lease of one second runs out
    with Ledger.open(url) as other:
        assert other.recovered == 1
        assert list(other.addresses(campaign, State.UNKNOWN)) == [marked]
        rest = [r.email for r in other.to_send(campaign)]
        assert rest == [r.email for r in people(50) if r.email != marked]


# A stand-in for one sending machine: W workers share its claims; each marks its message,
# "delivers" it (appends the address to the sink, as a server would record it), then records
# the reply without awaiting it, as the engine does.
SENDER = """
import asyncio, os, sys
from mailer.ledger import Ledger
from mailer.models import SendResult, Status

url, sink, workers, lease = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])

async def main() -> None:
    ledger = Ledger.open(url, lease=lease)
    campaign = ledger.campaign("kill")
    stream = ledger.to_send(campaign)
    fd = os.open(sink, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    async def worker() -> None:
        for recipient in stream:
            email = recipient.email
            await ledger.mark_sending(campaign, email, f"<{email}>")
            os.write(fd, (email + "\\n").encode())  # DATA accepted by the server
            await asyncio.sleep(0)  # the reply is on its way
            ledger.record(campaign, SendResult(0, email, f"<{email}>", Status.SENT, 250))

    await asyncio.gather(*(worker() for _ in range(workers)))
    await ledger.flush()
    ledger.recover(campaign)
    ledger.close()
    print("done", flush=True)

asyncio.run(main())
"""


def sink_lines(sink: Path) -> list[str]:
    return sink.read_text(encoding="utf-8").splitlines() if sink.exists() else []


@pytest.mark.slow
def test_three_senders_one_killed_nobody_gets_two_copies(url: str, tmp_path: Path) -> None:
    n, workers, lease = 6000, 4, 1.0
    sink = tmp_path / "sink"
    with Ledger.open(url) as book:
        campaign = book.start_campaign("kill", kind="digest", recipients=people(n))
    script = tmp_path / "sender.py"
    script.write_text(SENDER, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def start() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(script), url, str(sink), str(workers), str(lease)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    senders = [start() for _ in range(3)]
    target = random.Random(20261130).randint(300, 2000)
    deadline = time.monotonic() + 120
    while len(sink_lines(sink)) < target and senders[0].poll() is None:
        assert time.monotonic() < deadline, "the senders made no progress"
        time.sleep(0.001)
    senders[0].send_signal(signal.SIGKILL)
    senders[0].communicate(timeout=30)
    for other in senders[1:]:
        stdout, stderr = other.communicate(timeout=300)
        assert other.returncode == 0 and stdout == "done\n", stderr
    time.sleep(2 * lease)  # the killed sender's lease runs out
    last = start()
    stdout, stderr = last.communicate(timeout=300)
    assert last.returncode == 0 and stdout == "done\n", stderr

    copies = collections.Counter(sink_lines(sink))
    assert max(copies.values()) == 1, "someone got two copies"
    with Ledger.open(url) as book:
        counts = book.counts(campaign)
        unknown = set(book.addresses(campaign, State.UNKNOWN))
    assert counts[State.SENT] + counts[State.UNKNOWN] == n, counts
    assert len(unknown) <= workers  # at most one per connection of the killed sender
    never_received = {r.email for r in people(n)} - set(copies)
    assert never_received <= unknown  # never silently skipped
    assert counts[State.SENT] == len(copies) - len(unknown & set(copies))


async def test_status_sees_each_senders_progress(url: str) -> None:
    a, b = Ledger.open(url), Ledger.open(url)
    try:
        campaign = a.start_campaign("c", kind="digest", recipients=people(500))
        for book, count in ((a, 3), (b, 2)):
            stream = book.to_send(campaign)
            for _ in range(count):
                email = next(stream).email
                await book.mark_sending(campaign, email, f"<{email}>")
                await book.record(campaign, sent(email))
        progress = {w.worker: w for w in a.workers(campaign)}
        assert sorted(w.counts[State.SENT] for w in progress.values()) == [2, 3]
        assert all(w.alive for w in progress.values())
    finally:
        a.close()
        b.close()
    with Ledger.open(url, readonly=True) as reader:
        assert not any(w.alive for w in reader.workers(campaign))


def test_an_unreachable_server_is_one_clear_error_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql://mailer:s3cret@/ledger?host={tmp_path}&connect_timeout=2"
    with pytest.raises(LedgerError, match="cannot open the ledger") as caught:
        Ledger.open(url)
    assert "s3cret" not in str(caught.value)
    assert f"postgresql://mailer@/ledger?host={tmp_path}" in str(caught.value)


def test_migrations_are_versioned_and_a_newer_schema_is_refused(url: str) -> None:
    Ledger.open(url).close()
    Ledger.open(url).close()  # migrated once: the second open finds its version
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT version FROM mailer_schema").fetchone()
        assert row == (postgres_schema.SCHEMA_VERSION,)
        conn.execute("UPDATE mailer_schema SET version = version + 1")
    with pytest.raises(LedgerError, match="newer than this mailer"):
        Ledger.open(url)
    with pytest.raises(LedgerError, match="this mailer reads"):
        Ledger.open(url, readonly=True)
