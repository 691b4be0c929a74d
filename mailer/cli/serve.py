"""`mailer serve`: the reader's web side (one-click unsubscribe, archive, forward form)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the command to ``app`` (filled in by the change that builds it)."""
