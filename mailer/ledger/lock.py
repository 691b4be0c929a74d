"""The SQLite ledger's writer lock: one sending process per ledger file."""

from __future__ import annotations

import os
from pathlib import Path

from filelock import FileLock, Timeout

from mailer.errors import LedgerBusy


def take(path: Path, wait: float) -> FileLock:
    """Take the exclusive writer lock ``<path>.lock`` (0600), waiting up to ``wait``
    seconds; ``LedgerBusy`` if another process holds it. ``OSError`` if it cannot be made.

    The kernel releases it when its holder dies, so a run killed with SIGKILL never blocks
    the next one.
    """
    lock = FileLock(f"{path}.lock", mode=0o600, thread_local=False)
    try:
        lock.acquire(timeout=wait, poll_interval=0.02)
    except Timeout:
        raise LedgerBusy(
            f"{path}: the ledger is in use by another mailer run",
            hint="wait for that run to finish, or stop it with Ctrl-C",
        ) from None
    # filelock creates the file with ``mode`` masked by the umask: owner-only either way.
    os.chmod(f"{path}.lock", 0o600)
    return lock
