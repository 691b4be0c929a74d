"""The real ``mailer`` command in a child process, as a user runs it (``python -m mailer``)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import REPO


def environ(home: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """A bare environment, so that nothing from the developer's shell reaches the command:
    PATH, HOME, this checkout first on the import path, and ``env`` on top."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(home), "PYTHONPATH": str(REPO), **(env or {})}


def run_mailer(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``mailer ARGS`` in ``cwd`` (also its HOME) to the end; its output as text."""
    return subprocess.run(
        [sys.executable, "-m", "mailer", *args],
        cwd=cwd,
        env=environ(cwd, env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_mailer(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """Start ``mailer ARGS`` in ``cwd`` (also its HOME), its output piped; the caller waits."""
    return subprocess.Popen(
        [sys.executable, "-m", "mailer", *args],
        cwd=cwd,
        env=environ(cwd, env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def faked(moment: str) -> dict[str, str]:
    """The environment that makes a process (and its children) start its clock at
    ``moment``: Debian's libfaketime, preloaded, as the ``faketime`` command does (but
    without a wrapper process in between, so that signals reach the mailer itself)."""
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"))
    assert found, "libfaketime (Debian package faketime) is needed; .ci/run installs it"
    return {"LD_PRELOAD": str(found[0]), "FAKETIME": f"@{moment}"}


def wait_until(
    condition: Callable[[], bool], proc: subprocess.Popen[str], timeout: float = 60
) -> None:
    """Poll ``condition`` while ``proc`` runs: fail if it ends first, or after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the send made no progress"
        time.sleep(0.002)
