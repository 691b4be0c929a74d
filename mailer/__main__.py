"""The ``mailer`` command (and ``python -m mailer``): signals first, then everything else."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

from mailer.errors import EXIT_RESUMABLE, Interrupted

_INTERRUPTED = "Interrupted: nothing was sent or written half-way; run the command again."


def _unwind(signum: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(signum).name)


def _interrupted() -> None:
    print(_INTERRUPTED, file=sys.stderr, flush=True)
    sys.stdout.flush()
    # Not sys.exit: a KeyboardInterrupt that went through the interpreter while a module was
    # being imported leaves CPython's "unhandled interrupt" flag set, and the exit would
    # become death by SIGINT (-2) although it was handled. Everything was unwound by now (no
    # ledger or file is open), so there is nothing left to finalise.
    os._exit(EXIT_RESUMABLE)


def main() -> None:
    """Run the CLI. SIGINT, SIGTERM and SIGHUP are handled before anything is imported, so
    that a signal at any moment ends the command with 75, never a traceback or a kill; once
    the command is done, a late signal changes nothing."""
    try:
        # SIGINT too: until a command runs (which turns Ctrl-C into 75 itself), Typer would
        # make a KeyboardInterrupt a silent exit 130.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _unwind)
        from mailer.cli import app

        app()
    except RuntimeError as exc:
        # Python wraps an exception raised while a class body is being set up (a signal
        # handler's, during the imports) in a RuntimeError; it is still an interrupt.
        if not isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt | Interrupted):
            raise
        _interrupted()
    except (KeyboardInterrupt, Interrupted):
        _interrupted()
    except SystemExit as exc:
        if exc.code != EXIT_RESUMABLE:
            raise
        # A command that a signal stopped has unwound and reported it; a Ctrl-C that went
        # through a lazy import inside it would still turn a normal exit into death by
        # SIGINT (see _interrupted), so leave the same way.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_RESUMABLE)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)


if __name__ == "__main__":
    main()
