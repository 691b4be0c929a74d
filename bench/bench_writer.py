"""The ledger's writer, a thread or a process, compared on the real send path in one run.

Usage: .venv/bin/python bench/bench_writer.py [--n 20000] [--concurrency 8] [--rounds 3]
                                              [--rtt MS] [--process-rev REV]

Each round runs `mailer digest --send` twice into one smtp-sink (bench/bench_send.py's
sink, articles and list), once with each writer, in alternating order, each with a fresh
ledger:

- thread: this working tree (mailer/ledger/, whose writer is a thread);
- process: a copy of this working tree in which mailer/ledger/ is replaced by the
  single-module ledger of git revision REV (default ff5300b, the last one before the
  package), whose writer is a child process, with that revision's status command (the
  current one shows senders, which that ledger does not know). Only the ledger differs.

It reports msg/s (N over the child's wall time, start-up included) and CPU per message (the
writer process's included: it is reaped by the child) for every run, the median of each
writer, and the spread of the rounds: the noise that a difference must beat.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_send as bs  # a sibling script, not a package

WRITERS = ("thread", "process")
REPO = Path(__file__).resolve().parent.parent


def process_tree(root: Path, rev: str) -> Path:
    """A copy of this tree's package with the ledger of ``rev`` (a module and its writer
    process) in place of the ledger package; the repository's templates beside it."""
    tree = root / "process-tree"
    skip = shutil.ignore_patterns("__pycache__")
    shutil.copytree(REPO / "mailer", tree / "mailer", ignore=skip)
    shutil.copytree(REPO / "templates", tree / "templates", ignore=skip)
    shutil.rmtree(tree / "mailer" / "ledger")
    # The ledger's two modules, and the status command, which reads new ledger names.
    for name in ("ledger.py", "ledger_writer.py", "cli/status.py"):
        shown = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{rev}:mailer/{name}"],
            check=True,
            capture_output=True,
        )
        (tree / "mailer" / name).write_bytes(shown.stdout)
    # What the CLI asks of the ledger since that revision: a lease (PostgreSQL only) and
    # the URL test; the SQLite path is the same.
    with (tree / "mailer" / "ledger.py").open("a", encoding="utf-8") as module:
        module.write(COMPAT)
    return tree


COMPAT = """

_open_then = Ledger.open.__func__


def _open_now(cls, path, *, lease=None, **options):  # type: ignore[no-untyped-def]
    return _open_then(cls, path, **options)


Ledger.open = classmethod(_open_now)  # type: ignore[method-assign,assignment]


def is_url(path: object) -> bool:
    return False
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rtt", type=float, default=0.0, metavar="MS")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--process-rev", default="ff5300b", metavar="REV")
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
        trees = {"thread": REPO, "process": process_tree(root, args.process_rev)}
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
                env = {**bs.child_env(port, ledger), "PYTHONPATH": str(trees[writer])}
                before = sink.accepted() or 0
                argv = [sys.executable, "-m", "mailer", "digest", *common]
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
            "the process wins" if gain > spread else "no win beyond the noise: keep the thread"
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
