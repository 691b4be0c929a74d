"""Settings: MAILER_* environment, .env, flags on top; one clear line per wrong value."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailer.errors import ConfigError
from mailer.settings import SAMPLE_SECRET_KEY, load_settings
from tests.cli import error_lines
from tests.cli import invoke as run

SECRET = "Xy7-very-distinctive-secret-9Qz-for-tests"
DATE = ["digest", "--date", "2026-11-27"]


def assert_nothing_written(folder: Path) -> None:
    previews = folder / "previews"
    assert not previews.exists() or not any(previews.iterdir())


def test_no_settings_at_all_uses_documented_sample_defaults(sample: Path) -> None:
    settings = load_settings()
    assert settings.newsletter_name == "The Sample Weekly"
    assert settings.from_address == "newsletter@example.com"
    assert settings.secret_key.get_secret_value() == SAMPLE_SECRET_KEY
    assert settings.unsubscribe_url.startswith("https://")
    assert settings.articles_dir == Path("articles")
    assert settings.previews_dir == Path("previews")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAILER_SMTP_PORT", "abc"),
        ("MAILER_SMTP_PORT", "70000"),
        ("MAILER_UNSUBSCRIBE_URL", "http://x"),
        ("MAILER_FROM", "not-an-address"),
        ("MAILER_REPLY_TO", "also not an address"),
        ("MAILER_SMTP_SECURITY", "maybe"),
        ("MAILER_NEWSLETTER_NAME", "Two\nlines"),
        ("MAILER_CLUTTER_PATTERNS", '["(unclosed"]'),
        ("MAILER_CLUTTER_PATTERNS", "not json at all"),
        ("MAILER_SECRET_KEY", ""),
    ],
)
def test_a_wrong_value_gives_one_line_naming_the_setting(
    sample: Path, name: str, value: str
) -> None:
    result = run(*DATE, env={name: value})
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert line.startswith(f"Error: setting {name}: ")
    assert_nothing_written(sample)


def test_a_secret_is_never_echoed(sample: Path) -> None:
    env = {
        "MAILER_SECRET_KEY": SECRET,
        "MAILER_SMTP_PASSWORD": SECRET + "-pw",
        "MAILER_SMTP_PORT": SECRET,  # a secret pasted into the wrong variable
    }
    result = run(*DATE, env=env)
    assert result.exit_code == 2
    assert "MAILER_SMTP_PORT" in result.output
    assert SECRET not in result.output
    with pytest.raises(ConfigError) as caught:
        load_settings(smtp_port=SECRET)
    assert SECRET not in caught.value.message
    assert SECRET not in repr(load_settings(secret_key=SECRET))


def test_settings_come_from_a_dotenv_file_in_the_working_directory(sample: Path) -> None:
    (sample / ".env").write_text(
        "MAILER_NEWSLETTER_NAME=Dotenv Gazette\nMAILER_PREVIEWS_DIR=from-dotenv\n",
        encoding="utf-8",
    )
    assert load_settings().newsletter_name == "Dotenv Gazette"
    result = run(*DATE)
    assert result.exit_code == 0, result.output
    folder = sample / "from-dotenv" / "digest-2026-11-27"
    assert (folder / "digest.txt").read_text(encoding="utf-8").startswith("DOTENV GAZETTE\n")
    assert "Dotenv Gazette: week of November 27, 2026" in result.stdout


def test_a_wrong_value_in_dotenv_names_the_setting(sample: Path) -> None:
    (sample / ".env").write_text("MAILER_SMTP_PORT=zz\n", encoding="utf-8")
    result = run(*DATE)
    assert result.exit_code == 2
    assert error_lines(result) == [
        "Error: setting MAILER_SMTP_PORT: Input should be a valid integer, unable to parse "
        "string as an integer"
    ]


def test_a_dotenv_file_that_is_not_utf8_is_a_clear_error(sample: Path) -> None:
    (sample / ".env").write_bytes(b"MAILER_NEWSLETTER_NAME=Caf\xe9 Weekly\n")
    result = run(*DATE)
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert ".env" in line and "UTF-8" in line


def test_environment_beats_dotenv_and_flags_beat_environment(
    sample: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (sample / ".env").write_text(
        "MAILER_NEWSLETTER_NAME=Dotenv Gazette\nMAILER_PREVIEWS_DIR=from-dotenv\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("MAILER_PREVIEWS_DIR", "from-env")
    assert load_settings().previews_dir == Path("from-env")
    assert load_settings(previews_dir=Path("from-flag")).previews_dir == Path("from-flag")
    assert load_settings(previews_dir=None).previews_dir == Path("from-env")  # unset flag

    result = run(*DATE, "--out", "from-flag")
    assert result.exit_code == 0, result.output
    assert (sample / "from-flag" / "digest-2026-11-27" / "digest.html").is_file()
    assert not (sample / "from-env").exists() and not (sample / "from-dotenv").exists()


def test_articles_flag_overrides_the_setting(sample: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILER_ARTICLES_DIR", "nowhere")
    assert run(*DATE).exit_code == 2
    result = run(*DATE, "--articles", "articles")
    assert result.exit_code == 0, result.output


def test_list_valued_setting_is_json(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAILER_CLUTTER_PATTERNS", r'["^Listen now$", "podcast\\b"]')
    assert load_settings().clutter_patterns == ["^Listen now$", "podcast\\b"]


# --- the secret key ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "sh0rt-Key",
        "x" * 31,
        "é" * 15 + "x",  # 16 characters, 31 bytes: the length counted is UTF-8 bytes
    ],
)
def test_a_secret_key_shorter_than_32_bytes_is_refused_without_echoing_it(
    sample: Path, key: str
) -> None:
    for command in (DATE, ["lists"], ["unsubscribe", "--token", "x.y"]):
        result = run(*command, env={"MAILER_SECRET_KEY": key})
        assert result.exit_code == 2, result.output
        (line,) = error_lines(result)
        assert line.startswith("Error: setting MAILER_SECRET_KEY: too short: use at least 32 bytes")
        assert key not in result.output and str(len(key)) not in line
    with pytest.raises(ConfigError, match="MAILER_SECRET_KEY: too short") as caught:
        load_settings(secret_key=key)
    assert key not in caught.value.message
    assert_nothing_written(sample)


@pytest.mark.parametrize("key", ["x" * 32, "é" * 16, SECRET])
def test_a_secret_key_of_32_bytes_or_more_is_accepted(key: str) -> None:
    assert load_settings(secret_key=key).secret_key.get_secret_value() == key


def test_the_sample_key_still_loads_but_is_refused_for_sending(sample: Path) -> None:
    settings = load_settings()
    assert settings.secret_key.get_secret_value() == SAMPLE_SECRET_KEY
    assert len(SAMPLE_SECRET_KEY.encode()) < 32  # exempt from the length rule, not from this:
    with pytest.raises(ConfigError, match="still the public sample key"):
        settings.require_real_secret()
    assert run(*DATE).exit_code == 0  # previews need no real key
