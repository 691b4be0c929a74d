"""Shared fixtures: a clean environment, a copy of the sample project in tmp_path."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

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
