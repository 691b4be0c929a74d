"""The docs are tested (as sqlite-utils does): every command has help text and is in the
README, and the README's quick start is what CI installs and runs.

The quick start's dry run itself is run by ``test_quickstart.py``."""

from __future__ import annotations

import re
import shlex
import tomllib
from typing import Any

import pytest
import typer
from typer.core import TyperGroup

from mailer.cli import app
from tests.cli import invoke
from tests.conftest import REPO
from tests.readme import README, quick_start


def _commands() -> dict[str, Any]:
    """Every command and sub-command of the app by its full name ("" is ``mailer`` itself)."""
    found: dict[str, Any] = {}  # Typer's click commands

    def walk(command: Any, path: tuple[str, ...]) -> None:
        found[" ".join(path)] = command
        if isinstance(command, TyperGroup):
            context = typer.Context(command)
            for name in command.list_commands(context):
                sub = command.get_command(context, name)
                assert sub is not None, name
                if not sub.hidden:
                    walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return found


COMMANDS = _commands()


def _full(name: str) -> str:
    return f"mailer {name}".strip()


def _section(text: str, heading: str) -> str:
    """The text under a ``## heading``, up to the next one."""
    after = text.split(f"\n{heading}\n", 1)[1]
    return after.split("\n## ", 1)[0]


def _documented() -> str:
    """Where a command is documented: the Commands table, and the lists' ``sh`` block."""
    text = README.read_text(encoding="utf-8")
    table = [
        line for line in _section(text, "## Commands").splitlines() if line.startswith("| `mailer ")
    ]
    blocks = re.findall(r"```sh\n(.+?)\n```", _section(text, "## Lists and suppression"), re.S)
    return "\n".join(table + blocks)


def _install_args(command: str) -> list[str]:
    """What ``pip install`` is asked to install, without its output and upgrade flags."""
    words = shlex.split(command)
    flags = {"-q", "--quiet", "-U", "--upgrade"}
    return [word for word in words[words.index("install") + 1 :] if word not in flags]


@pytest.mark.parametrize("name", sorted(COMMANDS), ids=_full)
def test_every_command_has_help(name: str) -> None:
    command = COMMANDS[name]
    assert (command.help or "").strip(), f"`{_full(name)}` has no help text"
    result = invoke(*name.split(), "--help")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("name", sorted(n for n in COMMANDS if n))
def test_every_command_is_in_the_readme(name: str) -> None:
    pattern = rf"\bmailer {re.escape(name)}(?![\w-])"
    assert re.search(pattern, _documented()), (
        f"`{_full(name)}` is in neither the Commands table nor the lists block of README.md"
    )


def test_ci_installs_and_tests_as_the_quick_start_says() -> None:
    install, test = quick_start()
    steps = [step.strip() for step in install.split("&&")]
    (make_venv,) = [step for step in steps if " -m venv " in step]
    (pip,) = [step for step in steps if " install " in step and "pip" in step]
    (job,) = [step for step in steps if shlex.split(step)[0].endswith("/mailer")]
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert make_venv in ci
    installs = [_install_args(line) for line in ci if " pip install " in line]
    assert _install_args(pip) in installs, (pip, installs)
    assert test in ci  # the README's test command, as written
    # The programs the quick start runs are those its install creates.
    venv = shlex.split(make_venv)[-1]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "mailer" in pyproject["project"]["scripts"]
    assert shlex.split(pip)[0].startswith(f"{venv}/bin/")
    assert shlex.split(job)[0] == f"{venv}/bin/mailer"
    assert shlex.split(test)[0] == f"{venv}/bin/pytest"


def test_the_quick_start_test_command_runs_every_test() -> None:
    _, test = quick_start()
    options = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "pytest"
    ]["ini_options"]
    assert "-m" not in shlex.split(test) and "-m" not in shlex.split(options["addopts"])
    assert any(marker.startswith("slow:") for marker in options["markers"])
