"""The SQLite ledger's writer lock: one sending process per ledger file.

A plain ``flock`` on ``<ledger>.lock`` rather than ``filelock``: the writer child process
(``mailer.ledger.writer_process``) must hold the very same lock, so it is given the
descriptor, which ``filelock`` keeps to itself.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from mailer.errors import LedgerBusy

POLL = 0.02  # seconds between attempts while waiting for another sender


class WriterLock:
    """A held lock: ``fd`` is its open file (share it with a child to share the lock)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def release(self) -> None:
        """Let go of it (a child given the descriptor keeps holding it until it exits)."""
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


def take(path: Path, wait: float) -> WriterLock:
    """Take the exclusive writer lock ``<path>.lock`` (0600), waiting up to ``wait``
    seconds; ``LedgerBusy`` if another process holds it. ``OSError`` if it cannot be made.

    The kernel releases it when every holder has died, so a run killed with SIGKILL never
    blocks the next one for longer than its writer child takes to finish.
    """
    fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise LedgerBusy(
                        f"{path}: the ledger is in use by another mailer run",
                        hint="wait for that run to finish, or stop it with Ctrl-C",
                    ) from None
                time.sleep(POLL)
        os.fchmod(fd, 0o600)  # created with 0600 masked by the umask: owner-only either way
    except BaseException:
        os.close(fd)
        raise
    return WriterLock(fd)
