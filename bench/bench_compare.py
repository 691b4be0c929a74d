"""Before/after benchmark: `mailer digest --send` from two source trees, in one run.

Usage: .venv/bin/python bench/bench_compare.py --before DIR [--after DIR] [--n 20000]
                                               [--rounds 3] [--concurrency 8] [--keep DIR]
                                               [--rtt MS]

  git worktree add /tmp/before ca433fc        # the tree before the change
  .venv/bin/python bench/bench_compare.py --before /tmp/before --n 20000 --rounds 3
  git worktree remove /tmp/before

It builds one workload with bench_send.py's functions (20 synthetic articles and a list of
--n synthetic subscribers in a temporary folder), starts one Postfix `smtp-sink` on
127.0.0.1 (aiosmtpd in a thread if smtp-sink is absent; with --rtt MS, behind
bench_send.py's proxy that delays each of its replies MS, like a relay farther off), and then
runs

    python -m mailer digest --send --date D --articles A --list L --concurrency C

from each tree in turn, before, after, before, after, ... for --rounds rounds. Each tree's
mailer/ and templates/ are copied into the work folder first (unless --in-place), so that an
edit to a working tree during the run cannot reach a child. Each child imports its own
tree's `mailer` (PYTHONPATH=<copy>, checked before the runs), gets a fresh MAILER_LEDGER,
and the same environment otherwise: one MAILER_SECRET_KEY of 43 characters,
MAILER_SMTP_SECURITY=none, MAILER_SMTP_HOST=127.0.0.1, MAILER_SMTP_PORT, MAILER_TIMEZONE=UTC.

Before the measured runs, one preview (`digest --limit 1 --out ...`) from each tree warms
the page cache and fills a bytecode cache (PYTHONPYCACHEPREFIX, in the work folder) that
both trees then read alike, and reports the size of each tree's message.

Wall time, CPU (user + sys, including the ledger writer the child reaps) and peak RSS come
from os.wait4 on each child. Messages/s is N over the child's whole wall time, start-up
included; "loop" is the engine's own time, from the CLI's summary line. Each child must
exit 0, the sink must count N messages from it, and `mailer status --json` (run from the
same tree on that child's ledger) must show N sent. The verdict is the median over rounds
of the ratio after/before in msg/s (issue 11: no slower, i.e. >= 1.0, or >= 1 - --tolerance,
the run-to-run noise, which the spread of the per-round ratios shows).

The machine may be shared: before each child the script waits (at most --settle seconds) for
a second in which the whole machine uses under --quiet of one core, and it reports, per
child, the CPU that other processes used while it ran ("others %": not the child, the sink,
or this script and its proxy). Rounds in which either
child saw others above --noisy are left out of a second, "quiet rounds" median.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench_send import (
    HOST,
    ISSUE_DATE,
    REPO,
    SMTP_SINK,
    DelayProxy,
    Run,
    Sink,
    child_env,
    fresh_ledger,
    inspect_ledger,
    mb,
    run_child,
    send_loop_seconds,
    write_articles,
    write_list,
)

SIDES = ("before", "after")


# --- how busy the rest of the machine is --------------------------------------------------


def busy_seconds() -> float:
    """CPU seconds all processes have used since boot (every core, idle and iowait excluded)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def digest_help(python: str, env: dict[str, str], root: Path) -> str:
    """`mailer digest --help` of one tree: which flags it takes."""
    done = subprocess.run(
        [python, "-m", "mailer", "digest", "--help"],
        env={**env, "COLUMNS": "200"},
        cwd=root,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.stdout


def own_seconds() -> float:
    """CPU seconds this script has used (its threads: the delaying proxy, an aiosmtpd sink)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def wait_quiet(max_share: float, longest: float) -> float:
    """Wait, up to ``longest`` seconds, for a second in which the machine's CPU use is under
    ``max_share`` of one core; returns the share of the last second sampled."""
    deadline = time.monotonic() + longest
    while True:
        start = busy_seconds()
        time.sleep(1.0)
        share = busy_seconds() - start
        if share < max_share or time.monotonic() >= deadline:
            return share


@dataclass
class Others:
    """CPU the rest of the machine used while one child ran (not the child, the sink, or this
    script, whose delaying proxy is part of the relay)."""

    before: float  # the machine's CPU share (of one core) in the second before the child
    during: float  # others' CPU seconds per wall second while the child ran

    @staticmethod
    def measure(run: Run, busy: float, sink_cpu: float | None, own: float, quiet: float) -> Others:
        others = busy - run.cpu - (sink_cpu or 0.0) - own
        return Others(quiet, max(0.0, others) / run.wall)


@dataclass
class Measured:
    side: str
    round_: int
    run: Run
    seen: int  # messages the sink counted during the run
    sink_cpu: float | None
    loop: float | None  # the engine's seconds, from the CLI's summary line
    ledger_sent: int | None  # `mailer status --json`: counts.sent
    others: Others

    def rate(self, n: int) -> float:
        return n / self.run.wall


def fingerprint(tree: Path) -> str:
    """A digest of the tree's package and templates, to notice an edit during the run."""
    digest = hashlib.sha256()
    for folder in ("mailer", "templates"):
        for path in sorted((tree / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(str(path.relative_to(tree)).encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def snapshot(tree: Path, into: Path) -> str:
    """Copy the tree's mailer/ and templates/ into ``into``; returns their fingerprint.

    The children then run from the copy, so an edit to the tree during the run (the after
    tree is usually a working tree) cannot give rounds different code, or a half-saved file.
    """
    for _ in range(5):
        shutil.rmtree(into, ignore_errors=True)
        for folder in ("mailer", "templates"):
            ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
            shutil.copytree(tree / folder, into / folder, ignore=ignore)
        copied = fingerprint(into)
        if copied == fingerprint(tree):  # no edit landed while copying
            return copied
        time.sleep(2)
    raise SystemExit(f"{tree} kept changing while it was copied")


def describe_tree(tree: Path) -> str:
    """`<commit> (+ N changed files under mailer/)`, or just the path outside git."""
    try:
        head = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(tree), "status", "--porcelain", "--", "mailer", "templates"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return str(tree)
    extra = f" + {len(dirty)} uncommitted change(s) in mailer/ or templates/" if dirty else ""
    return f"{tree} at {head}{extra}"


def ledger_sent(python: str, env: dict[str, str], root: Path, ledger: Path) -> int | None:
    """counts.sent of the ledger's latest campaign, by `mailer status --json` of that tree."""
    try:
        done = subprocess.run(
            [python, "-m", "mailer", "status", "--json", "--ledger", str(ledger)],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=120,
        )
        document = json.loads(done.stdout)
        return int(document["counts"]["sent"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return None


def compare(args: argparse.Namespace) -> int:
    python = args.python
    trees = {"before": Path(args.before).resolve(), "after": Path(args.after).resolve()}
    for side, tree in trees.items():
        if not (tree / "mailer" / "__main__.py").is_file():
            raise SystemExit(f"--{side} {tree}: no mailer/__main__.py there")
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-compare-"))
    root.mkdir(parents=True, exist_ok=True)
    sources = dict(trees)
    if args.in_place:
        prints = {side: fingerprint(tree) for side, tree in trees.items()}
    else:
        prints = {side: snapshot(tree, root / f"tree-{side}") for side, tree in trees.items()}
        trees = {side: root / f"tree-{side}" for side in trees}
    kind = "smtp-sink" if SMTP_SINK and not args.aiosmtpd else "aiosmtpd"
    sink: Sink | None = None
    proxy: DelayProxy | None = None
    failures: list[str] = []
    try:
        rng = random.Random(20261127)
        articles, list_path = root / "articles", root / "subscribers.csv"
        write_articles(articles, rng)
        write_list(list_path, args.n, rng)
        sink = Sink(kind, root)
        proxy = DelayProxy(sink.port, args.rtt / 1000) if args.rtt else None
        port = proxy.port if proxy is not None else sink.port
        base = child_env(port, root / "ledger-unused.sqlite3")
        base.pop("PYTHONDONTWRITEBYTECODE", None)  # the warm-up fills the cache below
        base.update(MAILER_TIMEZONE="UTC", PYTHONPYCACHEPREFIX=str(root / "pycache"))
        if args.sender:
            base["MAILER_FROM"] = args.sender
        envs = {side: {**base, "PYTHONPATH": str(tree)} for side, tree in trees.items()}
        common = ["--date", ISSUE_DATE.isoformat(), "--articles", str(articles)]
        common += ["--list", str(list_path)]

        print(f"python:    {sys.version.split()[0]} ({python}) on {os.cpu_count()} CPUs")
        print(f"sink:      {sink.command}")
        if proxy is not None:
            print(f"relay:     a proxy on port {port} delays each of its replies {args.rtt:g} ms")
        print(f"workdir:   {root}")
        print(f"list:      {args.n} subscribers, {list_path.stat().st_size / 1e6:.1f} MB")
        commands: dict[str, list[str]] = {}
        for side, tree in trees.items():
            copy = "" if args.in_place else f", run from a copy in {tree}"
            print(f"{side + ':':<10} {describe_tree(sources[side])} [content {prints[side]}{copy}]")
            found = subprocess.run(
                [python, "-c", "import mailer; print(mailer.__file__)"],
                env=envs[side],
                cwd=root,
                capture_output=True,
                text=True,
                timeout=60,
            ).stdout.strip()
            if Path(found).resolve() != (tree / "mailer" / "__init__.py").resolve():
                raise SystemExit(f"the {side} child imports mailer from {found!r}, not {tree}")
            # the warm-up: one preview, which also gives the message's size
            out = root / f"previews-{side}"
            preview = run_child(
                f"preview-{side}",
                [python, "-m", "mailer", "digest", *common, "--limit", "1", "--out", str(out)],
                env=envs[side],
                cwd=root,
                timeout=120,
            )
            emls = sorted(out.glob("**/*.eml"))
            if preview.returncode != 0 or not emls:
                print(preview.stdout + preview.stderr, file=sys.stderr)
                raise SystemExit(f"the {side} preview failed (exit {preview.returncode})")
            size = emls[0].stat().st_size
            print(f"{'':<10} message {size} bytes ({size / 1024:.1f} KiB), {emls[0].name}")
            command = [python, "-m", "mailer", "digest", "--send", *common]
            command += ["--concurrency", str(args.concurrency)]
            # A send without a terminal needs --yes since mailer asks first; older trees
            # have no such flag (and never ask).
            if "--yes" in digest_help(python, envs[side], root):
                command.append("--yes")
            commands[side] = command
            print(f"{'':<10} PYTHONPATH=<tree> MAILER_LEDGER=<fresh> {' '.join(command)}")
        print(flush=True)

        results: list[Measured] = []
        for round_ in range(1, args.rounds + 1):
            for side in SIDES:
                ledger = fresh_ledger(root, f"{side}{round_}")
                env = {**envs[side], "MAILER_LEDGER": str(ledger)}
                quiet = wait_quiet(args.quiet, args.settle)
                before, sink_cpu, busy = sink.accepted() or 0, sink.cpu_seconds(), busy_seconds()
                own = own_seconds()
                run = run_child(
                    f"{side}{round_}", commands[side], env=env, cwd=root, timeout=args.timeout
                )
                busy, own = busy_seconds() - busy, own_seconds() - own
                seen = (sink.wait_settled(before + args.n) or 0) - before
                after_cpu = sink.cpu_seconds()
                used = None if sink_cpu is None or after_cpu is None else after_cpu - sink_cpu
                sent = ledger_sent(python, env, root, ledger)
                others = Others.measure(run, busy, used, own, quiet)
                measured = Measured(
                    side, round_, run, seen, used, send_loop_seconds(run.stdout), sent, others
                )
                results.append(measured)
                label = f"{side} round {round_}"
                if run.returncode != 0:
                    failures.append(f"{label} exited {run.returncode}")
                    for line in (run.stdout + run.stderr).strip().splitlines()[-8:]:
                        print(f"  | {line}")
                if seen != args.n:
                    failures.append(f"the sink counted {seen} messages from {label}, not {args.n}")
                if sent != args.n:
                    state = inspect_ledger(ledger)
                    rows = state.states if state is not None else "no ledger"
                    failures.append(f"{label}: status says {sent} sent, not {args.n} ({rows})")
                print(
                    f"{label}: exit {run.returncode}, {measured.rate(args.n):.0f} msg/s, "
                    f"{run.wall:.2f} s wall, CPU {run.cpu:.2f} s, peak RSS "
                    f"{mb(run.maxrss_kb):.1f} MB, sink {seen}, ledger sent {sent}; other "
                    f"processes {100 * others.during:.0f} % of a core",
                    flush=True,
                )

        for side, tree in trees.items():
            if fingerprint(tree) != prints[side]:
                failures.append(f"the {side} tree ({tree}) changed during the run")
            elif fingerprint(sources[side]) != prints[side]:
                print(f"note: {sources[side]} changed during the run; its copy did not")
        report(args, results)
        for failure in failures:
            print(f"PROBLEM: {failure}")
        return 1 if failures else 0
    finally:
        if proxy is not None:
            proxy.stop()
        if sink is not None:
            sink.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


def report(args: argparse.Namespace, results: list[Measured]) -> None:
    n = args.n
    print()
    header = (
        f"{'N = ' + str(n) + ', ' + str(args.concurrency) + ' connections':<26}"
        f"{'exit':>5}{'sink got':>9}{'wall s':>8}{'msg/s':>8}{'loop s':>8}{'CPU s':>8}"
        f"{'CPU ms/msg':>11}{'peak RSS MB':>12}{'sink CPU %':>11}{'others %':>9}"
    )
    print(header)
    print("-" * len(header))
    for m in results:
        loop = "n/a" if m.loop is None else f"{m.loop:.2f}"
        share = "n/a" if m.sink_cpu is None else f"{100 * m.sink_cpu / m.run.wall:.0f}"
        print(
            f"{f'round {m.round_}: {m.side}':<26}{m.run.returncode:>5}{m.seen:>9}"
            f"{m.run.wall:>8.2f}{m.rate(n):>8.0f}{loop:>8}{m.run.cpu:>8.2f}"
            f"{m.run.cpu * 1000 / n:>11.3f}{mb(m.run.maxrss_kb):>12.1f}{share:>11}"
            f"{100 * m.others.during:>9.0f}"
        )
    print("-" * len(header))
    print(
        "others %: CPU that processes other than the child, the sink and this script (with its "
        "delaying proxy) used while the child ran, in % of one core; high values mean a noisy run"
    )

    by_round: dict[int, dict[str, Measured]] = {}
    for m in results:
        by_round.setdefault(m.round_, {})[m.side] = m
    pairs = [(r["before"], r["after"]) for r in by_round.values() if len(r) == 2]
    if not pairs:
        return
    rate = [a.rate(n) / b.rate(n) for b, a in pairs]
    cpu = [a.run.cpu / b.run.cpu for b, a in pairs]
    rss = [a.run.maxrss_kb / b.run.maxrss_kb for b, a in pairs]
    loops = [b.loop / a.loop for b, a in pairs if a.loop and b.loop]

    def line(name: str, values: list[float]) -> str:
        each = ", ".join(f"{v:.3f}" for v in values)
        return f"{name:<34}median {statistics.median(values):.3f}  (rounds: {each})"

    print("after / before, per round and median:")
    print(line("  msg/s (whole child)", rate))
    if loops:
        print(line("  msg/s (send loop alone)", loops))
    print(line("  CPU s per run", cpu))
    print(line("  peak RSS", rss))
    for side in SIDES:
        mine = [m for m in results if m.side == side]
        print(
            f"{side:<7} median {statistics.median(m.rate(n) for m in mine):.0f} msg/s, "
            f"{statistics.median(m.run.cpu * 1000 / n for m in mine):.3f} CPU ms/msg, "
            f"peak RSS {statistics.median(mb(m.run.maxrss_kb) for m in mine):.1f} MB"
        )
    quiet = [
        a.rate(n) / b.rate(n)
        for b, a in pairs
        if max(a.others.during, b.others.during) < args.noisy
    ]
    if quiet and len(quiet) < len(pairs):
        print(line(f"  msg/s, quiet rounds (others < {100 * args.noisy:.0f} %)", quiet))
    elif not quiet:
        print(f"  (no round was quiet: others >= {100 * args.noisy:.0f} % of a core in each)")
    median, spread = statistics.median(rate), max(rate) - min(rate)
    if median >= 1.0:
        verdict = "no slower than before"
    elif median >= 1.0 - args.tolerance:
        verdict = f"no slower than before within the tolerance of {100 * args.tolerance:.0f} %"
    else:
        verdict = f"SLOWER than before, by more than the tolerance of {100 * args.tolerance:.0f} %"
    print(f"verdict: after is {verdict}: median ratio {median:.3f} (per-round spread {spread:.3f})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, metavar="DIR", help="the older source tree")
    parser.add_argument(
        "--after", default=str(REPO), metavar="DIR", help=f"the newer tree (default {REPO})"
    )
    parser.add_argument("--n", type=int, default=20000, help="subscribers (default 20000)")
    parser.add_argument("--rounds", type=int, default=3, help="before/after pairs (default 3)")
    parser.add_argument("--concurrency", type=int, default=8, help="connections (default 8)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per child")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    parser.add_argument("--aiosmtpd", action="store_true", help="use aiosmtpd, not smtp-sink")
    parser.add_argument(
        "--from",
        dest="sender",
        metavar="ADDRESS",
        help="MAILER_FROM for both trees (default bench_send.py's, with a display name, which "
        "trees before 276db02 refuse: give them a bare address)",
    )
    parser.add_argument(
        "--rtt",
        type=float,
        default=0.0,
        metavar="MS",
        help="delay each reply of the sink MS, like a relay farther off (default 0: none)",
    )
    parser.add_argument("--python", default=sys.executable, help="interpreter for the children")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.03,
        help="a median ratio down to 1 - this still counts as no slower (default 0.03: the "
        "spread of the ratios between rounds on a quiet 2-core machine)",
    )
    parser.add_argument(
        "--noisy",
        type=float,
        default=0.25,
        metavar="CORES",
        help="a round is noisy when others used CORES of one core or more during a child "
        "(default 0.25)",
    )
    parser.add_argument(
        "--in-place",
        action="store_true",
        help="run each tree where it is (default: from a copy of its mailer/ and templates/ "
        "taken at the start, so that edits during the run do not reach the children)",
    )
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
    if args.rtt < 0:
        parser.error("--rtt must not be negative")
    assert HOST == "127.0.0.1"  # loopback only
    return compare(args)


if __name__ == "__main__":
    sys.exit(main())
