"""What every command shares: one ``Error:`` line and an exit code, never a traceback."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import typer
from typer import _click as click  # the click that Typer carries (its own copy)
from typer.core import TyperCommand

from mailer.errors import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_RESUMABLE,
    InputError,
    Interrupted,
    MailerError,
)

if TYPE_CHECKING:
    from mailer.campaign import Outcome

P = ParamSpec("P")
R = TypeVar("R")


class Command(TyperCommand):
    """A command whose help shows an argument by its placeholder alone: ``EMAIL``, or
    ``[EMAIL]`` when optional, where Typer would show ``{EMAIL}`` and ``EMAIL <str>``."""

    def collect_usage_pieces(self, ctx: click.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name != "argument":
                pieces += param.get_usage_pieces(ctx)
                continue
            name = param.metavar or (param.name or "").upper()
            name = name if param.required else f"[{name}]"
            pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        arguments: list[tuple[str, str]] = []
        options: list[tuple[str, str]] = []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                arguments.append((param.metavar or record[0], record[1]))
            else:
                options.append(record)
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def err(text: str) -> None:
    """One line on stderr."""
    print(text, file=sys.stderr, flush=True)


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 message``, ``2 messages``, ``3 addresses`` (with ``many``)."""
    return f"{count:,} {word if count == 1 else many or word + 's'}"


def exit_code(outcome: Outcome) -> int:
    """The exit-code policy of a send (the README's table): 75 when stopped by a signal; 1
    when anyone failed, was deferred or is unknown; else 0, also when ``--limit`` left
    recipients pending for a later run (the summary says how many)."""
    from mailer.ledger import State
    from mailer.models import Status

    if outcome.stopped:
        return EXIT_RESUMABLE
    results = outcome.results
    bad = results[Status.FAILED] + results[Status.DEFERRED] + results[Status.UNKNOWN]
    waiting = outcome.counts.get(State.DEFERRED, 0) + outcome.unknown
    if bad or outcome.not_sent or waiting:
        return EXIT_INCOMPLETE
    return EXIT_OK


def _raise_interrupted(signum: int, frame: FrameType | None) -> None:
    if signum == signal.SIGHUP:
        detach_from_terminal()
    raise Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def _stop_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind the command like Ctrl-C does (a send loop installs its own
    graceful handlers meanwhile), instead of killing it wherever it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stops = (signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in stops}
    # Ctrl-C is a KeyboardInterrupt inside a command (``python -m mailer`` unwinds on it
    # differently while starting up).
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a ``MailerError`` into one ``Error:`` line and its exit code; never a traceback.

    Ctrl-C, SIGTERM or SIGHUP before a send loop starts end the command with 75 (run it
    again): nothing half-done is kept, since every write is atomic. Output piped into a
    command that stops reading (``| head``) ends the command quietly.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            with _stop_signals():
                return func(*args, **kwargs)
        except (KeyboardInterrupt, Interrupted):
            with contextlib.suppress(OSError):
                err("Interrupted: nothing was sent or written half-way; run the command again.")
            raise typer.Exit(EXIT_RESUMABLE) from None
        except MailerError as exc:
            err(f"Error: {exc.message}")
            if exc.hint:
                err(f"Hint: {exc.hint}")
            raise typer.Exit(exc.exit_code) from None
        except BrokenPipeError:
            _silence_stdout()
            raise typer.Exit(1) from None

    return wrapper


def _silence_stdout() -> None:
    # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail.
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def detach_from_terminal() -> None:
    """The terminal is gone (SIGHUP): writing to it would fail, so output goes nowhere."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in (1, 2):
            with contextlib.suppress(OSError):
                if os.isatty(fd):
                    os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def parse_issue_date(value: str) -> dt.date:
    """An issue's ``--date``: exactly ``YYYY-MM-DD``, as its archive page names it."""
    from mailer.headers import issue_date_from_text

    day = issue_date_from_text(value)
    if day is None:
        raise InputError(f"--date: {value[:40]!r} is not a date (use YYYY-MM-DD)")
    return day


def skipped_article(path: Path, reason: str) -> None:
    """Told of an article file the digest does not read (a symlink out, a pipe)."""
    err(f"warning: {path}: skipped ({reason})")
