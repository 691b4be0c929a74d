"""Progress and the end-of-run summary for a delivery: a rich bar on a terminal, plain lines
otherwise. Part of the command line layer; the library itself never prints."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from mailer.cli_common import detach_from_terminal
from mailer.delivery import Delivery
from mailer.errors import EXIT_INCOMPLETE, EXIT_OK, EXIT_RESUMABLE
from mailer.models import SendResult, Status

PLAIN_EVERY = 5.0  # seconds between progress lines without a terminal


# Signals that stop a send gracefully: Ctrl-C, a service manager's stop, and a closed terminal
# or dropped ssh session (SIGHUP), which must not kill a long send halfway.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass
class Report:
    counts: Counter[Status] = field(default_factory=Counter)
    failures: list[SendResult] = field(default_factory=list)
    elapsed: float = 0.0
    interrupted: bool = False
    unsent: int = 0  # never attempted, or refused before the data because of us
    abandoned: int = 0  # in flight when a third interrupt forced the quit: unknown

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return EXIT_RESUMABLE
        bad = sum(self.counts[s] for s in (Status.FAILED, Status.DEFERRED, Status.UNKNOWN))
        return EXIT_INCOMPLETE if bad or self.unsent else EXIT_OK


class _Reporter:
    def __init__(self, total: int | None, console: Console) -> None:
        self.total = total
        self.console = console
        self.start = time.monotonic()
        self.counts: Counter[Status] = Counter()
        self._last_line = self.start
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        if console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]Sending"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[detail]}"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self._task = self._bar.add_task("send", total=total, detail="")
            self._bar.start()

    def _detail(self) -> str:
        done = sum(self.counts.values())
        rate = done / max(time.monotonic() - self.start, 1e-6)
        return (
            f"sent {self.counts[Status.SENT]} · deferred {self.counts[Status.DEFERRED]} · "
            f"failed {self.counts[Status.FAILED]} · unknown {self.counts[Status.UNKNOWN]} · "
            f"{rate:.0f} msg/s"
        )

    def update(self, result: SendResult) -> None:
        self.counts[result.status] += 1
        now = time.monotonic()
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=1, detail=self._detail())
        elif now - self._last_line >= PLAIN_EVERY:
            self._last_line = now
            done = sum(self.counts.values())
            of = f"/{self.total}" if self.total else ""
            eta = ""
            if self.total and done:
                remaining = (self.total - done) * (now - self.start) / done
                eta = f" · ETA {int(remaining // 60)}m{int(remaining % 60):02d}s"
            print(f"progress: {done}{of} · {self._detail()}{eta}", flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


async def run_with_progress(
    engine: Delivery, *, total: int | None, console: Console | None = None
) -> Report:
    """Drive the engine, show progress, print a summary.

    SIGINT, SIGTERM and SIGHUP stop it gracefully: no new messages, those in flight finish.
    A second signal says what the run is waiting for; a third quits at once, and the
    messages then in flight are reported as unknown (``Report.abandoned``).
    """
    console = console or Console(file=sys.stdout)
    report = Report()
    reporter = _Reporter(total, console)
    loop = asyncio.get_running_loop()
    signals = 0

    def interrupt(signum: int) -> None:
        nonlocal signals
        signals += 1
        report.interrupted = True
        if signum == signal.SIGHUP:
            detach_from_terminal()
        if signals == 1:
            engine.stop()
            note(
                "Stopping: no new messages; waiting for the server's replies to the "
                f"{engine.in_flight} in flight. Interrupt again to see what it waits for."
            )
        elif signals == 2:
            note(
                f"Still waiting for {engine.in_flight} message(s) in flight (each gets "
                "its reply or times out). Interrupt once more to quit at once: their "
                "outcome will then be unknown."
            )
        else:
            engine.abandon()

    def note(text: str) -> None:
        with contextlib.suppress(OSError):
            print(text, file=sys.stderr, flush=True)

    installed = []
    for sig in STOP_SIGNALS:
        try:
            previous = signal.getsignal(sig)
            loop.add_signal_handler(sig, interrupt, sig)
            installed.append((sig, previous))
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    try:
        async for result in engine.run():
            reporter.update(result)
            report.counts[result.status] += 1
            if result.status in (Status.FAILED, Status.DEFERRED, Status.UNKNOWN):
                report.failures.append(result)
    finally:
        for sig, previous in installed:
            loop.remove_signal_handler(sig)
            with contextlib.suppress(TypeError, ValueError):
                signal.signal(sig, previous)  # the command's own handler, for what follows
        with contextlib.suppress(OSError):
            reporter.close()
        report.elapsed = time.monotonic() - reporter.start
        report.unsent = engine.unsent + report.counts[Status.UNSENT]
        report.abandoned = engine.abandoned
        with contextlib.suppress(OSError):
            print_summary(report, console)
    return report


def print_summary(report: Report, console: Console) -> None:
    table = Table(title="Delivery summary", show_header=True)
    table.add_column("outcome")
    table.add_column("recipients", justify="right")
    for status in (Status.SENT, Status.DEFERRED, Status.FAILED, Status.UNKNOWN):
        table.add_row(status.value, str(report.counts[status]))
    if report.counts[Status.SKIPPED]:
        table.add_row("skipped (suppressed)", str(report.counts[Status.SKIPPED]))
    if report.unsent:
        table.add_row("not sent (still pending)", str(report.unsent))
    done = sum(report.counts.values())
    rate = done / report.elapsed if report.elapsed > 0 else 0.0
    console.print(table)
    print(f"{done} recipients in {report.elapsed:.1f} s ({rate:.0f} msg/s)", flush=True)
    for result in report.failures[:10]:
        console.print(
            f"  {result.status.value}: {result.email}: {result.code or ''} {result.reply}"
        )
    if len(report.failures) > 10:
        console.print(f"  … and {len(report.failures) - 10} more", markup=False)
    if report.abandoned:
        console.print(
            f"Quit at once: {report.abandoned} message(s) were in flight; their outcome is "
            "unknown (`mailer status --list unknown`). Run the same command to resume the rest."
        )
    elif report.interrupted:
        console.print(
            "Interrupted: messages in flight were finished. Run the same command to resume."
        )
