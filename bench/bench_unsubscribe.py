"""One-click unsubscribe load test: `mailer serve` against a 100,000-row suppression list.

Usage: .venv/bin/python bench/bench_unsubscribe.py [--rows 100000] [--requests 2000]
           [--clients 50] [--processes 2] [--mode journal|rewrite|both] [--rewrite-requests 100]

It writes a suppression list of --rows addresses into a temporary folder, starts a real
`mailer serve` (uvicorn, a subprocess) on 127.0.0.1, and lets --clients concurrent httpx
clients (one keep-alive connection each, spread over --processes processes) post --requests
one-click unsubscribes (`List-Unsubscribe=One-Click`, each with its own token). Then it
reads the suppression list back and checks that every address is in it, none lost, and that
every answer was 200.
It prints requests per second, the p50/p99 latency, and the server's CPU time per request
(which, unlike the others, does not depend on what else the machine is doing). Target,
from issue 12: at least 300 requests per second and a p99 under 250 ms, on 2 cores.

--mode rewrite measures the storage as it was before the journal: the same server, but each
unsubscribe rewrites the whole CSV (``Suppression.add``, one request at a time, as the CLI
does). It is so slow at this size that it runs only --rewrite-requests requests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import IO

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from mailer.suppression import Suppression  # noqa: E402
from mailer.tokens import make_token  # noqa: E402

SECRET = "bench-secret-key-0123456789-abcdefghijklmnopqr"
# The server as it was: every unsubscribe one locked rewrite of the whole CSV.
REWRITE_SERVER = """
import sys
from anyio import to_thread
from mailer.web import unsubscribe

async def suppress(self, address, note):
    await to_thread.run_sync(lambda: self.suppression.add(address, "unsubscribed", note=note))

unsubscribe.UnsubscribeQueue.suppress = suppress
from mailer.__main__ import main
sys.argv = ["mailer", "serve", "--port", "0"]
main()
"""


BODY = b"List-Unsubscribe=One-Click"
FORM = {"content-type": "application/x-www-form-urlencoded"}


def write_suppressions(path: Path, rows: int) -> None:
    rng = random.Random(12)
    domains = [f"mail{n}.example.{tld}" for n in range(3000) for tld in ("com", "org")]
    reasons = ["unsubscribed", "bounced", "complaint", "manual"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        out.write("email,reason,date\n")
        for i in range(rows):
            out.write(
                f"old{i}@{rng.choice(domains)},{rng.choice(reasons)},2026-0{1 + i % 9}-1{i % 10}\n"
            )


def start_server(
    folder: Path, mode: str, stderr: IO[str]
) -> tuple[subprocess.Popen[str], str, float]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "MAILER_SECRET_KEY": SECRET,
        "MAILER_PUBLIC_URL": "https://news.example.org",
    }
    argv = (
        [sys.executable, "-m", "mailer", "serve", "--port", "0"]
        if mode == "journal"
        else [sys.executable, "-c", REWRITE_SERVER]
    )
    started = time.monotonic()
    proc = subprocess.Popen(
        argv, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"on (http://127\.0\.0\.1:\d+)/", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, match.group(1), time.monotonic() - started


Result = tuple[list[float], list[int], float, float, float]


def load_part(url: str, emails: list[str], clients: int, start_at: float) -> Result:
    """One client process: ``(latencies, statuses, started, ended, CPU seconds)``."""
    return asyncio.run(load(url, emails, clients, start_at))


async def load(url: str, emails: list[str], clients: int, start_at: float) -> Result:
    tokens = [make_token(SECRET, "example", email) for email in emails]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for token in tokens:
        queue.put_nowait(token)
    latencies: list[float] = []
    statuses: list[int] = []

    async def client(http: httpx.AsyncClient) -> None:
        async with http:
            while True:
                try:
                    token = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                start = time.perf_counter()
                try:
                    # Gmail's request; built by hand, as httpx's encoders cost the
                    # clients more CPU than the server spends answering.
                    response = await http.post(
                        f"/unsubscribe?token={token}", content=BODY, headers=FORM
                    )
                    statuses.append(response.status_code)
                except httpx.HTTPError:
                    statuses.append(0)
                latencies.append(time.perf_counter() - start)

    # Made before the clock starts: each builds an SSL context, which takes a while.
    https = [httpx.AsyncClient(base_url=url, timeout=120) for _ in range(clients)]
    await asyncio.sleep(max(0.0, start_at - time.time()))  # every process starts together
    cpu = time.process_time()
    started = time.time()
    await asyncio.gather(*(client(http) for http in https))
    return latencies, statuses, started, time.time(), time.process_time() - cpu


def run_clients(
    url: str, emails: list[str], clients: int, processes: int
) -> tuple[list[float], list[int], float, float]:
    """``clients`` clients over ``processes`` processes (so that they are not the bottleneck
    on one core): all latencies and statuses, the wall time, and the clients' CPU seconds."""
    start_at = time.time() + 2.0
    with ProcessPoolExecutor(processes) as pool:
        parts = [
            pool.submit(load_part, url, emails[n::processes], clients // processes, start_at)
            for n in range(processes)
        ]
        results = [part.result() for part in parts]
    latencies = [x for r in results for x in r[0]]
    statuses = [x for r in results for x in r[1]]
    elapsed = max(r[3] for r in results) - min(r[2] for r in results)
    return latencies, statuses, elapsed, sum(r[4] for r in results)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def bench(mode: str, rows: int, requests: int, clients: int, processes: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-unsubscribe-") as tmp:
        folder = Path(tmp)
        path = folder / "lists" / "suppressed.csv"
        write_suppressions(path, rows)
        errlog = (folder / "server-stderr.txt").open("w+", encoding="utf-8")
        proc, url, startup = start_server(folder, mode, errlog)
        try:
            emails = [f"reader{i}@bench.example.net" for i in range(requests)]
            cpu_before = cpu_seconds(proc.pid)
            latencies, statuses, elapsed, own = run_clients(url, emails, clients, processes)
            cpu = cpu_seconds(proc.pid) - cpu_before
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        suppression = Suppression.load(path)
        lost = [e for e in emails if not suppression.is_suppressed(e)]
        errors = sum(1 for s in statuses if s != 200)
        print(
            f"{mode:8} {requests:,} unsubscribes, {clients} clients in {processes} processes, "
            f"{rows:,}-row list "
            f"(server up in {startup:.1f} s): {requests / elapsed:,.0f} req/s, "
            f"p50 {percentile(latencies, 0.50) * 1000:.0f} ms, "
            f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms, "
            f"max {max(latencies) * 1000:.0f} ms, "
            f"mean {statistics.fmean(latencies) * 1000:.0f} ms; "
            f"{errors} errors, {len(lost)} lost, list now {len(suppression):,}; "
            f"CPU per request: server {cpu / requests * 1000:.2f} ms, "
            f"clients {own / requests * 1000:.2f} ms; load average {os.getloadavg()[0]:.1f}"
        )
        errlog.seek(0)
        complaints = errlog.read().splitlines()
        errlog.close()
        if complaints:
            print(f"         the server logged {len(complaints)} lines, e.g. {complaints[0]!r}")
        if (errors or lost) and mode == "journal":
            raise SystemExit(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--mode", choices=["journal", "rewrite", "both"], default="journal")
    parser.add_argument("--rewrite-requests", type=int, default=100)
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    args = parser.parse_args()
    if args.mode in ("rewrite", "both"):
        bench("rewrite", args.rows, args.rewrite_requests, args.clients, args.processes)
    if args.mode in ("journal", "both"):
        bench("journal", args.rows, args.requests, args.clients, args.processes)


if __name__ == "__main__":
    main()
