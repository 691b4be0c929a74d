"""A send's progress on screen, its graceful signals, and its closing summary."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from types import FrameType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from mailer.campaign import Outcome
from mailer.cli.common import detach_from_terminal, err, plural
from mailer.delivery import Delivery
from mailer.models import SendResult, Status

PLAIN_EVERY = 5.0  # seconds between progress lines without a terminal
# Ctrl-C, a service manager's stop, and a closed terminal or dropped ssh session (SIGHUP)
# all stop a send gracefully: none of them may kill a long send halfway.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_Handler = Callable[[int, FrameType | None], Any] | int | None


class SendDisplay:
    """Feeds ``run_campaign``'s callbacks: a bar on a terminal (a plain line every few
    seconds otherwise), and signal handlers that stop the engine gracefully.

    The first signal stops taking new messages; the second says what the run waits for;
    the third abandons the messages in flight, whose outcome is then unknown.
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console(file=sys.stdout)
        self.counts: Counter[Status] = Counter()
        self.signals = 0
        self._engine: Delivery | None = None
        self._total = 0
        self._start = time.monotonic()
        self._last_line = self._start
        self._bar: Progress | None = None
        self._task: TaskID | None = None
        self._installed: list[tuple[int, _Handler]] = []

    def start(self, engine: Delivery, total: int) -> None:
        self._engine, self._total = engine, total
        self._start = self._last_line = time.monotonic()
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                previous = signal.getsignal(sig)
                loop.add_signal_handler(sig, self._interrupt, sig)
                self._installed.append((sig, previous))
        if self.console.is_terminal:
            self._bar = Progress(
                TextColumn("[bold]Sending"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[detail]}"),
                TimeRemainingColumn(),
                console=self.console,
            )
            self._task = self._bar.add_task("send", total=total, detail="")
            self._bar.start()

    def result(self, result: SendResult) -> None:
        self.counts[result.status] += 1
        now = time.monotonic()
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=1, detail=self._detail())
        elif now - self._last_line >= PLAIN_EVERY:
            self._last_line = now
            done = sum(self.counts.values())
            eta = ""
            if self._total and done:
                remaining = (self._total - done) * (now - self._start) / done
                eta = f" · ETA {int(remaining // 60)}m{int(remaining % 60):02d}s"
            with contextlib.suppress(OSError):
                print(f"progress: {done}/{self._total} · {self._detail()}{eta}", flush=True)

    def close(self) -> None:
        """Put back the command's own signal handlers and stop the bar."""
        loop = asyncio.get_running_loop()
        for sig, previous in self._installed:
            loop.remove_signal_handler(sig)
            with contextlib.suppress(TypeError, ValueError):
                signal.signal(sig, previous)
        self._installed.clear()
        if self._bar is not None:
            with contextlib.suppress(OSError):
                self._bar.stop()

    def _detail(self) -> str:
        done = sum(self.counts.values())
        rate = done / max(time.monotonic() - self._start, 1e-6)
        c = self.counts
        return (
            f"sent {c[Status.SENT]} · deferred {c[Status.DEFERRED]} · failed {c[Status.FAILED]}"
            f" · unknown {c[Status.UNKNOWN]} · {rate:.0f} msg/s"
        )

    def _interrupt(self, signum: int) -> None:
        engine = self._engine
        assert engine is not None
        self.signals += 1
        if signum == signal.SIGHUP:
            detach_from_terminal()
        with contextlib.suppress(OSError):
            if self.signals == 1:
                engine.stop()
                err(
                    "Stopping: no new messages; waiting for the server's replies to the "
                    f"{engine.in_flight} in flight. Interrupt again to see what it waits for."
                )
            elif self.signals == 2:
                err(
                    f"Still waiting for {engine.in_flight} message(s) in flight (each gets "
                    "its reply or times out). Interrupt once more to quit at once: their "
                    "outcome will then be unknown."
                )
        if self.signals >= 3:
            engine.abandon()


def print_summary(outcome: Outcome, console: Console | None = None) -> None:
    """The table of this run's outcomes, its rate, and its first failures with replies."""
    console = console or Console(file=sys.stdout)
    results = outcome.results
    table = Table(title="Delivery summary", show_header=True)
    table.add_column("outcome")
    table.add_column("recipients", justify="right")
    for status in (Status.SENT, Status.DEFERRED, Status.FAILED, Status.UNKNOWN):
        table.add_row(status.value, str(results[status]))
    if results[Status.SKIPPED]:
        table.add_row("skipped (suppressed)", str(results[Status.SKIPPED]))
    if outcome.not_sent:
        table.add_row("not sent (still pending)", str(outcome.not_sent))
    done = sum(results[s] for s in (Status.SENT, Status.DEFERRED, Status.FAILED, Status.UNKNOWN))
    rate = done / outcome.elapsed if outcome.elapsed > 0 else 0.0
    console.print(table)
    print(f"{plural(done, 'recipient')} in {outcome.elapsed:.1f} s ({rate:.0f} msg/s)", flush=True)
    for result in outcome.failures[:10]:
        console.print(
            f"  {result.status.value}: {result.email}: {result.code or ''} {result.reply}",
            markup=False,
        )
    if len(outcome.failures) > 10:
        console.print(f"  … and {len(outcome.failures) - 10} more", markup=False)
    if outcome.abandoned:
        print(
            f"Quit at once: {outcome.abandoned} message(s) were in flight; their outcome is "
            "unknown (`mailer status --list unknown`). Run the same command to resume the rest."
        )
    elif outcome.stopped:
        print("Interrupted: messages in flight were finished. Run the same command to resume.")
