"""``mailer init``: a new newsletter folder that previews at once and sends with what it
wrote, and never overwrites anything (issue 13)."""

from __future__ import annotations

import datetime as dt
import os
import stat
import zoneinfo
from pathlib import Path

import pytest

from mailer.render import default_templates_dir
from tests.cli import invoke, refused
from tests.process import run_mailer
from tests.smtpd import smtp_server

SENDER = "Town Weekly <town@example.org>"
PUBLIC_URL = "https://news.example.org"


def _dotenv(folder: Path) -> dict[str, str]:
    """The settings lines of a .env (comments left out), unquoted."""
    values = {}
    for line in (folder / ".env").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value.strip('"')
    return values


@pytest.mark.slow
def test_init_then_a_preview_and_a_send_with_only_what_init_wrote(tmp_path: Path) -> None:
    made = run_mailer("init", "paper", "--from", SENDER, "--public-url", PUBLIC_URL, cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    folder = tmp_path / "paper"
    assert "cd paper" in made.stdout and "mailer digest" in made.stdout

    preview = run_mailer("digest", cwd=folder)
    assert preview.returncode == 0, preview.stderr
    assert "(3 articles)" in preview.stdout and preview.stderr == ""
    assert len(list((folder / "previews").rglob("*.eml"))) == 2

    with smtp_server() as server:
        where = {"MAILER_SMTP_HOST": server.host, "MAILER_SMTP_PORT": str(server.port)}
        sent = run_mailer("digest", "--send", "--yes", cwd=folder, env=where)
        assert sent.returncode == 0, sent.stdout + sent.stderr
    received = server.recorder.received
    assert sorted(r for m in received for r in m.recipients) == [
        "a.friend@example.org",
        "you@example.org",
    ]
    message = received[0].message
    assert message["From"] == SENDER
    assert message["Subject"].startswith("Town Weekly: ")
    assert f"<{PUBLIC_URL}/unsubscribe?token=" in message["List-Unsubscribe"]


def test_the_env_is_private_with_a_new_key_that_is_never_printed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first, second = invoke("init", "one"), invoke("init", "two")
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    keys = [_dotenv(tmp_path / name)["MAILER_SECRET_KEY"] for name in ("one", "two")]
    assert keys[0] != keys[1] and all(len(key) >= 43 for key in keys)
    assert keys[0] not in first.output
    mode = stat.S_IMODE(os.stat(tmp_path / "one" / ".env").st_mode)
    assert mode == 0o600
    values = _dotenv(tmp_path / "one")
    assert values["MAILER_SMTP_HOST"] == "localhost" and values["MAILER_SMTP_PORT"] == "1025"
    assert values["MAILER_SMTP_SECURITY"] == "none"
    text = (tmp_path / "one" / ".env").read_text(encoding="utf-8")
    for setting in ("# MAILER_FROM=", "# MAILER_PUBLIC_URL=", "# MAILER_SMTP_USERNAME="):
        assert setting in text
    assert "python -m aiosmtpd -n -l localhost:1025" in text


def test_init_writes_one_article_of_each_kind_dated_today_in_the_zone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for zone in ("Pacific/Kiritimati", "Etc/GMT+12"):  # UTC+14 and UTC-12: a day apart
        monkeypatch.setenv("MAILER_TIMEZONE", zone)
        result = invoke("init", zone.replace("/", "-"))
        assert result.exit_code == 0, result.output
        today = dt.datetime.now(zoneinfo.ZoneInfo(zone)).date().isoformat()
        articles = sorted(p.name for p in (tmp_path / zone.replace("/", "-")).glob("articles/*"))
        assert [name.rpartition(".")[2] for name in articles] == ["html", "txt", "md"]
        assert all(name.startswith(today) for name in articles), (zone, articles)


def test_a_preview_works_at_once_and_a_send_names_what_to_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert invoke("init", str(tmp_path)).exit_code == 0
    monkeypatch.chdir(tmp_path)
    preview = invoke("digest")
    assert preview.exit_code == 0, preview.output
    assert "(3 articles)" in preview.output and "warning" not in preview.output
    line = refused(invoke("digest", "--send", "--yes"))
    assert "MAILER_FROM" in line


def test_templates_are_copied_to_edit_and_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = invoke("init", str(tmp_path), "--templates")
    assert result.exit_code == 0, result.output
    copied = {p.relative_to(tmp_path / "templates") for p in (tmp_path / "templates").rglob("*.*")}
    shipped = {p.relative_to(default_templates_dir()) for p in default_templates_dir().rglob("*.*")}
    assert copied == {p for p in shipped if "__pycache__" not in p.parts}
    assert _dotenv(tmp_path)["MAILER_TEMPLATES_DIR"] == "templates"
    mark = "Edited by hand"
    digest = tmp_path / "templates" / "digest.txt.j2"
    digest.write_text(mark + "\n" + digest.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert invoke("digest").exit_code == 0
    texts = list((tmp_path / "previews").rglob("digest.txt"))
    assert texts and texts[0].read_text(encoding="utf-8").startswith(mark)


def test_init_never_overwrites_and_then_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    mine = tmp_path / "lists" / "readers.csv"
    mine.write_text("email\nkeep@example.org\n", encoding="utf-8")
    line = refused(invoke("init", str(tmp_path)))
    assert f"{mine}: already exists; nothing was written" in line
    assert mine.read_text(encoding="utf-8") == "email\nkeep@example.org\n"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["lists", "readers.csv"]


def test_init_refuses_a_from_that_could_inject_a_header(tmp_path: Path) -> None:
    for value in ("Town\r\nBcc: x@example.org <town@example.org>", "=?utf-8?q?Bank?= <a@b.org>"):
        line = refused(invoke("init", str(tmp_path / "paper"), "--from", value))
        assert line.startswith("Error: --from:")
    line = refused(invoke("init", str(tmp_path / "paper"), "--public-url", "http://x.org"))
    assert line.startswith("Error: --public-url:")
    assert not (tmp_path / "paper").exists()


def test_a_bare_from_address_keeps_the_newsletter_name_unset(tmp_path: Path) -> None:
    assert invoke("init", str(tmp_path), "--from", "town@example.org").exit_code == 0
    assert _dotenv(tmp_path)["MAILER_FROM"] == "town@example.org"
    assert "MAILER_NEWSLETTER_NAME" not in _dotenv(tmp_path)
