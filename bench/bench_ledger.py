"""Benchmark: what the delivery ledger costs a send.

Part 1 times the ledger alone: N messages, each ``await mark_sending`` then ``record`` (not
awaited, as the engine does), by W concurrent asyncio workers, on a real file with
``synchronous=FULL``. It prints messages/s, the CPU per message (this process, the
ledger's writer thread included, and the event loop's thread alone), the group commits and the
latency of ``mark_sending``.

Part 2 runs a stand-in for the delivery engine, bound by client CPU like aiosmtplib: a fixed
amount of Python work per message (``--send-us``, calibrated at start), in four slices
between which the loop runs, as it does between MAIL, RCPT, DATA and the body. It is run
without the ledger, with the mark awaited before MAIL, and with the mark queued before
MAIL but awaited before the body, as the engine does, so that its commit overlaps the MAIL,
RCPT and DATA round trips. The figure that counts is the real engine against a real sink
(bench/bench_send.py); this one shows the shape, on a machine where the sink takes no CPU.

    .venv/bin/python bench/bench_ledger.py [-n 20000] [-w 8] [--send-us 600] [--rounds 3]
                                           [--postgres postgresql://…]

With --postgres, the same runs are made on a PostgreSQL ledger too (each a new campaign in
that database), in the same run, so the two backends can be compared side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import resource
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mailer.ledger import Campaign, Ledger, State
from mailer.models import Recipient, SendResult, Status


def recipients(n: int) -> Iterator[Recipient]:
    for i in range(n):
        yield Recipient(f"reader{i:07d}@example.org", f"Reader {i}", {"city": "Lyon"}, i + 2)


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def spin(loops: int) -> None:
    for _ in range(loops):
        pass


def calibrate(microseconds: float) -> int:
    """Loops of ``spin`` that take ``microseconds`` of CPU (best of several tries)."""
    loops = 100_000
    best = min(_timed(loops) for _ in range(7))
    return max(1, round(loops * microseconds / (best * 1e6)))


def _timed(loops: int) -> float:
    start = time.thread_time()
    spin(loops)
    return time.thread_time() - start


@dataclass
class Run:
    rate: float  # messages per second
    cpu_us: float  # CPU per message: this process, the ledger's writer thread included
    loop_cpu_us: float  # CPU of the event loop's thread per message
    commits: int = 0
    latency: list[float] | None = None  # seconds from mark_sending to durable


async def send_all(
    ledger: Ledger | None,
    campaign: Campaign | None,
    n: int,
    workers: int,
    slice_loops: int,
    *,
    before_data: bool = False,
) -> Run:
    source = ledger.to_send(campaign) if ledger and campaign else recipients(n)
    latency: list[float] = []

    async def work(slices: int) -> None:
        for _ in range(slices):
            spin(slice_loops)
            await asyncio.sleep(0)

    async def worker() -> None:
        for index, recipient in enumerate(source):
            if ledger is None or campaign is None:
                await work(4)
                continue
            message_id = f"<{index}.{recipient.email}>"
            start = time.perf_counter()
            durable = ledger.mark_sending(campaign, recipient.email, message_id)
            if before_data:
                await work(3)  # MAIL FROM, RCPT TO, DATA
                await durable
                latency.append(time.perf_counter() - start)
                await work(1)  # the body
            else:
                await durable
                latency.append(time.perf_counter() - start)
                await work(4)
            result = SendResult(index, recipient.email, message_id, Status.SENT, 250, "2.0.0 OK")
            ledger.record(campaign, result)

    commits = ledger.commits if ledger else 0
    if ledger is not None and campaign is not None:
        await ledger.flush()
    cpu, loop_cpu, start = process_cpu(), time.thread_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    if ledger is not None:
        await ledger.flush()
    elapsed = time.perf_counter() - start
    return Run(
        rate=n / elapsed,
        cpu_us=(process_cpu() - cpu) / n * 1e6,
        loop_cpu_us=(time.thread_time() - loop_cpu) / n * 1e6,
        commits=(ledger.commits - commits) if ledger else 0,
        latency=latency,
    )


def with_ledger(
    folder: Path,
    name: str,
    n: int,
    workers: int,
    slice_loops: int,
    *,
    before_data: bool = False,
    url: str | None = None,
) -> tuple[Run, float]:
    """One run on a fresh ledger file, or a new campaign of the PostgreSQL ledger ``url``."""
    ledger = Ledger.open(url or folder / f"{name}.sqlite3")
    if url:
        name = f"{name}-{time.time_ns()}"
    try:
        start = time.perf_counter()
        campaign = ledger.start_campaign(name, kind="bench", recipients=recipients(n))
        inserted = time.perf_counter() - start
        run = asyncio.run(
            send_all(ledger, campaign, n, workers, slice_loops, before_data=before_data)
        )
        counts = ledger.counts(campaign)
        assert counts[State.SENT] == n, counts
        return run, inserted
    finally:
        ledger.close()


def describe_latency(latency: list[float] | None) -> str:
    if not latency:
        return ""
    ordered = sorted(latency)
    median = statistics.median(ordered) * 1e3
    p99 = ordered[int(len(ordered) * 0.99)] * 1e3
    return f"mark_sending latency median {median:.2f} ms, p99 {p99:.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="messages")
    parser.add_argument("-w", "--workers", type=int, default=8, help="concurrent workers")
    parser.add_argument("--send-us", type=float, default=600.0, help="client CPU per message")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of part 2 (best counts)")
    parser.add_argument(
        "--postgres", metavar="URL", help="also measure a PostgreSQL ledger (postgresql://…)"
    )
    args = parser.parse_args()
    n, workers = args.n, args.workers
    print(
        f"ledger bench: {n:,} messages, {workers} workers, {os.cpu_count()} CPUs, "
        f"{dt.datetime.now():%Y-%m-%d %H:%M}, load {os.getloadavg()[0]:.2f}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-ledger-", dir=".") as tmp:
        folder = Path(tmp)

        alone, inserted = with_ledger(folder, "alone", n, workers, 0)
        print(f"start_campaign    : {n:,} rows in {inserted * 1000:.0f} ms")
        print(
            f"ledger alone      : {alone.rate:8,.0f} msg/s (mark_sending + record), "
            f"{alone.cpu_us:.0f} µs CPU/msg ({alone.loop_cpu_us:.0f} µs on the event loop, the "
            "rest in the writer thread), "
            f"{alone.commits:,} commits ({n / alone.commits:.1f} msg/commit)"
        )
        print(f"                    {describe_latency(alone.latency)}")
        if args.postgres:
            pg, inserted = with_ledger(folder, "alone", n, workers, 0, url=args.postgres)
            print(
                f"PostgreSQL alone  : {pg.rate:8,.0f} msg/s ({pg.rate / alone.rate:.2f}x "
                f"SQLite), {pg.cpu_us:.0f} µs CPU/msg, {pg.commits:,} commits; "
                f"start_campaign {inserted * 1000:.0f} ms"
            )
            print(f"                    {describe_latency(pg.latency)}")

        slice_loops = calibrate(args.send_us / 4)
        bare: list[Run] = []
        mail: list[Run] = []
        data: list[Run] = []
        shared: list[Run] = []
        for round_ in range(args.rounds):  # interleaved, as the machine's load varies
            bare.append(asyncio.run(send_all(None, None, n, workers, slice_loops)))
            mail.append(with_ledger(folder, f"mail{round_}", n, workers, slice_loops)[0])
            data.append(
                with_ledger(folder, f"data{round_}", n, workers, slice_loops, before_data=True)[0]
            )
            if args.postgres:
                shared.append(
                    with_ledger(
                        folder, "pg", n, workers, slice_loops, before_data=True, url=args.postgres
                    )[0]
                )
        best = max(bare, key=lambda r: r.rate)
        print(
            f"engine stand-in   : {best.rate:8,.0f} msg/s without ledger "
            f"({best.loop_cpu_us:.0f} µs CPU/msg; best of {args.rounds})"
        )
        labels = [("awaited before MAIL", mail), ("awaited before the body (the engine)", data)]
        if shared:
            labels.append(("awaited before the body, PostgreSQL", shared))
        for label, runs in labels:
            top = max(runs, key=lambda r: r.rate)
            print(
                f"  ledger, mark {label}: {top.rate:6,.0f} msg/s, cost "
                f"{(1 - top.rate / best.rate) * 100:4.1f} %; event loop "
                f"+{top.loop_cpu_us - best.loop_cpu_us:.0f} µs CPU/msg; "
                f"{describe_latency(top.latency)}"
            )


if __name__ == "__main__":
    main()
