"""What every command shares: one ``Error:`` line and an exit code, never a traceback."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from mailer.errors import MailerError

P = ParamSpec("P")
R = TypeVar("R")


def err(text: str) -> None:
    """One line on stderr."""
    print(text, file=sys.stderr, flush=True)


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn a ``MailerError`` into one ``Error:`` line and its exit code; never a traceback.

    Output piped into a command that stops reading (``| head``) ends the command quietly.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
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
