"""`mailer import`: articles from a feed or a web page, written as article files."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the command to ``app`` (filled in by the change that builds it)."""
