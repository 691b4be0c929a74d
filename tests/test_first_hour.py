"""The first hour (issue 13): help everywhere, quickly, with one kind of placeholder; a
version; errors that name the setting that fixes them; MAILER_FROM with a name; safe
sends; and a finished campaign that says so."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import typer

from mailer import __version__
from mailer.cli import app
from mailer.settings import SAMPLE_UNSUBSCRIBE_URL, load_settings
from tests.cli import invoke, refused, state_counts
from tests.conftest import REPO
from tests.process import environ
from tests.readme import README
from tests.smtpd import TEST_FROM, TEST_UNSUBSCRIBE_URL, closed_port, smtp_server


def commands(group: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command and group, with its path (the root's is ``()``)."""
    found = [(path, group)]
    if hasattr(group, "list_commands"):
        context = typer.Context(group, info_name="mailer")
        for name in group.list_commands(context):
            found += commands(group.get_command(context, name), (*path, name))
    return found


ALL = commands(typer.main.get_command(app))
PATHS = [path for path, _ in ALL]


@pytest.mark.parametrize("path", PATHS, ids=" ".join)
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
        rest = invoke(*args, "--yes", env=env)
        assert rest.exit_code == 0 and "still to send" not in rest.output
    assert len(server.recorder.received) == 5


# --- start-up --------------------------------------------------------------------------

# Not loaded by `import mailer.cli` (so not by `mailer --help` either): the library and the
# heavy libraries behind it come with the command that uses them.
HEAVY = (
    "premailer",
    "jinja2",
    "markdown_it",
    "pydantic",
    "pydantic_settings",
    "email_validator",
    "trafilatura",
    "dateparser",
    "starlette",
    "uvicorn",
    "httpx",
    "cryptography",
    "feedparser",
    "aiosmtplib",
    "rich",
    "filelock",
    "asyncio",
    "mailer.settings",
    "mailer.ledger",
    "mailer.campaign",
    "mailer.render",
    "mailer.articles",
)


def _loaded_by(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    modules = set(result.stdout.split())
    return [name for name in HEAVY if name in modules]


@pytest.mark.slow
def test_the_cli_and_its_help_load_no_heavy_module() -> None:
    assert _loaded_by("import mailer.cli") == []
    for args in (["--help"], ["digest", "--help"], ["init", "--help"], ["lists", "-h"]):
        run = f"from mailer.cli import app\ntry:\n    app({args!r})\nexcept SystemExit:\n    pass"
        # Typer itself parses a command's values with pydantic (not the root's --help).
        allowed = ["pydantic"] if args != ["--help"] else []
        assert _loaded_by(run) == allowed, args


def test_the_forward_limits_in_the_help_are_the_library_s() -> None:
    from mailer import forward as library
    from mailer.cli import forward as command

    assert (command.MAX_FRIENDS, command.MAX_NOTE_CHARS) == (
        library.MAX_FRIENDS,
        library.MAX_NOTE_CHARS,
    )


# --- placeholders ----------------------------------------------------------------------

PLACEHOLDER = re.compile(r"[A-Z][A-Z_]*")


def _takes_a_value(param: Any) -> bool:
    if isinstance(param, typer.core.TyperArgument):
        return True
    return not (param.is_flag or param.count or param.name == "help")


@pytest.mark.parametrize(("path", "command"), ALL, ids=[" ".join(p) for p in PATHS])
def test_every_placeholder_is_one_upper_case_word(path: tuple[str, ...], command: Any) -> None:
    for param in command.params:
        if _takes_a_value(param):
            assert param.metavar is not None, f"{' '.join(path)}: {param.name} has no metavar"
            assert PLACEHOLDER.fullmatch(param.metavar), (path, param.name, param.metavar)
    shown = invoke(*path, "-h").output
    for form in ("<str>", "<int", "<float>", "<path>", "<text>", "|", "{"):
        assert form not in shown, (path, form)


def _shell_blocks() -> list[str]:
    text = README.read_text(encoding="utf-8")
    return re.findall(r"```sh\n(.*?)```", text, re.DOTALL)


def test_the_readme_has_no_pipe_in_a_shell_block() -> None:
    blocks = _shell_blocks()
    assert blocks
    for block in blocks:
        assert "|" not in block, block


def test_the_readme_commands_use_the_help_s_placeholders() -> None:
    text = README.read_text(encoding="utf-8")
    table = text.split("## Commands", 1)[1].split("###", 1)[0]
    usages = [line.split("`")[1] for line in table.splitlines() if line.startswith("| `mailer")]
    lists = text.split("## Lists and suppression", 1)[1]
    usages += [line.split("#")[0] for line in _shell_blocks() if line.startswith("mailer ")]
    usages += [line.split("#")[0] for line in lists.splitlines() if line.startswith("mailer ")]
    used = {word for usage in usages for word in re.findall(r"\b[A-Z][A-Z_]+\b", usage)}
    known = {param.metavar for _, command in ALL for param in command.params if param.metavar}
    assert used <= known, used - known
    for usage in usages:
        bare = re.sub(r"\"[^\"]*\"|'[^']*'", "", usage)  # a quoted value ("Name <address>")
        for form in ("<", "{", "|"):
            assert form not in bare, usage


# --- MAILER_FROM with a name -------------------------------------------------------------


def test_mailer_from_takes_a_name_which_names_the_newsletter(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAILER_FROM", "The Weekly <news@example.org>")
    settings = load_settings()
    assert (settings.from_address, settings.newsletter_name) == ("news@example.org", "The Weekly")
    monkeypatch.setenv("MAILER_NEWSLETTER_NAME", "Another Name")
    settings = load_settings()
    assert (settings.from_address, settings.newsletter_name) == ("news@example.org", "Another Name")
    monkeypatch.setenv("MAILER_FROM", '"Doe, Jane" <jane@example.org>')
    monkeypatch.delenv("MAILER_NEWSLETTER_NAME")
    assert load_settings().newsletter_name == "Doe, Jane"
    monkeypatch.setenv("MAILER_FROM", "jane@example.org")
    assert load_settings().newsletter_name == "The Sample Weekly"


@pytest.mark.parametrize(
    "value",
    [
        "The Weekly\r\nBcc: everyone@example.org <news@example.org>",
        "The\x07Weekly <news@example.org>",
        "=?utf-8?q?The=0AWeekly?= <news@example.org>",
        "=?utf-8?q?Your_Bank?= <news@example.org>",
        "The Weekly <news@example.org",
        "The <Weekly> <news@example.org>",
        "The Weekly\u202e <news@example.org>",
        "The Weekly <news@example.org>\r\nBcc: x@example.org",
    ],
)
def test_a_mailer_from_that_could_inject_a_header_is_refused(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILER_FROM", value)
    result = invoke("digest", "--date", "2026-11-27")
    line = refused(result)
    assert line.startswith("Error: setting MAILER_FROM:")
    assert "\r" not in result.output and "Bcc" not in line


def test_the_name_from_mailer_from_is_in_the_from_header(sample: Path) -> None:
    with smtp_server() as server:
        env = server.env(MAILER_FROM="Town Weekly <town@example.org>")
        result = invoke("digest", "--send", "--date", "2026-11-27", "--limit", "1", env=env)
        assert result.exit_code == 0, result.output
    message = server.recorder.received[0].message
    assert message["From"] == "Town Weekly <town@example.org>"
    assert message["Subject"].startswith("Town Weekly: ")


# --- safe sends --------------------------------------------------------------------------


def _send(*extra: str, env: dict[str, str]) -> Any:
    return invoke("digest", "--send", "--date", "2026-11-27", *extra, env=env)


def test_send_refuses_the_sample_from_address(sample: Path) -> None:
    with smtp_server() as server:
        env = server.env()
        del env["MAILER_FROM"]
        line = refused(_send("--yes", env=env))
    assert "MAILER_FROM" in line and "newsletter@example.com" in line
    assert server.recorder.received == []


def test_send_refuses_the_sample_unsubscribe_link(sample: Path) -> None:
    with smtp_server() as server:
        env = server.env()
        del env["MAILER_UNSUBSCRIBE_URL"], env["MAILER_PUBLIC_URL"]
        result = _send("--yes", env=env)
        line = refused(result)
        assert "MAILER_UNSUBSCRIBE_URL" in line and SAMPLE_UNSUBSCRIBE_URL in line
        assert "Hint: set MAILER_PUBLIC_URL" in result.output
        # MAILER_PUBLIC_URL alone is enough: the links go to <it>/unsubscribe.
        env["MAILER_PUBLIC_URL"] = "https://news.example.org"
        assert _send("--yes", "--limit", "1", env=env).exit_code == 0
    assert len(server.recorder.received) == 1


def test_forward_send_refuses_the_sample_settings(sample: Path) -> None:
    with smtp_server() as server:
        env = server.env()
        del env["MAILER_FROM"]
        args = ("2026-11-27-river-path-reopens", "--to", "friend@example.net")
        result = invoke("forward", *args, "--sender", "ann@example.org", "--send", env=env)
        assert "MAILER_FROM" in refused(result)
    assert server.recorder.received == []


def test_without_a_terminal_a_send_to_many_needs_yes_and_freezes_nothing(sample: Path) -> None:
    with smtp_server() as server:
        env = server.env()
        result = _send(env=env)
        line = refused(result)
        assert "add --yes" in line and "recipients" in line
        assert "nothing was sent" in result.output
        assert invoke("status", "--all", env=env).output.count("example") == 0
        one = _send("--limit", "1", env=env)  # one recipient: no question to ask
        assert one.exit_code == 0, one.output
    assert len(server.recorder.received) == 1


# --- a finished campaign -----------------------------------------------------------------


def test_a_finished_campaign_run_again_says_so_with_its_counts(sample: Path) -> None:
    with smtp_server() as server:
        env = server.env()
        first = _send("--yes", env=env)
        assert first.exit_code == 0, first.output
        again = _send("--yes", env=env)
    assert again.exit_code == 0, again.output
    sent = state_counts(env=env)["sent"]
    assert f"it was already sent to everyone ({sent} sent" in again.output
    assert "Sending" not in again.output and "summary" not in again.output
    assert len(server.recorder.received) == sent


def test_the_test_server_env_is_not_the_sample() -> None:
    assert TEST_FROM.rpartition("@")[2] != "example.com"
    assert TEST_UNSUBSCRIBE_URL != SAMPLE_UNSUBSCRIBE_URL


def _answer_on_a_terminal(folder: Path, env: dict[str, str], answer: bytes) -> tuple[int, str]:
    """``digest --send`` with a pseudo-terminal as stdin and stdout; ``answer`` typed at the
    question. Its exit code and what the terminal showed."""
    primary, secondary = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailer", "digest", "--send", "--date", "2026-11-27"],
        cwd=folder,
        env=environ(folder, env),
        stdin=secondary,
        stdout=secondary,
        stderr=subprocess.PIPE,
    )
    os.close(secondary)
    shown = b""
    try:
        deadline = time.monotonic() + 60
        while b"[y/N] " not in shown:
            assert time.monotonic() < deadline, shown
            ready, _, _ = select.select([primary], [], [], 1)
            if ready:
                shown += os.read(primary, 4096)
        os.write(primary, answer)
        while True:
            ready, _, _ = select.select([primary], [], [], 1)
            if ready:
                try:
                    chunk = os.read(primary, 4096)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=60)
    finally:
        os.close(primary)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    return code, shown.decode("utf-8", "replace")


@pytest.mark.slow
def test_on_a_terminal_a_send_asks_first_and_no_sends_nothing(sample: Path) -> None:
    with smtp_server() as server:
        env = server.env()
        code, shown = _answer_on_a_terminal(sample, env, b"n\n")
        assert code == 0, shown
        question = re.search(r"Send '(.+)' to (\d+) recipients of example\? \[y/N\] ", shown)
        assert question, shown
        assert "Nothing sent." in shown
        assert server.recorder.received == []
        code, shown = _answer_on_a_terminal(sample, env, b"y\n")
        assert code == 0, shown
    assert len(server.recorder.received) == int(question.group(2))
    assert server.recorder.received[0].message["Subject"] == question.group(1)
