"""The first hour: help everywhere, a version, and errors that name the setting that fixes
them (issue 13, in part)."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from mailer import __version__
from mailer.cli import app
from tests.cli import invoke, refused
from tests.smtpd import closed_port, smtp_server


def commands(
    group: typer.main.TyperGroup | object, path: tuple[str, ...] = ()
) -> list[tuple[str, ...]]:
    found = [path]
    for name, command in getattr(group, "commands", {}).items():
        found += commands(command, (*path, name))
    return found


@pytest.mark.parametrize("path", commands(typer.main.get_command(app)), ids=" ".join)
def test_dash_h_is_help_everywhere(path: tuple[str, ...]) -> None:
    result = invoke(*path, "-h")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage:")


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and result.output.strip() == f"mailer {__version__}"


def _check(port: int, **extra: str) -> str:
    env = {"MAILER_SMTP_HOST": "127.0.0.1", "MAILER_SMTP_PORT": str(port), **extra}
    result = invoke("check", env=env)
    assert result.exit_code == 3, result.output
    return result.output


def test_a_local_server_without_starttls_hints_security_none() -> None:
    with smtp_server(tls_context=None) as server:
        output = _check(server.port)
    assert "does not offer STARTTLS" in output
    assert "Hint: a local test server: set MAILER_SMTP_SECURITY=none" in output


def test_tls_spoken_to_a_plain_server_says_so_and_names_the_setting() -> None:
    with smtp_server() as server:
        output = _check(server.port, MAILER_SMTP_SECURITY="tls", MAILER_SMTP_TIMEOUT="5")
    assert "does not speak TLS on this port" in output
    assert "MAILER_SMTP_SECURITY" in output


def test_nothing_listening_names_the_host_and_port_settings() -> None:
    with closed_port() as port:
        output = _check(port)
    assert "MAILER_SMTP_HOST" in output and "MAILER_SMTP_PORT" in output


def test_a_missing_list_names_the_flag_and_the_setting(sample: Path) -> None:
    result = invoke("digest", "--date", "2026-11-27", "--list", "nosuch")
    line = refused(result)
    assert "lists/nosuch.csv: list not found" in line
    assert "--list" in result.output and "MAILER_DEFAULT_LIST" in result.output


def test_a_first_send_with_limit_exits_0_and_says_how_many_remain(sample: Path) -> None:
    rows = ["email,name"] + [f"reader{i}@example.org,R" for i in range(1, 6)]
    (sample / "lists" / "five.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with smtp_server() as server:
        env = server.env(MAILER_TIMEZONE="UTC")
        args = ("digest", "--send", "--date", "2026-11-27", "--list", "five")
        first = invoke(*args, "--limit", "1", env=env)
        assert first.exit_code == 0, first.output
        assert "4 recipient(s) still to send" in first.output
        rest = invoke(*args, env=env)
        assert rest.exit_code == 0 and "still to send" not in rest.output
    assert len(server.recorder.received) == 5
