"""Several senders on one PostgreSQL ledger: does a campaign go faster with more machines?

Usage: .venv/bin/python bench/bench_scaling.py (--postgres postgresql:///postgres?host=… |
           --throwaway) [--n 20000] [--concurrency 8] [--delay 3] [--senders 3] [--sqlite]

It starts smtp-sink behind a proxy that delays each reply --delay ms (a relay some way off:
the senders wait on it, not on the CPU), writes bench/bench_send.py's articles and list, and
runs `mailer digest --send` in one run: once with one sender, then with --senders senders
started together on the same campaign, each time in a new database made on the server of
--postgres (so no earlier campaign of the same issue is in the way). It reports msg/s for
each (N over the wall time from the first start to the last exit) and the ratio; the issue's
target is 2.5x with 3 senders. With --sqlite, one sender on a SQLite ledger is measured too,
for the cost of PostgreSQL against the embedded default (target: at least 0.8x).

Each sender is `python -m mailer digest --send --yes` with MAILER_LEDGER set to the URL.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_send as bs  # a sibling script, not a package


def new_database(admin: str, name: str) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urllib.parse.urlsplit(admin)
    return f"{parts.scheme}://{parts.netloc}/{name}" + (f"?{parts.query}" if parts.query else "")


def sent_rows(url: str) -> int:
    try:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM deliveries WHERE state = 'sent'").fetchone()
    except psycopg.Error:
        return 0  # no ledger was made: the senders failed (see the problems)
    return int(row[0]) if row else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--postgres", metavar="URL", help="a database to admin")
    where.add_argument(
        "--throwaway",
        action="store_true",
        help="start a throwaway cluster (tests/pg.py: Debian's PostgreSQL, fsync on)",
    )
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--delay", type=float, default=3.0, metavar="MS")
    parser.add_argument("--senders", type=int, default=3)
    parser.add_argument("--sqlite", action="store_true", help="also one sender on SQLite")
    args = parser.parse_args()
    if args.throwaway:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
        from tests.pg import cluster

        with cluster(fsync=True) as found:
            args.postgres = found.url()
            return measure(args)
    return measure(args)


def measure(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    sink: bs.Sink | None = None
    proxy: bs.DelayProxy | None = None
    problems: list[str] = []
    try:
        rng = random.Random(20261127)
        articles, list_path = root / "articles", root / "subscribers.csv"
        bs.write_articles(articles, rng)
        bs.write_list(list_path, args.n, rng)
        sink = bs.Sink("smtp-sink" if bs.SMTP_SINK else "aiosmtpd", root)
        proxy = bs.DelayProxy(sink.port, args.delay / 1000)
        common = ["digest", "--date", bs.ISSUE_DATE.isoformat(), "--articles", str(articles)]
        common += [
            "--list",
            str(list_path),
            "--send",
            "--yes",
            "--concurrency",
            str(args.concurrency),
        ]
        print(f"sink: {sink.command}, each reply delayed {args.delay:g} ms by a proxy")
        print(f"N = {args.n}, {args.concurrency} connections a sender, load {bs._loadavg()}")

        def run(label: str, senders: int, ledger: str) -> float:
            assert sink is not None and proxy is not None
            before = sink.accepted() or 0
            postgres = ledger.startswith("postgresql")
            file = root / f"{label}.sqlite3"
            env = bs.child_env(proxy.port, file)
            if postgres:
                env["MAILER_LEDGER"] = ledger
            argv = [sys.executable, "-m", "mailer"]
            start = time.perf_counter()
            children = [
                subprocess.Popen(
                    [*argv, *common],
                    env=env,
                    cwd=root,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
                for _ in range(senders)
            ]
            outputs = [child.communicate(timeout=1800)[0] for child in children]
            wall = time.perf_counter() - start
            seen = (sink.wait_settled(before + args.n) or 0) - before
            for child, output in zip(children, outputs, strict=True):
                if child.returncode != 0:
                    problems.append(f"{label}: a sender exited {child.returncode}: {output[-300:]}")
            if seen != args.n:
                problems.append(f"{label}: the sink got {seen} messages, not {args.n}")
            if postgres and (rows := sent_rows(ledger)) != args.n:
                problems.append(f"{label}: {rows} rows sent in the ledger, not {args.n}")
            rate = args.n / wall
            print(f"{label:<28} {rate:>7.0f} msg/s  {wall:6.2f} s", flush=True)
            return rate

        one = run("1 sender, PostgreSQL", 1, new_database(args.postgres, "bench_scaling_1"))
        many = run(
            f"{args.senders} senders, PostgreSQL",
            args.senders,
            new_database(args.postgres, f"bench_scaling_{args.senders}"),
        )
        print(f"{args.senders} senders / 1 sender: {many / one:.2f}x (target 2.5x with 3)")
        if args.sqlite:
            alone = run("1 sender, SQLite", 1, "")
            print(f"PostgreSQL / SQLite, one sender: {one / alone:.2f}x (target >= 0.8x)")
        print(f"load after: {bs._loadavg()}")
        for problem in problems:
            print(f"PROBLEM: {problem}")
        return 1 if problems else 0
    finally:
        if proxy is not None:
            proxy.stop()
        if sink is not None:
            sink.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
