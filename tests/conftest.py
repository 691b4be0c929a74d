"""Shared fixtures: a clean environment, a copy of the sample project in tmp_path.

Shared helpers live beside this file: ``cli`` (the CLI in process), ``process`` (the CLI in
a child process), ``smtpd`` (real SMTP servers), ``mail`` (reading messages back), ``files``
and ``readme``. Test files import from those, never from one another.

Tests that start real processes, SIGKILL them or take seconds are marked ``slow``. Plain
``pytest`` runs them all (CI does); ``pytest -m "not slow"`` is the quick local loop.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.pg import Cluster, cluster

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No MAILER_* from the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("MAILER_"):
            monkeypatch.delenv(key)
    yield


@pytest.fixture
def sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the bundled sample (articles and lists), as the working directory."""
    shutil.copytree(REPO / "articles", tmp_path / "articles")
    shutil.copytree(REPO / "lists", tmp_path / "lists")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def postgres() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster (tests/pg.py), one per test module that asks."""
    with cluster() as found:
        yield found


@pytest.fixture
def url(postgres: Cluster) -> str:
    """A new, empty database on it: what MAILER_LEDGER takes."""
    return postgres.database()
