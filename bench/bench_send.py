"""Sending benchmark: `mailer digest --send` against plain aiosmtplib, into a local SMTP sink.

Usage: .venv/bin/python bench/bench_send.py [--n 20000] [--concurrency 8] [--rounds 1]
                                            [--keep DIR] [--aiosmtpd] [--rtt MS] [--dkim]
       .venv/bin/python bench/bench_send.py --n 3000 --profile   (cProfile every child)

It starts Postfix's `smtp-sink` on 127.0.0.1 (an in-process aiosmtpd server if smtp-sink is
absent; with --rtt MS, behind a proxy that delays each of its replies MS, like a relay
farther off), writes 20 synthetic articles and a list of --n synthetic subscribers into a
temporary folder, and then runs, each as its own child process:

1. `mailer digest --limit 1` (a dry run) to get one real message: its size is reported, and
   its bytes are what the reference sends;
2. `mailer digest --send --concurrency C`: the real end-to-end path (articles, render,
   inlining, personalisation, SMTP), with the sink as the relay;
3. the same pipeline without the ledger (this script's --no-ledger-child mode): in process,
   what `digest --send` does minus the ledger: settings, `prepare_digest`, the suppression
   check, `composer.compose` over `prepared.recipients(strict=False)`, and the same delivery
   engine (`Delivery(...).run()` driven by the CLI's `run_with_progress`), with no
   `before_send` / `after_send`. It imports `mailer.cli` first, so that its interpreter
   start-up and imports are the CLI's;
4. the reference: plain aiosmtplib, C asyncio tasks each with one connection reused for
   every message, `SMTP.sendmail()` of the one pre-built message to each address of the list.

With --dkim, each round also runs `mailer digest --send` with every message signed (a fresh
RSA-2048 key through MAILER_DKIM_SELECTOR and MAILER_DKIM_KEY_FILE, as a user would set
it), right after the unsigned one: the report gives send throughput and CPU per message
with DKIM on against off, in the same run (the median of the rounds' ratios). A signed
preview is verified with dkimpy first, so the signed runs are known to sign.

Every child gets the same environment, working folder, sink and N. Each `digest --send`
child gets a fresh MAILER_LEDGER (a second run of the same campaign would send nothing);
the ledger's size and its row states are reported after the run.

Wall time, CPU (user + sys) and peak RSS of each child come from os.wait4 on that child, so
each figure belongs to that process alone. Messages/s is N over the child's whole wall time,
start-up included. Targets, from issue 3: mailer ≥ 1.0× the reference in msg/s (stretch
1.5×), peak RSS ≤ 150 MB at 100,000 subscribers (`--n 100000`). From issue 4: the ledger
may cost at most 10% of the throughput, i.e. msg/s with the ledger ≥ 0.90× msg/s without.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
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
from typing import Any

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
ISSUE_DATE = dt.date(2026, 11, 27)
ARTICLES = 20
SENDER = "news@bench.example.org"  # MAILER_FROM of every child (not the refused sample)
RSS_TARGET_MB = 150.0
LEDGER_COST_TARGET = 10.0  # percent of the throughput without the ledger (issue 4)

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


class DelayProxy:
    """A relay some way off: a TCP proxy in a thread that hands every chunk the server sends
    to the client ``delay`` seconds late (client to server is not delayed), so that each
    SMTP reply takes one round trip of ``delay``."""

    def __init__(self, target_port: int, delay: float) -> None:
        self.port = free_port()
        self.delay = delay
        self._target = target_port
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="delay-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, HOST, self.port, backlog=1024)
        )
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            self._loop.run_until_complete(server.wait_closed())
            self._loop.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(HOST, self._target)
        except OSError:
            client_w.close()
            return

        async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while chunk := await reader.read(1 << 16):
                writer.write(chunk)
                await writer.drain()
            writer.close()

        async def delayed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

            async def deliver() -> None:
                while True:
                    due, chunk = await queue.get()
                    if not chunk:
                        writer.close()
                        return
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    writer.write(chunk)

            sender = asyncio.ensure_future(deliver())
            while True:
                chunk = await reader.read(1 << 16)
                queue.put_nowait((time.monotonic() + self.delay, chunk))
                if not chunk:
                    break
            await sender

        await asyncio.gather(
            forward(client_r, server_w), delayed(server_r, client_w), return_exceptions=True
        )

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


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
        MAILER_FROM=f"The Bench <{SENDER}>",
        MAILER_PUBLIC_URL="https://bench.example.org",
        PYTHONHASHSEED="0",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


DKIM_SELECTOR = "bench"


def dkim_env(root: Path) -> dict[str, str]:
    """A fresh RSA-2048 key in ``root`` (0600) and the settings that sign with it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = root / "dkim-bench.pem"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return {"MAILER_DKIM_SELECTOR": DKIM_SELECTOR, "MAILER_DKIM_KEY_FILE": str(path)}


def signed_sample(
    root: Path, python: str, common: list[str], env: dict[str, str], signing: dict[str, str]
) -> str:
    """Send one signed message (`digest --send --limit 1`, a throwaway ledger) to an
    aiosmtpd that keeps it (previews are not signed: only what is sent is), and verify it."""
    from aiosmtpd.controller import Controller

    got: list[bytes] = []

    class Keep:
        async def handle_DATA(self, server: object, session: object, envelope: Any) -> str:
            got.append(envelope.original_content)
            return "250 OK"

    port = free_port()
    controller = Controller(Keep(), hostname=HOST, port=port)
    controller.start()
    try:
        child = {
            **env,
            **signing,
            "MAILER_SMTP_PORT": str(port),
            "MAILER_LEDGER": str(fresh_ledger(root, "dkim-sample")),
        }
        argv = [python, "-m", "mailer", "digest", *common, "--send", "--yes", "--limit", "1"]
        run = run_child("dkim-sample", argv, env=child, cwd=root, timeout=120)
    finally:
        controller.stop()
    if run.returncode != 0 or not got:
        print(run.stdout + run.stderr, file=sys.stderr)
        return f"was not sent (exit {run.returncode})"
    sample = root / "dkim-sample.eml"
    sample.write_bytes(got[0])
    return verify_dkim(sample, Path(signing["MAILER_DKIM_KEY_FILE"]))


def verify_dkim(eml: Path, key_file: Path) -> str:
    """dkimpy's verdict on a signed message, against the key's public half."""
    import base64

    import dkim as dkimpy
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    public = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    name = f"{DKIM_SELECTOR}._domainkey.{SENDER.partition('@')[2]}.".encode()
    data = eml.read_bytes()
    if b"DKIM-Signature:" not in data:
        return "not signed"
    ok = dkimpy.verify(data, dnsfunc=lambda asked, timeout=5: record if asked == name else None)
    return "verified by dkimpy" if ok else "FAILED dkimpy's verification"


def fresh_ledger(root: Path, label: str) -> Path:
    """A ledger path no earlier run has used (a re-run of the same campaign sends nothing)."""
    path = root / f"ledger-{label}.sqlite3"
    for suffix in ("", "-wal", "-shm", "-journal", ".lock"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return path


@dataclass
class LedgerFile:
    size: int  # the database file
    wal: int  # what is left in <path>-wal (0 when the last close checkpointed it away)
    states: dict[str, int]


def inspect_ledger(path: Path) -> LedgerFile | None:
    """The ledger's size on disk and its rows per state, read after the child exited."""
    import sqlite3

    if not path.is_file():
        return None
    wal = Path(f"{path}-wal")
    size, wal_size = path.stat().st_size, wal.stat().st_size if wal.exists() else 0
    try:
        conn = sqlite3.connect(path)
        try:
            rows = conn.execute("SELECT state, count(*) FROM deliveries GROUP BY state").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        rows = []
    return LedgerFile(size, wal_size, {str(state): int(count) for state, count in rows})


# "20000 recipients in …" before the CLI's refactor, "20,000 recipients in …" after it
SUMMARY_RE = re.compile(r"^([\d,]+) recipients in ([0-9.]+) s \(", re.MULTILINE)


def send_loop_seconds(text: str) -> float | None:
    """The engine's own time, from the CLI's summary line `N recipients in X s (R msg/s)`."""
    found = SUMMARY_RE.findall(text)
    return float(found[-1][1]) if found else None


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


# --- the pipeline without the ledger (runs in its own child: --no-ledger-child) ----------


def no_ledger_main(args: argparse.Namespace) -> int:
    """What `mailer digest --send` does, in process, minus the ledger.

    Same settings (from the environment, plus the flags the CLI passes), same preparation,
    the same suppression check, the same engine, progress and summary; no campaign, no
    `mark_sending` before each message, no `record` after it.
    """
    import mailer.cli  # noqa: F401  (the CLI's module graph: equal start-up and imports)
    from mailer.campaign import Audience, write_previews  # noqa: F401  (same imports)
    from mailer.cli.common import exit_code
    from mailer.cli.progress import SendDisplay, print_summary
    from mailer.delivery import Delivery
    from mailer.models import Status
    from mailer.pipeline import DigestOptions, prepare_digest
    from mailer.settings import load_settings
    from mailer.suppression import Suppression
    from mailer.transports.smtp import SMTPTransport

    started = time.perf_counter()
    settings = load_settings(articles_dir=Path(args.articles), concurrency=args.concurrency)
    settings.require_real_secret()
    config = settings.smtp_config()
    if args.plain_data:
        config = dataclasses.replace(config, fast_data=False)
    transport = SMTPTransport(config)
    prepared = prepare_digest(
        settings, DigestOptions(issue_date=dt.date.fromisoformat(args.date), list_ref=args.list)
    )
    audience = Audience(prepared.list_path, Suppression.for_lists_dir(settings.lists_dir))
    messages = (prepared.composer.compose(r, i) for i, r in enumerate(audience.mailable(), 1))
    engine = Delivery(transport, messages, settings.delivery_policy())
    print(f"Sending {prepared.digest.subject!r} without a ledger", flush=True)
    outcome = asyncio.run(_drive(engine, estimate_rows(prepared.list_path), SendDisplay))
    print_summary(outcome)
    sent = outcome.results[Status.SENT]
    print(
        json.dumps(
            {
                "sent": sent,
                "results": sum(outcome.results.values()),
                "send_seconds": outcome.elapsed,
                "main_seconds": time.perf_counter() - started,
            }
        )
    )
    return exit_code(outcome)


async def _drive(engine: Any, total: int, display_class: Any) -> Any:
    """The engine driven as `run_campaign` drives it, with the CLI's display."""
    from mailer.campaign import Outcome
    from mailer.ledger import Campaign

    display = display_class()
    outcome = Outcome(Campaign(0, "bench", "digest", "", "", total, dt.datetime.now(dt.UTC)))
    display.start(engine, total)
    started = time.monotonic()
    try:
        async for result in engine.run():
            outcome.add(result)
            display.result(result)
    finally:
        display.close()
    outcome.elapsed = time.monotonic() - started
    outcome.stopped = not engine.completed
    return outcome


def estimate_rows(path: Path) -> int:
    """Data rows in a CSV list, by counting line breaks (for progress and ETA only)."""
    lines = 0
    last = b"\n"
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        lines += 1
    return max(0, lines - 1)


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
        # The children that send get a fresh ledger each (see measure); the others none.
        env = child_env(port, root / "ledger-unused.sqlite3")
        common = ["--date", ISSUE_DATE.isoformat(), "--articles", str(articles)]
        common += ["--list", str(list_path)]
        print(f"python:    {sys.version.split()[0]} on {os.cpu_count()} CPUs")
        print(f"sink:      {sink.command}")
        if proxy is not None:
            print(f"relay:     a proxy on port {port} delays each of its replies {args.rtt:g} ms")
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
        signing = dkim_env(root) if args.dkim else None
        if signing is not None:
            verdict = signed_sample(root, python, common, env, signing)
            print(f"dkim:      RSA-2048, selector {DKIM_SELECTOR}: a signed message {verdict}")
            if verdict != "verified by dkimpy":
                raise SystemExit("the signed message did not verify: --dkim would measure nothing")

        def measure(
            label: str,
            argv: list[str],
            ledger: Path | None = None,
            extra: dict[str, str] | None = None,
        ) -> tuple[Run, int, float | None]:
            """One measured child, with the sink's message count and CPU over that run."""
            assert sink is not None
            child = env if ledger is None else {**env, "MAILER_LEDGER": str(ledger)}
            child = {**child, **(extra or {})}
            before, sink_cpu = sink.accepted() or 0, sink.cpu_seconds()
            run = run_child(label, argv, env=child, cwd=root, timeout=args.timeout)
            seen = (sink.wait_settled(before + args.n) or 0) - before
            after_cpu = sink.cpu_seconds()
            used = None if sink_cpu is None or after_cpu is None else after_cpu - sink_cpu
            if run.returncode != 0:
                failures.append(f"{label} exited {run.returncode}")
            if seen != args.n:
                failures.append(f"the sink counted {seen} messages from {label}, not {args.n}")
            return run, seen, used

        print(f"load avg:  {_loadavg()} (before the measured runs)")

        # 2 and 3, --rounds times, interleaved: the machine's load drifts, so the ledger's
        # cost is the median of the rounds' ratios, each measured side by side.
        pairs: list[tuple[Run, int, float | None, Run, int, float | None]] = []
        signed_runs: list[tuple[Run, Run, int, float | None]] = []  # (unsigned, signed, ...)
        ledger_file: LedgerFile | None = None
        send_argv = [
            *("-m", "mailer", "digest", *common, "--send", "--yes"),
            *("--concurrency", str(args.concurrency)),
        ]
        for round_ in range(args.rounds):
            # 2. mailer digest --send, end to end, with a fresh ledger
            mailer_prof = root / "mailer.prof" if args.profile else None
            ledger_path = fresh_ledger(root, f"mailer{round_}")
            mailer, mailer_seen, mailer_sink_cpu = measure(
                "mailer", [python, *profile_argv(mailer_prof), *send_argv], ledger=ledger_path
            )
            if signing is not None:
                # 2b. the same with every message DKIM-signed, right after the unsigned one
                signed_path = fresh_ledger(root, f"dkim{round_}")
                dkim_prof = root / "mailer-dkim.prof" if args.profile else None
                dkim_run, dkim_seen, dkim_sink_cpu = measure(
                    "mailer-dkim",
                    [python, *profile_argv(dkim_prof), *send_argv],
                    ledger=signed_path,
                    extra=signing,
                )
                signed_runs.append((mailer, dkim_run, dkim_seen, dkim_sink_cpu))
                signed_states = inspect_ledger(signed_path)
                if signed_states is None or signed_states.states.get("sent", 0) != args.n:
                    failures.append(f"the signed run's ledger is {signed_states}")
            ledger_file = inspect_ledger(ledger_path)
            if ledger_file is None:
                failures.append(f"mailer left no ledger at {ledger_path}")
            elif ledger_file.states.get("sent", 0) != args.n:
                failures.append(f"the ledger's rows are {ledger_file.states}, not {args.n} sent")

            # 3. the same pipeline in process, without the ledger
            bare_prof = root / "no-ledger.prof" if args.profile else None
            bare, bare_seen, bare_sink_cpu = measure(
                "no-ledger",
                [
                    python,
                    *profile_argv(bare_prof),
                    *(str(Path(__file__).resolve()), "--no-ledger-child"),
                    *("--date", ISSUE_DATE.isoformat(), "--articles", str(articles)),
                    *("--list", str(list_path), "--concurrency", str(args.concurrency)),
                    *(["--plain-data"] if args.plain_data else []),
                ],
            )
            bare_inner = _last_json(bare.stdout)
            if bare_inner is None or bare_inner.get("sent") != args.n:
                failures.append(f"the no-ledger child reported {bare_inner}, not {args.n} sent")
            pairs.append((mailer, mailer_seen, mailer_sink_cpu, bare, bare_seen, bare_sink_cpu))
            if args.rounds > 1:
                signed_note = ""
                if signing is not None:
                    signed_note = f"; {args.n / signed_runs[-1][1].wall:.0f} msg/s DKIM-signed"
                print(
                    f"round {round_ + 1}: {args.n / mailer.wall:.0f} msg/s with the ledger, "
                    f"{args.n / bare.wall:.0f} without: cost "
                    f"{100 * (1 - bare.wall / mailer.wall):.1f} %{signed_note}",
                    flush=True,
                )
        # The table shows the round whose cost is the median.
        ordered = sorted(pairs, key=lambda pair: pair[3].wall / pair[0].wall)
        median_pair = ordered[(len(ordered) - 1) // 2]
        mailer, mailer_seen, mailer_sink_cpu, bare, bare_seen, bare_sink_cpu = median_pair

        # 4. the reference: plain aiosmtplib, C reused connections, one pre-built message
        ref_prof = root / "reference.prof" if args.profile else None
        reference, ref_seen, ref_sink_cpu = measure(
            "reference",
            [
                python,
                *profile_argv(ref_prof),
                *(str(Path(__file__).resolve()), "--reference", "--eml", str(eml)),
                *("--list", str(list_path), "--port", str(port)),
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
        print("no-ledger child output (tail):")
        for line in _tail(bare.stdout + bare.stderr, 6):
            print(f"  | {line}")
        if reference.stderr.strip():
            print("reference stderr (tail):")
            for line in _tail(reference.stderr, 12):
                print(f"  | {line}")
        print()
        rows = [
            ("mailer digest --send", mailer, mailer_seen, mailer_sink_cpu),
            ("same pipeline, no ledger", bare, bare_seen, bare_sink_cpu),
            ("plain aiosmtplib (reference)", reference, ref_seen, ref_sink_cpu),
        ]
        signed_median: tuple[Run, Run, int, float | None] | None = None
        if signed_runs:  # the round whose DKIM cost is the median, beside its unsigned run
            by_cost = sorted(signed_runs, key=lambda runs: runs[0].wall / runs[1].wall)
            signed_median = by_cost[(len(by_cost) - 1) // 2]
            _, dkim_run, dkim_seen, dkim_sink_cpu = signed_median
            rows.insert(1, ("  the same, DKIM RSA-2048", dkim_run, dkim_seen, dkim_sink_cpu))
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
        with_rate, without_rate = args.n / mailer.wall, args.n / bare.wall
        cost = 100 * (1 - with_rate / without_rate)
        verdict = "OK" if cost <= LEDGER_COST_TARGET else "OVER THE TARGET"
        if args.plain_data:  # the two children send bodies by different paths
            verdict = "n/a with --plain-data: the no-ledger child uses SMTP.data(), mailer not"
        which = f"median of {args.rounds} rounds" if args.rounds > 1 else "one round"
        print(
            f"ledger cost: {cost:.1f} % of throughput ({with_rate:.0f} msg/s with ledger vs "
            f"{without_rate:.0f} without, {which}; target <= {LEDGER_COST_TARGET:.0f} %: "
            f"{verdict})"
        )
        if args.rounds > 1:
            costs = sorted(100 * (1 - pair[3].wall / pair[0].wall) for pair in pairs)
            print(f"ledger cost per round, sorted: {', '.join(f'{c:.1f} %' for c in costs)}")
        with_cpu, without_cpu = mailer.cpu * 1000 / args.n, bare.cpu * 1000 / args.n
        print(
            f"ledger CPU: {with_cpu:.3f} ms/msg with ledger vs {without_cpu:.3f} without "
            f"(+{with_cpu - without_cpu:.3f} ms/msg, {100 * (with_cpu / without_cpu - 1):+.1f} %)"
        )
        loop_with, loop_without = send_loop_seconds(mailer.stdout), send_loop_seconds(bare.stdout)
        if loop_with and loop_without:
            loop_cost = 100 * (1 - loop_without / loop_with)
            print(
                f"send loop alone (the CLI's summary line): {loop_with:.2f} s with ledger vs "
                f"{loop_without:.2f} s without ({args.n / loop_with:.0f} vs "
                f"{args.n / loop_without:.0f} msg/s, cost {loop_cost:.1f} %)"
            )
        if ledger_file is not None:
            wal = f" + {ledger_file.wal / 1e6:.1f} MB WAL" if ledger_file.wal else ", no WAL left"
            print(
                f"ledger file: {ledger_file.size / 1e6:.2f} MB{wal} for {args.n} rows "
                f"({ledger_file.size / args.n:.0f} bytes/row), states {ledger_file.states}"
            )
        if signed_median is not None:
            unsigned, dkim_run, _, _ = signed_median
            off, on = args.n / unsigned.wall, args.n / dkim_run.wall
            cpu_off, cpu_on = unsigned.cpu * 1000 / args.n, dkim_run.cpu * 1000 / args.n
            which = f"median of {args.rounds} rounds" if args.rounds > 1 else "one round"
            print(
                f"dkim: {on:.0f} msg/s signed vs {off:.0f} unsigned "
                f"({100 * (on / off - 1):+.1f} % throughput, {which}); CPU {cpu_on:.3f} vs "
                f"{cpu_off:.3f} ms/msg: {cpu_on - cpu_off:+.3f} ms of CPU a message, end to "
                "end (key loading and the signing thread included; the signature alone is "
                "bench/bench_dkim.py's, target <= 1.5 ms)"
            )
            if args.rounds > 1:
                changes = sorted(100 * (u.wall / d.wall - 1) for u, d, _, _ in signed_runs)
                extra_cpu = sorted(1000 * (d.cpu - u.cpu) / args.n for u, d, _, _ in signed_runs)
                print(
                    "dkim throughput change per round, sorted: "
                    + ", ".join(f"{c:+.1f} %" for c in changes)
                    + "; extra CPU ms/msg: "
                    + ", ".join(f"{c:+.3f}" for c in extra_cpu)
                )
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
            profiles = (("mailer", mailer_prof), ("no-ledger", bare_prof), ("reference", ref_prof))
            for name, prof in profiles:
                if prof and prof.exists():
                    print(f"\n===== cProfile: {name} ({prof}) =====")
                    print(summarise_profile(prof, args.profile_lines))
        for failure in failures:
            print(f"PROBLEM: {failure}")
        return 1 if failures else 0
    finally:
        if proxy is not None:
            proxy.stop()
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
    parser.add_argument(
        "--rtt",
        type=float,
        default=0.0,
        metavar="MS",
        help="put a proxy before the sink that delays each reply MS (a relay farther off)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="run the with/without-ledger pair this many times, interleaved (median reported)",
    )
    parser.add_argument(
        "--dkim",
        action="store_true",
        help="also send with every message DKIM-signed (a fresh RSA-2048 key), each round",
    )
    parser.add_argument("--profile", action="store_true", help="run every child in cProfile")
    parser.add_argument(
        "--plain-data",
        action="store_true",
        help="the no-ledger child sends bodies with aiosmtplib's public SMTP.data()",
    )
    parser.add_argument("--profile-lines", type=int, default=30)
    # internal: the reference child, and the pipeline without the ledger
    parser.add_argument("--reference", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-ledger-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--articles", help=argparse.SUPPRESS)
    parser.add_argument("--date", default=ISSUE_DATE.isoformat(), help=argparse.SUPPRESS)
    parser.add_argument("--eml", help=argparse.SUPPRESS)
    parser.add_argument("--list", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.n < 1 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--n, --concurrency and --rounds must be at least 1")
    if args.rtt < 0:
        parser.error("--rtt must not be negative")
    if args.reference:
        return reference_main(args)
    if args.no_ledger_child:
        return no_ledger_main(args)
    return bench(args)


if __name__ == "__main__":
    sys.exit(main())
