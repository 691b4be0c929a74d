"""Several senders on one PostgreSQL ledger, as an operator runs them on several machines:
three `mailer digest --send` processes share one campaign through one aiosmtpd server. One is
killed (SIGKILL, or SIGTERM) mid-run, the others finish, then one more run finishes the rest.
Nobody gets two copies; whoever the server never received is listed as unknown, at most the
killed sender's concurrency (none after SIGTERM)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli import state_counts, status_json
from tests.pg import Cluster
from tests.process import start_mailer, wait_until
from tests.smtpd import Recorder, Server, smtp_server

pytestmark = pytest.mark.slow  # real processes and a real PostgreSQL

N = 20_000
SENDERS = 3
CONCURRENCY = 4
LEASE = 2  # seconds: how long a killed sender's claims stay its own
DATE = "2026-11-27"


@pytest.fixture
def crowd(sample: Path) -> Path:
    path = sample / "lists" / "crowd.csv"
    rows = ["email,name"] + [f"reader{i}@example.org,Reader {i}" for i in range(1, N + 1)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _env(server: Server, url: str) -> dict[str, str]:
    return server.env(MAILER_LEDGER=url, MAILER_LEDGER_LEASE=str(LEASE))


def _start(server: Server, sample: Path, url: str) -> subprocess.Popen[str]:
    argv = ["digest", "--send", "--yes", "--date", DATE, "--list", "crowd"]
    argv += ["--concurrency", str(CONCURRENCY)]
    return start_mailer(*argv, cwd=sample, env=_env(server, url))


def _run(sig: signal.Signals, server: Server, recorder: Recorder, sample: Path, url: str) -> None:
    senders = [_start(server, sample, url) for _ in range(SENDERS)]
    victim = senders[0]
    wait_until(lambda: len(recorder.received) >= N // 4, victim)
    os.kill(victim.pid, sig)
    victim.communicate(timeout=120)
    for sender in senders[1:]:
        out, errors = sender.communicate(timeout=600)
        assert sender.returncode in (0, 1), (out, errors)
        assert "Traceback" not in errors
    time.sleep(LEASE + 1)  # the killed sender's claims are free again
    final = _start(server, sample, url)
    out, errors = final.communicate(timeout=600)
    assert final.returncode in (0, 1), (out, errors)
    assert "Traceback" not in errors


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_three_senders_one_killed_nobody_twice_and_the_unknown_are_listed(
    sig: signal.Signals, crowd: Path, sample: Path, postgres: Cluster
) -> None:
    url = postgres.database()
    recorder = Recorder()
    with smtp_server(recorder) as server:
        _run(sig, server, recorder, sample, url)
        received = recorder.by_recipient()
        doc = status_json("--list", "unknown", env=_env(server, url))
        counts = state_counts(env=_env(server, url))
    unknown = {str(a) for a in doc["addresses"]}
    assert max(received.values()) == 1  # nobody got two copies
    everyone = {f"reader{i}@example.org" for i in range(1, N + 1)}
    assert everyone - set(received) <= unknown  # whoever never arrived is listed
    assert len(unknown) <= CONCURRENCY  # at most the killed sender's connections
    if sig is signal.SIGTERM:
        assert unknown == set()  # a stop finishes what is in flight
    assert counts["pending"] == counts["deferred"] == counts["failed"] == 0
    assert counts["sent"] + len(unknown & set(received)) == len(received)
