"""Progress and the end-of-run summary for a delivery: a rich bar on a terminal, plain lines
otherwise. Part of the command line layer; the library itself never prints."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from mailer.delivery import Delivery
from mailer.errors import EXIT_INCOMPLETE, EXIT_OK, EXIT_RESUMABLE
from mailer.models import SendResult, Status

PLAIN_EVERY = 5.0  # seconds between progress lines without a terminal


@dataclass
class Report:
    counts: Counter[Status] = field(default_factory=Counter)
    failures: list[SendResult] = field(default_factory=list)
    elapsed: float = 0.0
    interrupted: bool = False
    unsent: int = 0

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
    """Drive the engine, show progress, stop gracefully on SIGINT/SIGTERM, print a summary."""
    console = console or Console(file=sys.stdout)
    report = Report()
    reporter = _Reporter(total, console)
    loop = asyncio.get_running_loop()

    def interrupt() -> None:
        if not engine.stopped:
            report.interrupted = True
            engine.stop()

    installed = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, interrupt)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    try:
        async for result in engine.run():
            reporter.update(result)
            report.counts[result.status] += 1
            if result.status in (Status.FAILED, Status.DEFERRED, Status.UNKNOWN):
                report.failures.append(result)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        reporter.close()
        report.elapsed = time.monotonic() - reporter.start
        report.unsent = engine.unsent
        print_summary(report, console)
    return report


def print_summary(report: Report, console: Console) -> None:
    table = Table(title="Delivery summary", show_header=True)
    table.add_column("outcome")
    table.add_column("recipients", justify="right")
    for status in (Status.SENT, Status.DEFERRED, Status.FAILED, Status.UNKNOWN):
        table.add_row(status.value, str(report.counts[status]))
    if report.unsent:
        table.add_row("not attempted", str(report.unsent))
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
    if report.interrupted:
        console.print(
            "Interrupted: messages in flight were finished. Run the same command to resume."
        )
