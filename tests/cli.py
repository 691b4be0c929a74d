"""Running the real CLI in process (Typer's CliRunner): never a traceback, only exit codes."""

from __future__ import annotations

from typer.testing import CliRunner, Result

from mailer.cli import app


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(app, list(args), env=env)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result
