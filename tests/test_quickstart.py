"""The README's quick start is run for real, so it cannot rot."""

from __future__ import annotations

import email
import re
import shlex
import subprocess
import sys
from email import policy
from pathlib import Path

from tests.conftest import REPO


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1]
    return re.findall(r"```sh\n(.+?)\n```", quick, re.DOTALL)[:2]


def test_readme_has_two_commands_install_and_test() -> None:
    install, test = _readme_commands()
    assert "pip install" in install and "mailer digest" in install
    assert "pytest" in test


def test_quickstart_main_job_writes_previews(sample: Path) -> None:
    install, _ = _readme_commands()
    job = install.split("&&")[-1].strip()
    argv = shlex.split(job)
    assert Path(argv[0]).name == "mailer"
    done = subprocess.run(
        [sys.executable, "-m", "mailer", *argv[1:]],
        cwd=sample,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "HOME": str(sample)},
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    folder = sample / "previews" / "digest-2026-11-27"
    emls = sorted(folder.glob("*.eml"))
    assert len(emls) == 5  # six rows, one case-variant duplicate
    assert (folder / "digest.html").is_file() and (folder / "digest.txt").is_file()
    msg = email.message_from_bytes(emls[0].read_bytes(), policy=policy.default)
    assert msg["To"] == "Alice Martin <alice@example.org>"
    assert "Old bakery trains a new generation of bakers" in (folder / "digest.txt").read_text()
