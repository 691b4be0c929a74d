"""Spam filters have nothing to say: Debian's SpamAssassin, with its local rules only (``-L``,
no network), scores every message kind at most 0.0, on the real preview ``.eml`` files."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.looks import LONG, NOTE, RIVER, SITE, digest_preview, forward_preview, write_long_article

pytestmark = pytest.mark.slow

SPAMASSASSIN = "/usr/bin/spamassassin"


def judged(message: Path, home: Path) -> tuple[float, str]:
    """SpamAssassin's score for one message, and the rules that fired."""
    # Its own home: no user preferences, and Bayes data (if any) stays in the test's folder.
    done = subprocess.run(
        [SPAMASSASSIN, "-L", "-t"],
        input=message.read_bytes(),
        capture_output=True,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        timeout=120,
        check=True,
    )
    report = done.stdout.decode("utf-8", "replace")
    status = re.search(r"^X-Spam-Status: .*?score=(-?\d+\.\d+)", report, re.MULTILINE)
    assert status is not None, report[:2000]
    details = report.split("Content analysis details:", 1)[-1]
    return float(status.group(1)), details


def assert_clean(emls: list[Path], home: Path) -> None:
    assert emls
    for eml in emls:
        score, details = judged(eml, home)
        assert score <= 0.0, f"{eml.name}: {score}\n{details}"


def test_the_digest_scores_zero(sample: Path, tmp_path: Path) -> None:
    plain = digest_preview(sample)
    assert_clean(plain.emls[:2], tmp_path)
    with_site = digest_preview(sample, env={"MAILER_PUBLIC_URL": SITE})
    assert_clean(with_site.emls[:2], tmp_path)


def test_a_forward_scores_zero(sample: Path, tmp_path: Path) -> None:
    assert_clean(forward_preview(sample, RIVER, "--note", NOTE).emls, tmp_path)


def test_a_long_article_forward_scores_zero(sample: Path, tmp_path: Path) -> None:
    write_long_article(sample / "articles")
    assert_clean(forward_preview(sample, LONG).emls, tmp_path)
