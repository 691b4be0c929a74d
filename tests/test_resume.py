"""Crash safety end to end: a real send in a subprocess, killed and resumed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli import state_counts, status_json
from tests.process import start_mailer, wait_until
from tests.smtpd import Recorder, Server, smtp_server

pytestmark = pytest.mark.slow  # real processes, killed and resumed

N = 240
CONCURRENCY = 4
DATE = "2026-11-27"


@pytest.fixture
def crowd(sample: Path) -> Path:
    path = sample / "lists" / "crowd.csv"
    rows = ["email,name"] + [f"reader{i}@example.org,Reader {i}" for i in range(1, N + 1)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _env(server: Server, sample: Path) -> dict[str, str]:
    return server.env(MAILER_LEDGER=str(sample / "state" / "ledger.sqlite3"))


def _start(server: Server, sample: Path, *extra: str) -> subprocess.Popen[str]:
    argv = ["digest", "--send", "--yes", "--date", DATE, "--list", "crowd"]
    argv += ["--concurrency", str(CONCURRENCY), *extra]
    return start_mailer(*argv, cwd=sample, env=_env(server, sample))


def _wait_for(recorder: Recorder, count: int, proc: subprocess.Popen[str]) -> None:
    wait_until(lambda: len(recorder.received) >= count, proc)


def _counts(server: Server, sample: Path) -> dict[str, int]:
    return state_counts(env=_env(server, sample))


def _unknown(server: Server, sample: Path) -> set[str]:
    doc = status_json("--list", "unknown", env=_env(server, sample))
    addresses = doc["addresses"]
    assert isinstance(addresses, list)
    return {str(a) for a in addresses}


def test_sigkill_at_random_points_never_mails_anyone_twice(crowd: Path, sample: Path) -> None:
    rng = random.Random(20261129)
    points = sorted(rng.sample(range(10, N - 40), 4))
    recorder = Recorder(delay=0.004)
    with smtp_server(recorder) as server:
        unknown_before = 0
        for point in points:
            proc = _start(server, sample)
            _wait_for(recorder, point, proc)
            time.sleep(rng.uniform(0, 0.02))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            proc.communicate()
            counts = _counts(server, sample)  # opening for status also recovers 'sending'
            assert counts["sending"] == 0
            # each crash leaves at most one message per connection in doubt
            assert counts["unknown"] - unknown_before <= CONCURRENCY
            unknown_before = counts["unknown"]
        final = _start(server, sample)
        out, errors = final.communicate(timeout=120)
        assert final.returncode in (0, 1), errors
        assert "Traceback" not in errors

        received = recorder.by_recipient()
        unknown = _unknown(server, sample)
        counts = _counts(server, sample)
    assert max(received.values()) == 1  # nobody got two copies
    everyone = {f"reader{i}@example.org" for i in range(1, N + 1)}
    # every recipient has exactly one copy, or is listed as unknown
    assert everyone - set(received) <= unknown
    assert len(unknown) <= CONCURRENCY * len(points)
    # the ledger agrees with the server: every 'sent' row arrived, every arrival is sent or
    # unknown
    assert counts["sent"] + len(unknown & set(received)) == len(received)
    assert counts["pending"] == counts["deferred"] == counts["failed"] == 0
    assert (final.returncode == 0) == (not unknown)
    if unknown:
        assert "--resend-unknown" in out


def test_sigterm_finishes_in_flight_and_resumes_with_zero_unknown(
    crowd: Path, sample: Path
) -> None:
    recorder = Recorder(delay=0.004)
    with smtp_server(recorder) as server:
        proc = _start(server, sample)
        _wait_for(recorder, 60, proc)
        os.kill(proc.pid, signal.SIGTERM)
        out, errors = proc.communicate(timeout=60)
        assert proc.returncode == 75, errors  # EX_TEMPFAIL: resumable
        assert "run the same command again to resume" in out
        stopped = _counts(server, sample)
        assert stopped["unknown"] == 0 and stopped["sending"] == 0
        assert stopped["sent"] == len(recorder.received) < N
        again = _start(server, sample)
        out, errors = again.communicate(timeout=120)
        assert again.returncode == 0, errors
        assert "Resuming campaign" in out
        counts = _counts(server, sample)
    received = recorder.by_recipient()
    assert len(received) == N and set(received.values()) == {1}
    assert counts["sent"] == N and counts["unknown"] == 0


def test_list_edited_mid_run_does_not_change_the_audience(crowd: Path, sample: Path) -> None:
    recorder = Recorder(delay=0.004)
    with smtp_server(recorder) as server:
        proc = _start(server, sample)
        _wait_for(recorder, 30, proc)
        # mid-run: drop half the list and add strangers
        rows = ["email,name"] + [f"reader{i}@example.org,R" for i in range(1, N // 2)]
        rows += [f"stranger{i}@example.org,S" for i in range(50)]
        crowd.write_text("\n".join(rows) + "\n", encoding="utf-8")
        os.kill(proc.pid, signal.SIGTERM)
        proc.communicate(timeout=60)
        resumed = _start(server, sample)
        _, errors = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, errors
        counts = _counts(server, sample)
    received = recorder.by_recipient()
    assert set(received) == {f"reader{i}@example.org" for i in range(1, N + 1)}
    assert set(received.values()) == {1}
    assert counts["sent"] == N
