"""The SQLite ledger's writer, a child process or a thread, compared on the real send path in
one run.

Usage: .venv/bin/python bench/bench_writer.py [--n 20000] [--concurrency 8] [--rounds 3]
                                              [--rtt MS]

Each round runs `mailer digest --send` twice into one smtp-sink (bench/bench_send.py's
sink, articles and list), once with each writer, in alternating order, each with a fresh
ledger. Only the writer differs:

- process: this working tree as it is (mailer.ledger.writer_process: the group commits are
  made by a child process);
- thread: the same tree, with the same group commits made by a thread of the sending
  process (mailer.ledger.writer.ThreadWriter over the same SQLiteApplier), put in place
  by a few lines run before the CLI.

It reports msg/s (N over the child's wall time, start-up included) and CPU per message (the
writer process's included: it is reaped by the sender) for every run, the median of each
writer, and the spread of the rounds: the noise that a difference must beat. Issue 14: keep
the simpler one (the thread) unless the other wins by more than the noise.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_send as bs  # a sibling script, not a package

WRITERS = ("thread", "process")
REPO = Path(__file__).resolve().parent.parent
# `mailer ARGS` with the thread writer in place of the child process, for SQLite.
THREAD_MAILER = """
import sys
from mailer.ledger import writer, writer_process
from mailer.ledger.sqlite_apply import SQLiteApplier


class ThreadInstead(writer.ThreadWriter):
    paced = True  # as the process is: only what commits differs

    def __init__(self, location, path, lock_fd, clock):
        super().__init__(location, lambda: SQLiteApplier(path), clock)


writer_process.ProcessWriter = ThreadInstead
from mailer.__main__ import main

sys.argv = ["mailer", *sys.argv[1:]]
main()
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rtt", type=float, default=0.0, metavar="MS")
    parser.add_argument("--timeout", type=float, default=900)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-writer-"))
    sink: bs.Sink | None = None
    proxy: bs.DelayProxy | None = None
    problems: list[str] = []
    try:
        rng = random.Random(20261127)
        articles, list_path = root / "articles", root / "subscribers.csv"
        bs.write_articles(articles, rng)
        bs.write_list(list_path, args.n, rng)
        sink = bs.Sink("smtp-sink" if bs.SMTP_SINK else "aiosmtpd", root)
        proxy = bs.DelayProxy(sink.port, args.rtt / 1000) if args.rtt else None
        port = proxy.port if proxy is not None else sink.port
        starts = {"thread": ["-c", THREAD_MAILER], "process": ["-m", "mailer"]}
        common = ["--date", bs.ISSUE_DATE.isoformat(), "--articles", str(articles)]
        common += [
            "--list",
            str(list_path),
            "--send",
            "--yes",
            "--concurrency",
            str(args.concurrency),
        ]
        print(f"sink: {sink.command}" + (f", replies delayed {args.rtt:g} ms" if proxy else ""))
        print(f"N = {args.n}, {args.concurrency} connections, load avg {bs._loadavg()}")
        rates: dict[str, list[float]] = {w: [] for w in WRITERS}
        for round_ in range(args.rounds):
            order = WRITERS if round_ % 2 == 0 else WRITERS[::-1]
            for writer in order:
                ledger = bs.fresh_ledger(root, f"{writer}{round_}")
                env = {**bs.child_env(port, ledger), "PYTHONPATH": str(REPO)}
                before = sink.accepted() or 0
                argv = [sys.executable, *starts[writer], "digest", *common]
                run = bs.run_child(writer, argv, env=env, cwd=root, timeout=args.timeout)
                seen = (sink.wait_settled(before + args.n) or 0) - before
                states = bs.inspect_ledger(ledger)
                if run.returncode != 0 or seen != args.n:
                    problems.append(
                        f"{writer} round {round_ + 1}: exit {run.returncode}, sink got {seen}"
                    )
                if states is None or states.states.get("sent") != args.n:
                    problems.append(f"{writer} round {round_ + 1}: ledger {states}")
                rate = args.n / run.wall
                rates[writer].append(rate)
                print(
                    f"round {round_ + 1} {writer:<8} {rate:>7.0f} msg/s  {run.wall:6.2f} s  "
                    f"CPU {run.cpu * 1000 / args.n:.3f} ms/msg",
                    flush=True,
                )
        print(f"load avg after: {bs._loadavg()}")
        medians = {w: statistics.median(r) for w, r in rates.items()}
        spread = max(max(r) - min(r) for r in rates.values())
        for writer in WRITERS:
            values = ", ".join(f"{r:.0f}" for r in rates[writer])
            print(f"{writer:<8} median {medians[writer]:.0f} msg/s (rounds: {values})")
        gain = medians["process"] - medians["thread"]
        verdict = (
            "the process wins" if gain > spread else "no win beyond the noise: the thread would do"
        )
        print(
            f"process - thread: {gain:+.0f} msg/s; noise (largest spread of one writer's "
            f"rounds): {spread:.0f} msg/s: {verdict}"
        )
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
