"""Sending benchmark: `mailer digest --send` against plain aiosmtplib, into a local SMTP sink.

Usage: .venv/bin/python bench/bench_send.py [--n 20000] [--concurrency 8] [--keep DIR]
       .venv/bin/python bench/bench_send.py --n 3000 --profile   (cProfile both children)

It starts Postfix's `smtp-sink` on 127.0.0.1 (an in-process aiosmtpd server if smtp-sink is
absent), writes 20 synthetic articles and a list of --n synthetic subscribers into a
temporary folder, and then runs, each as its own child process:

1. `mailer digest --limit 1` (a dry run) to get one real message: its size is reported, and
   its bytes are what the reference sends;
2. `mailer digest --send --concurrency C`: the real end-to-end path (articles, render,
   inlining, personalisation, SMTP), with the sink as the relay;
3. the reference: plain aiosmtplib, C asyncio tasks each with one connection reused for
   every message, `SMTP.sendmail()` of the one pre-built message to each address of the list.

Wall time, CPU (user + sys) and peak RSS of each child come from os.wait4 on that child, so
each figure belongs to that process alone. Messages/s is N over the child's whole wall time,
start-up included. Targets, from issue 3: mailer ≥ 1.0× the reference in msg/s (stretch
1.5×), peak RSS ≤ 150 MB at 100,000 subscribers (`--n 100000`).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
ISSUE_DATE = dt.date(2026, 11, 27)
ARTICLES = 20
SENDER = "newsletter@example.com"  # mailer's default MAILER_FROM
RSS_TARGET_MB = 150.0

TITLES = [
    "The river path reopens after two years of flood repairs",
    "Council budget passes 7-4, with libraries spared",
    "Old bakery trains a new generation of bakers",
    "School robotics team heads to the national final",
    "Market hall traders vote to open on Sundays",
    "Winter night shelter needs forty more volunteers",
    "Bus route 12 returns to the hospital loop in January",
    "New cycle lanes on Station Road split opinion",
    "Allotment waiting list falls for the first time in a decade",
    "Town football club unveils plans for a community stadium",
    "Library launches repair café for broken toasters and bikes",
    "Planning inspector approves 240 homes on the old dairy site",
    "Volunteers plant 3,000 trees along the ring road",
    "Swimming pool closes for six weeks for roof repairs",
    "Local choir wins regional competition on its first attempt",
    "Night-time economy review calls for later buses",
    "Primary school heating fails again as cold snap arrives",
    "Historic mill gets lottery grant for new visitor centre",
    "Food bank reports record demand ahead of Christmas",
    "Mill Bridge traffic lights to be replaced by a roundabout",
]
AUTHORS = [
    "Maya Okafor",
    "Daniel Brooks",
    "Priya Nair",
    "Leo Fischer",
    "Ana Lima",
    "Tomás Reyes",
    "Kim Ames",
    "Jo Bell",
]
TAGS = ["transport", "council", "schools", "environment", "business", "sport", "culture", "health"]
SUBJECTS = [
    "The council",
    "Residents",
    "Traders on the high street",
    "The project team",
    "Local campaigners",
    "Parents at the school gates",
    "The county's transport committee",
    "Volunteers",
    "Engineers",
    "Shop owners near the station",
]
VERBS = [
    "said on Tuesday that",
    "argued at a packed public meeting that",
    "told the Weekly that",
    "have long complained that",
    "confirmed in a written statement that",
    "warned last month that",
]
CLAUSES = [
    "the work would be finished before the spring half-term",
    "the budget had been stretched by rising energy and materials costs",
    "nobody had asked the people who actually use the service every day",
    "the consultation had drawn more than 1,400 responses, a record for the town",
    "the old arrangement had been patched up for far too long",
    "the decision would be reviewed after a twelve-month trial",
    "a second phase depended on money that has not yet been promised",
    "the figures showed a steady rise since the pandemic",
    "the plans had changed twice since they were first published in the summer",
    "the grant covered about two-thirds of the cost, with the rest raised locally",
    "the site had been empty for almost eleven years",
    "the queue at peak times now stretches around the corner",
]
EXTRAS = [
    "A full report goes to the cabinet meeting on December 9th.",
    "Opening hours will stay the same over the holidays.",
    "The drop-in sessions at the town hall run from 4pm to 7pm.",
    "Details are on the council's website, and paper copies are in every library.",
    "The last word, as ever, rests with the planning committee.",
    'One resident put it simply: "We just want it to work."',
    "Nobody expects the argument to end there.",
    "The first results should be known by Easter.",
]
FIRST = ["anna", "ben", "chloe", "dmitri", "emma", "farid", "grace", "hugo", "ines", "jonas"]
FIRST += ["kira", "liam", "mona", "noah", "olga", "pavel", "quinn", "rosa", "sami", "tara"]
LAST = ["martin", "chen", "durand", "ivanov", "garcia", "okafor", "nair", "fischer", "lima"]
LAST += ["brooks", "reyes", "ames", "bell", "smith", "jones", "novak", "kowalski", "rossi"]
DISPLAY = {"emma": "Emma", "ines": "Inès", "chloe": "Chloé", "dmitri": "Dmitri", "noah": "Noah"}
DOMAINS = [f"mail{i}.example.{tld}" for i in range(300) for tld in ("org", "net", "com")]
CITIES = ["Northfield", "Riverside", "Hartley", "Mill Bridge", "Station Road", "Old Town"]


# --- synthetic input --------------------------------------------------------------------


def _sentence(rng: random.Random) -> str:
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(CLAUSES)}."


def _paragraph(rng: random.Random, sentences: int) -> str:
    parts = [_sentence(rng) for _ in range(sentences)]
    if rng.random() < 0.5:
        parts.append(rng.choice(EXTRAS))
    return " ".join(parts)


def write_articles(folder: Path, rng: random.Random) -> None:
    """20 Markdown articles dated in the 7 days up to ISSUE_DATE, each with an editor's blurb."""
    folder.mkdir(parents=True)
    for i, title in enumerate(TITLES[:ARTICLES]):
        day = ISSUE_DATE - dt.timedelta(days=i % 7)
        slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60]
        # an editor's blurb of about 600-700 characters: the message comes to about 60 KiB
        summary = " ".join(_sentence(rng) for _ in range(6 + i % 2))
        body = "\n\n".join(_paragraph(rng, rng.randint(3, 6)) for _ in range(rng.randint(5, 9)))
        lines = [
            "---",
            f"title: {json.dumps(title, ensure_ascii=False)}",
            f"date: {day.isoformat()}",
            f"url: https://example.com/news/{slug}",
            f"author: {AUTHORS[i % len(AUTHORS)]}",
            f"tags: [{TAGS[i % len(TAGS)]}, {TAGS[(i + 3) % len(TAGS)]}]",
            f"summary: {json.dumps(summary)}",
        ]
        if i % 3 != 2:
            lines.append(f"image: https://cdn.example.com/images/2026/11/{slug}-1200x675.jpg")
        lines += ["---", "", body, "", "## What happens next", "", _paragraph(rng, 3), ""]
        (folder / f"{day.isoformat()}-{slug}.md").write_text("\n".join(lines), encoding="utf-8")


def write_list(path: Path, n: int, rng: random.Random) -> None:
    """n unique ASCII addresses over 900 domains; names, some accented, some missing."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["email", "name", "city"])
        for i in range(n):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            email = f"{first}.{last}{i}@{rng.choice(DOMAINS)}"
            name = "" if i % 10 == 9 else f"{DISPLAY.get(first, first.title())} {last.title()}"
            writer.writerow([email, name, rng.choice(CITIES)])


# --- the sink ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_for_banner(port: int, deadline: float) -> None:
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=2) as sock:
                if sock.recv(64).startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"the SMTP sink on {HOST}:{port} did not answer")
        time.sleep(0.05)


class Sink:
    """smtp-sink as a child process, or aiosmtpd in a thread of this process."""

    def __init__(self, kind: str, workdir: Path) -> None:
        self.port = free_port()
        self.kind = kind
        self._proc: subprocess.Popen[bytes] | None = None
        self._controller: object | None = None
        self._counter_file = workdir / "smtp-sink.out"
        self._accepted = 0
        if kind == "smtp-sink":
            command = [SMTP_SINK, "-c", "-4", "-m", "512", f"{HOST}:{self.port}", "1024"]
            if os.geteuid() == 0:
                command[1:1] = ["-u", "nobody"]
            self._out = self._counter_file.open("wb")
            self._proc = subprocess.Popen(command, stdout=self._out, stderr=subprocess.STDOUT)
            self.command = " ".join(command)
        else:
            self._start_aiosmtpd()
            self.command = f"aiosmtpd Controller (thread) on {HOST}:{self.port}"
        wait_for_banner(self.port, time.monotonic() + 10)

    def _start_aiosmtpd(self) -> None:
        from aiosmtpd.controller import Controller

        sink = self

        class Accept:
            async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
                sink._accepted += 1
                return "250 OK"

        controller = Controller(Accept(), hostname=HOST, port=self.port, data_size_limit=0)
        controller.start()
        self._controller = controller

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the smtp-sink process so far (None for the aiosmtpd thread)."""
        if self._proc is None:
            return None
        try:
            fields = Path(f"/proc/{self._proc.pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def accepted(self) -> int | None:
        """Messages the sink has accepted so far (smtp-sink's -c counter, or our handler)."""
        if self.kind != "smtp-sink":
            return self._accepted
        self._out.flush()
        found = re.findall(rb"mesg=(\d+)", self._counter_file.read_bytes())
        return int(found[-1]) if found else 0

    def wait_settled(self, expected: int, timeout: float = 5.0) -> int | None:
        deadline = time.monotonic() + timeout
        while True:
            seen = self.accepted()
            if seen is None or seen >= expected or time.monotonic() > deadline:
                return seen
            time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc is not None:
            self._out.close()
        if self._controller is not None:
            self._controller.stop()  # type: ignore[attr-defined]


SMTP_SINK = shutil.which("smtp-sink") or (
    "/usr/sbin/smtp-sink" if os.access("/usr/sbin/smtp-sink", os.X_OK) else None
)


# --- measured children ------------------------------------------------------------------


@dataclass
class Run:
    label: str
    returncode: int
    wall: float
    cpu: float
    maxrss_kb: int
    stdout: str
    stderr: str


def run_child(
    label: str, argv: list[str], *, env: dict[str, str], cwd: Path, timeout: float
) -> Run:
    """Run one child; wall time from fork to reap, CPU and peak RSS from its own rusage."""
    out_path, err_path = cwd / f"{label}.stdout", cwd / f"{label}.stderr"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=err)
        watchdog = threading.Timer(timeout, os.kill, (proc.pid, signal.SIGKILL))
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            watchdog.cancel()
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # already reaped by wait4
    return Run(
        label=label,
        returncode=proc.returncode,
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        maxrss_kb=usage.ru_maxrss,
        stdout=out_path.read_text("utf-8", "replace"),
        stderr=err_path.read_text("utf-8", "replace"),
    )


def child_env(port: int, ledger: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MAILER_") and key not in ("PYTHONPATH", "PYTHONSTARTUP")
    }
    env.update(
        MAILER_SMTP_HOST=HOST,
        MAILER_SMTP_PORT=str(port),
        MAILER_SMTP_SECURITY="none",
        MAILER_SECRET_KEY=secrets.token_urlsafe(32),
        MAILER_LEDGER=str(ledger),
        PYTHONHASHSEED="0",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


# --- the reference (runs in its own child: --reference) ---------------------------------


def reference_main(args: argparse.Namespace) -> int:
    import aiosmtplib

    data = Path(args.eml).read_bytes()

    def addresses() -> object:
        with open(args.list, encoding="utf-8", newline="") as handle:
            reader = csv.reader(handle)
            next(reader)
            for row in reader:
                yield row[0]

    async def main() -> tuple[int, float]:
        queue = iter(addresses())  # type: ignore[call-overload]
        sent = 0

        async def worker() -> None:
            nonlocal sent
            smtp = aiosmtplib.SMTP(hostname=HOST, port=args.port, start_tls=False, timeout=30)
            await smtp.connect()
            try:
                for rcpt in queue:
                    errors, _ = await smtp.sendmail(SENDER, [rcpt], data)
                    if not errors:
                        sent += 1
            finally:
                await smtp.quit()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        return sent, time.perf_counter() - start

    sent, seconds = asyncio.run(main())
    print(json.dumps({"sent": sent, "send_seconds": seconds}))
    return 0


# --- the benchmark ----------------------------------------------------------------------


def profile_argv(profile: Path | None) -> list[str]:
    return ["-m", "cProfile", "-o", str(profile)] if profile else []


def summarise_profile(path: Path, limit: int = 25) -> str:
    import io
    import pstats

    buffer = io.StringIO()
    stats = pstats.Stats(str(path), stream=buffer)
    stats.strip_dirs()
    for key in ("tottime", "cumulative"):
        stats.sort_stats(key).print_stats(limit)
    return buffer.getvalue()


def mb(kb: int) -> float:
    return kb / 1024


def bench(args: argparse.Namespace) -> int:
    python = sys.executable
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-send-"))
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
        env = child_env(sink.port, root / "ledger.sqlite3")
        common = ["--date", ISSUE_DATE.isoformat(), "--articles", str(articles)]
        common += ["--list", str(list_path)]
        print(f"python:    {sys.version.split()[0]} on {os.cpu_count()} CPUs")
        print(f"sink:      {sink.command}")
        print(f"workdir:   {root}")
        print(f"list:      {args.n} subscribers, {list_path.stat().st_size / 1e6:.1f} MB")

        # 1. one preview: the message size, and the bytes the reference sends
        preview = run_child(
            "preview",
            [python, "-m", "mailer", "digest", *common, "--limit", "1", "--out", "previews"],
            env=env,
            cwd=root,
            timeout=120,
        )
        emls = sorted((root / "previews").glob("*/*.eml"))
        if preview.returncode != 0 or not emls:
            print(preview.stdout + preview.stderr, file=sys.stderr)
            raise SystemExit(f"the preview run failed (exit {preview.returncode})")
        eml = emls[0]
        size = eml.stat().st_size
        print(f"message:   {size} bytes ({size / 1024:.1f} KiB), {eml.name}")
        print(f"           {preview.stdout.strip().splitlines()[0]}")

        def measure(label: str, argv: list[str]) -> tuple[Run, int, float | None]:
            """One measured child, with the sink's message count and CPU over that run."""
            assert sink is not None
            before, sink_cpu = sink.accepted() or 0, sink.cpu_seconds()
            run = run_child(label, argv, env=env, cwd=root, timeout=args.timeout)
            seen = (sink.wait_settled(before + args.n) or 0) - before
            after_cpu = sink.cpu_seconds()
            used = None if sink_cpu is None or after_cpu is None else after_cpu - sink_cpu
            if run.returncode != 0:
                failures.append(f"{label} exited {run.returncode}")
            if seen != args.n:
                failures.append(f"the sink counted {seen} messages from {label}, not {args.n}")
            return run, seen, used

        print(f"load avg:  {_loadavg()} (before the measured runs)")

        # 2. mailer digest --send, end to end
        mailer_prof = root / "mailer.prof" if args.profile else None
        mailer, mailer_seen, mailer_sink_cpu = measure(
            "mailer",
            [
                python,
                *profile_argv(mailer_prof),
                *("-m", "mailer", "digest", *common, "--send"),
                *("--concurrency", str(args.concurrency)),
            ],
        )

        # 3. the reference: plain aiosmtplib, C reused connections, one pre-built message
        ref_prof = root / "reference.prof" if args.profile else None
        reference, ref_seen, ref_sink_cpu = measure(
            "reference",
            [
                python,
                *profile_argv(ref_prof),
                *(str(Path(__file__).resolve()), "--reference", "--eml", str(eml)),
                *("--list", str(list_path), "--port", str(sink.port)),
                *("--concurrency", str(args.concurrency)),
            ],
        )
        ref_inner = _last_json(reference.stdout)
        print(f"load avg:  {_loadavg()} (after)")

        # report
        print()
        print("mailer output (tail):")
        for line in _tail(mailer.stdout + mailer.stderr, 12):
            print(f"  | {line}")
        if reference.stderr.strip():
            print("reference stderr (tail):")
            for line in _tail(reference.stderr, 12):
                print(f"  | {line}")
        print()
        rows = [
            ("mailer digest --send", mailer, mailer_seen, mailer_sink_cpu),
            ("plain aiosmtplib (reference)", reference, ref_seen, ref_sink_cpu),
        ]
        header = (
            f"{'N = ' + str(args.n) + ', ' + str(args.concurrency) + ' connections':<30}"
            f"{'exit':>5}{'sink got':>10}{'wall s':>9}{'msg/s':>9}{'CPU s':>8}"
            f"{'CPU ms/msg':>12}{'peak RSS MB':>13}{'sink CPU %':>12}"
        )
        print(header)
        print("-" * len(header))
        for name, run, seen, sink_cpu in rows:
            sink_share = "n/a" if sink_cpu is None else f"{100 * sink_cpu / run.wall:.0f}"
            print(
                f"{name:<30}{run.returncode:>5}{seen:>10}{run.wall:>9.2f}{args.n / run.wall:>9.0f}"
                f"{run.cpu:>8.2f}{run.cpu * 1000 / args.n:>12.3f}{mb(run.maxrss_kb):>13.1f}"
                f"{sink_share:>12}"
            )
        print("-" * len(header))
        ratio = reference.wall / mailer.wall
        print(f"ratio mailer / reference (msg/s): {ratio:.2f}x  (target >= 1.0x, stretch 1.5x)")
        print(
            f"ratio mailer / reference (CPU ms/msg): {mailer.cpu / reference.cpu:.2f}x"
            f"  (preview child: {preview.wall:.2f} s, {mb(preview.maxrss_kb):.1f} MB)"
        )
        if ref_inner:
            inner = ref_inner["send_seconds"]
            print(
                f"reference send loop alone: {inner:.2f} s, {args.n / inner:.0f} msg/s "
                f"(without interpreter start-up and imports)"
            )
        if args.n >= 100_000:
            verdict = "OK" if mb(mailer.maxrss_kb) <= RSS_TARGET_MB else "OVER THE TARGET"
        else:
            verdict = "the target applies at --n 100000"
        print(
            f"mailer peak RSS {mb(mailer.maxrss_kb):.1f} MB at {args.n} subscribers "
            f"(target <= {RSS_TARGET_MB:.0f} MB at 100,000: {verdict})"
        )
        if args.profile:
            print("\n(cProfile was on: the timings above are inflated by the profiler)")
            for name, prof in (("mailer", mailer_prof), ("reference", ref_prof)):
                if prof and prof.exists():
                    print(f"\n===== cProfile: {name} ({prof}) =====")
                    print(summarise_profile(prof, args.profile_lines))
        for failure in failures:
            print(f"PROBLEM: {failure}")
        return 1 if failures else 0
    finally:
        if sink is not None:
            sink.stop()
        if not args.keep and not args.profile:
            shutil.rmtree(root, ignore_errors=True)
        elif args.profile and not args.keep:
            print(f"(kept {root} for the profiles)")


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def _tail(text: str, lines: int) -> list[str]:
    return [line.rstrip() for line in text.replace("\r", "\n").splitlines() if line.strip()][
        -lines:
    ]


def _last_json(text: str) -> dict[str, float] | None:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                value = json.loads(line)
            except ValueError:
                return None
            return value if isinstance(value, dict) else None
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="subscribers (default 20000)")
    parser.add_argument("--concurrency", type=int, default=8, help="connections (default 8)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per child")
    parser.add_argument("--aiosmtpd", action="store_true", help="use aiosmtpd, not smtp-sink")
    parser.add_argument("--profile", action="store_true", help="run both children in cProfile")
    parser.add_argument("--profile-lines", type=int, default=30)
    # internal: the reference child
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--eml", help=argparse.SUPPRESS)
    parser.add_argument("--list", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.n < 1 or args.concurrency < 1:
        parser.error("--n and --concurrency must be at least 1")
    return reference_main(args) if args.reference else bench(args)


if __name__ == "__main__":
    sys.exit(main())
