"""Running the real CLI in process (Typer's CliRunner): never a traceback, only exit codes."""

from __future__ import annotations

import json
from typing import Any

from typer.testing import CliRunner, Result

from mailer.cli import app


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(app, list(args), env=env)
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result


def error_lines(output: str | Result) -> list[str]:
    """The ``Error:`` lines of some output, or of a result's stderr."""
    text = output.stderr if isinstance(output, Result) else output
    return [line for line in text.splitlines() if line.startswith("Error:")]


def refused(result: Result) -> str:
    """The one ``Error:`` line of a refusal that exited 2."""
    assert result.exit_code == 2, result.output
    lines = error_lines(result.output)
    assert len(lines) == 1, result.output
    return lines[0]


def status_json(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``mailer status --json ARGS``, which must succeed, as a dict."""
    result = invoke("status", "--json", *args, env=env)
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.output)
    return doc


def state_counts(*args: str, env: dict[str, str] | None = None) -> dict[str, int]:
    """How many recipients of the campaign are in each state, from ``mailer status --json``."""
    counts = status_json(*args, env=env)["counts"]
    assert isinstance(counts, dict)
    return {str(k): int(v) for k, v in counts.items()}
