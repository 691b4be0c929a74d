"""The README's quick start is run for real, so it cannot rot."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from tests.mail import parsed
from tests.process import run_mailer
from tests.readme import quick_start


def test_readme_has_two_commands_install_and_test() -> None:
    install, test = quick_start()
    assert "pip install" in install and "mailer digest" in install
    assert "pytest" in test


@pytest.mark.slow
def test_quickstart_main_job_writes_previews(sample: Path) -> None:
    install, _ = quick_start()
    job = install.split("&&")[-1].strip()
    argv = shlex.split(job)
    assert Path(argv[0]).name == "mailer"
    done = run_mailer(*argv[1:], cwd=sample)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    folder = sample / "previews" / "digest-2026-11-27"
    emls = sorted(folder.glob("*.eml"))
    assert len(emls) == 5  # six rows, one case-variant duplicate
    assert (folder / "digest.html").is_file() and (folder / "digest.txt").is_file()
    msg = parsed(emls[0].read_bytes())
    assert msg["To"] == "Alice Martin <alice@example.org>"
    assert "Old bakery trains a new generation of bakers" in (folder / "digest.txt").read_text()
