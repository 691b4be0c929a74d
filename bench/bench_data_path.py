"""Body-path benchmark: the fast DATA path against aiosmtplib's public `SMTP.data()`, in one run.

Usage: .venv/bin/python bench/bench_data_path.py [--n 20000] [--rounds 3] [--concurrency 8]
                                                 [--keep DIR] [--aiosmtpd]

Issue 11 keeps `transports/smtp.py:write_body` (aiosmtplib's protocol driven directly, the
body dot-stuffed with one `bytes.replace`) only if it is worth it over the public
`SMTP.data()` (`SMTPConfig.fast_data=False`). This measures both with everything else equal.

It builds bench_send.py's workload (20 synthetic articles, a list of --n subscribers), starts
one Postfix `smtp-sink` on 127.0.0.1 (aiosmtpd in a thread if smtp-sink is absent), and runs
bench_send.py's no-ledger child (the `digest --send` pipeline in process, minus the ledger,
so that the body path is a larger share of the cost) --rounds times in each variant, in
alternation: fast, public, fast, public, ... Each child's wall time, CPU (user + sys) and peak
RSS come from os.wait4; msg/s is N over the child's whole wall time, and "loop" is the
engine's own time from the CLI's summary line. Each child must exit 0, report N sent, and the
sink must count N messages from it. The ratios public/fast are per round, then the median.
As in bench_compare.py, each child waits for a quiet machine (--quiet, --settle), and "others
%" is the CPU other processes used while it ran, in % of one core.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench_compare import Others, busy_seconds, wait_quiet
from bench_send import (
    ISSUE_DATE,
    SMTP_SINK,
    Run,
    Sink,
    _last_json,
    child_env,
    mb,
    run_child,
    send_loop_seconds,
    write_articles,
    write_list,
)

BENCH_SEND = Path(__file__).resolve().with_name("bench_send.py")
VARIANTS = {"fast": [], "public": ["--plain-data"]}  # the no-ledger child's flags


@dataclass
class Measured:
    variant: str
    round_: int
    run: Run
    seen: int
    loop: float | None
    others: Others


def bench(args: argparse.Namespace) -> int:
    python = sys.executable
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-data-"))
    root.mkdir(parents=True, exist_ok=True)
    kind = "smtp-sink" if SMTP_SINK and not args.aiosmtpd else "aiosmtpd"
    sink: Sink | None = None
    failures: list[str] = []
    try:
        rng = random.Random(20261127)
        articles, list_path = root / "articles", root / "subscribers.csv"
        write_articles(articles, rng)
        write_list(list_path, args.n, rng)
        sink = Sink(kind, root)
        env = child_env(sink.port, root / "ledger-unused.sqlite3")
        env["MAILER_TIMEZONE"] = "UTC"
        argv = [python, str(BENCH_SEND), "--no-ledger-child"]
        argv += ["--date", ISSUE_DATE.isoformat(), "--articles", str(articles)]
        argv += ["--list", str(list_path), "--concurrency", str(args.concurrency)]
        print(f"python:    {sys.version.split()[0]} on {os.cpu_count()} CPUs")
        print(f"sink:      {sink.command}")
        print(f"workdir:   {root}")
        print(f"list:      {args.n} subscribers, {list_path.stat().st_size / 1e6:.1f} MB")
        print(f"command:   {' '.join(argv)} [--plain-data]")
        print(flush=True)

        results: list[Measured] = []
        for round_ in range(1, args.rounds + 1):
            for variant, flags in VARIANTS.items():
                label = f"{variant}{round_}"
                quiet = wait_quiet(args.quiet, args.settle)
                before, sink_cpu, busy = sink.accepted() or 0, sink.cpu_seconds(), busy_seconds()
                run = run_child(label, argv + flags, env=env, cwd=root, timeout=args.timeout)
                busy = busy_seconds() - busy
                seen = (sink.wait_settled(before + args.n) or 0) - before
                after_cpu = sink.cpu_seconds()
                used = None if sink_cpu is None or after_cpu is None else after_cpu - sink_cpu
                others = Others.measure(run, busy, used, quiet)
                inner = _last_json(run.stdout)
                loop = send_loop_seconds(run.stdout)
                measured = Measured(variant, round_, run, seen, loop, others)
                results.append(measured)
                if run.returncode != 0:
                    failures.append(f"{label} exited {run.returncode}")
                    for line in (run.stdout + run.stderr).strip().splitlines()[-8:]:
                        print(f"  | {line}")
                if seen != args.n:
                    failures.append(f"the sink counted {seen} messages from {label}, not {args.n}")
                if inner is None or inner.get("sent") != args.n:
                    failures.append(f"{label} reported {inner}, not {args.n} sent")
                print(
                    f"{variant} round {round_}: exit {run.returncode}, {args.n / run.wall:.0f} "
                    f"msg/s, CPU {run.cpu * 1000 / args.n:.3f} ms/msg, sink {seen}; other "
                    f"processes {100 * others.during:.0f} % of a core",
                    flush=True,
                )
        report(args, results)
        for failure in failures:
            print(f"PROBLEM: {failure}")
        return 1 if failures else 0
    finally:
        if sink is not None:
            sink.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def report(args: argparse.Namespace, results: list[Measured]) -> None:
    n = args.n
    print()
    header = (
        f"{'N = ' + str(n) + ', ' + str(args.concurrency) + ' connections':<26}"
        f"{'exit':>5}{'sink got':>9}{'wall s':>8}{'msg/s':>8}{'loop s':>8}{'loop msg/s':>11}"
        f"{'CPU s':>8}{'CPU ms/msg':>11}{'peak RSS MB':>12}{'others %':>9}"
    )
    print(header)
    print("-" * len(header))
    for m in results:
        loop = "n/a" if m.loop is None else f"{m.loop:.2f}"
        loop_rate = "n/a" if not m.loop else f"{n / m.loop:.0f}"
        print(
            f"{f'round {m.round_}: {m.variant}':<26}{m.run.returncode:>5}{m.seen:>9}"
            f"{m.run.wall:>8.2f}{n / m.run.wall:>8.0f}{loop:>8}{loop_rate:>11}"
            f"{m.run.cpu:>8.2f}{m.run.cpu * 1000 / n:>11.3f}{mb(m.run.maxrss_kb):>12.1f}"
            f"{100 * m.others.during:>9.0f}"
        )
    print("-" * len(header))
    print("others %: CPU of other processes while the child ran, in % of one core")
    pairs: dict[int, dict[str, Measured]] = {}
    for m in results:
        pairs.setdefault(m.round_, {})[m.variant] = m
    both = [(p["fast"], p["public"]) for p in pairs.values() if len(p) == 2]
    if not both:
        return
    rate = [fast.run.wall / public.run.wall for fast, public in both]
    cpu = [public.run.cpu / fast.run.cpu for fast, public in both]
    loops = [f.loop / p.loop for f, p in both if f.loop and p.loop]

    def line(name: str, values: list[float]) -> str:
        each = ", ".join(f"{v:.3f}" for v in values)
        return f"{name:<40}median {statistics.median(values):.3f}  (rounds: {each})"

    print("public SMTP.data() / fast path, per round and median:")
    print(line("  msg/s (whole child)", rate))
    if loops:
        print(line("  msg/s (send loop alone)", loops))
    print(line("  CPU per message", cpu))
    quiet = [
        f.run.wall / p.run.wall for f, p in both if max(f.others.during, p.others.during) < 0.25
    ]
    if quiet and len(quiet) < len(both):
        print(line("  msg/s, quiet rounds (others < 25 %)", quiet))
    for variant in VARIANTS:
        mine = [m for m in results if m.variant == variant]
        cpu_ms = statistics.median(m.run.cpu * 1000 / n for m in mine)
        print(
            f"{variant:<7} median {statistics.median(n / m.run.wall for m in mine):.0f} msg/s, "
            f"{cpu_ms:.3f} CPU ms/msg"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="subscribers (default 20000)")
    parser.add_argument("--rounds", type=int, default=3, help="fast/public pairs (default 3)")
    parser.add_argument("--concurrency", type=int, default=8, help="connections (default 8)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per child")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    parser.add_argument("--aiosmtpd", action="store_true", help="use aiosmtpd, not smtp-sink")
    parser.add_argument(
        "--quiet",
        type=float,
        default=0.15,
        metavar="CORES",
        help="before each child, wait for a second in which the machine uses under CORES of "
        "one core (default 0.15) ...",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=120,
        metavar="S",
        help="... for at most S seconds (default 120; 0: sample one second, wait no longer)",
    )
    args = parser.parse_args()
    if args.n < 1 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--n, --concurrency and --rounds must be at least 1")
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
