"""`mailer archive build`: the issue archive as pages, served or written as static files."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the command to ``app`` (filled in by the change that builds it)."""
