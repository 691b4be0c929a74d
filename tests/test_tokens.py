"""Unsubscribe tokens: genuine ones verify; forged, altered or moved ones suppress no one."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest

from mailer.errors import TokenError
from mailer.suppression import Suppression
from mailer.tokens import (
    MAX_ADDRESS_OCTETS,
    MAX_LIST_NAME_OCTETS,
    MAX_LOWERED_ADDRESS_OCTETS,
    MAX_TOKEN_CHARS,
    make_token,
    verify_token,
)
from tests.cli import invoke
from tests.process import run_mailer as run_cli

KEY = "a-real-secret-key-for-the-tests-0123456789"
ENV = {"MAILER_SECRET_KEY": KEY}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_genuine_token_round_trips() -> None:
    token = make_token(KEY, "example", "Bob@Example.NET")
    assert verify_token(KEY, token) == ("example", "bob@example.net")
    assert verify_token(KEY, f"  {token}\n") == ("example", "bob@example.net")
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_token_signed_with_another_key_is_refused() -> None:
    forged = make_token("attacker-key", "example", "bob@example.net")
    with pytest.raises(TokenError, match="forged, altered or for another key"):
        verify_token(KEY, forged)


def test_token_moved_to_another_address_or_list_is_refused() -> None:
    mac = make_token(KEY, "example", "alice@example.org").split(".")[1]
    for payload in (b"example\nbob@example.net", b"other\nalice@example.org"):
        with pytest.raises(TokenError, match="not valid"):
            verify_token(KEY, f"{_b64(payload)}.{mac}")


@pytest.mark.parametrize(
    "alter",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # one MAC character
        lambda t: t[:-1] + chr(ord(t[-1]) + 1),  # same bytes under lax base64 (unused bits)
        lambda t: t[:3] + "!!!!" + t[3:],  # junk a lax decoder would skip
        lambda t: t.replace(".", "=."),  # padding
        lambda t: t.split(".")[0] + "." + t.split(".")[1][:20],  # truncated MAC
        lambda t: t.split(".")[0],  # no MAC at all
        lambda t: t + ".x",
        lambda t: "",
        lambda t: "x" * 5000,
    ],
)
def test_altered_tokens_are_refused(alter: object) -> None:
    token = make_token(KEY, "example", "alice@example.org")
    assert callable(alter)
    altered = alter(token)
    assert altered != token
    with pytest.raises(TokenError):
        verify_token(KEY, altered)


def test_an_empty_key_signs_and_verifies_nothing() -> None:
    with pytest.raises(TokenError, match="no secret key"):
        make_token("", "example", "a@example.com")
    with pytest.raises(TokenError, match="no secret key"):
        verify_token("", make_token(KEY, "example", "a@example.com"))


def test_lower_casing_makes_no_text_more_than_half_as_long_again() -> None:
    """The bound on tokens (and so on unsubscribe URLs) assumes this of the Unicode data."""
    assert MAX_LOWERED_ADDRESS_OCTETS == MAX_ADDRESS_OCTETS * 3 // 2
    for code in range(sys.maxunicode + 1):
        if 0xD800 <= code <= 0xDFFF:
            continue
        char = chr(code)
        assert 2 * len(char.lower().encode()) <= 3 * len(char.encode()), hex(code)


def test_no_token_is_longer_than_max_token_chars() -> None:
    widest = "İ" * 64 + "@" + "a" * 60 + "." + "b" * 60 + ".com"  # 254 octets, 318 lowered
    for name, address in [
        ("x" * MAX_LIST_NAME_OCTETS, widest),
        ("x" * MAX_LIST_NAME_OCTETS, "a" * 64 + "@" + "b" * 185 + ".com"),
        ("é" * (MAX_LIST_NAME_OCTETS // 2), widest),
    ]:
        token = make_token(KEY, name, address)
        assert len(token) <= MAX_TOKEN_CHARS
        assert verify_token(KEY, token) == (name, address.lower())


@pytest.mark.parametrize(
    ("name", "address", "message"),
    [
        ("x" * (MAX_LIST_NAME_OCTETS + 1), "a@example.com", "list name is at most 64 bytes"),
        ("é" * 33, "a@example.com", "list name is at most 64 bytes"),
        ("two\nlines", "a@example.com", "line break"),
        ("example", "a" * 250 + "@example.com", "address is at most 254 bytes"),
    ],
)
def test_make_token_refuses_what_would_make_a_longer_token(
    name: str, address: str, message: str
) -> None:
    with pytest.raises(TokenError, match=message):
        make_token(KEY, name, address)


# --- mailer unsubscribe --token -------------------------------------------------------------


def test_unsubscribe_with_a_genuine_token(sample: Path) -> None:
    token = make_token(KEY, "example", "dmitri@example.org")
    result = invoke("unsubscribe", "--token", token, env=ENV)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Unsubscribed dmitri@example.org (reason: unsubscribed)")
    suppression = Suppression.for_lists_dir(sample / "lists")
    entry = suppression.get("dmitri@example.org")
    assert entry is not None and entry.reason == "unsubscribed"
    assert "token from list 'example'" in (sample / "lists" / "suppressed.log").read_text()

    again = invoke("unsubscribe", "--token", token, env=ENV)  # a second click is harmless
    assert again.exit_code == 0
    assert "already suppressed (unsubscribed on" in again.stdout


@pytest.mark.parametrize("kind", ["forged", "moved", "garbage"])
def test_bad_token_gives_one_error_line_and_suppresses_no_one(sample: Path, kind: str) -> None:
    genuine = make_token(KEY, "example", "alice@example.org")
    token = {
        "forged": make_token("guessed-key", "example", "alice@example.org"),
        "moved": _b64(b"example\nbob@example.net") + "." + genuine.split(".")[1],
        "garbage": "not a token",
    }[kind]
    result = invoke("unsubscribe", "--token", token, env=ENV)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("Error: unsubscribe token is ")
    assert not (sample / "lists" / "suppressed.csv").exists()


def test_token_for_another_address_than_the_one_given_is_refused(sample: Path) -> None:
    token = make_token(KEY, "example", "alice@example.org")
    result = invoke("unsubscribe", "bob@example.net", "--token", token, env=ENV)
    assert result.exit_code == 2
    assert result.stderr == (
        "Error: --token: the token is not for bob@example.net; nothing changed\n"
    )
    assert not (sample / "lists" / "suppressed.csv").exists()


def test_tokens_are_refused_while_the_public_sample_key_is_set(sample: Path) -> None:
    token = make_token("sample-secret-key-change-me", "example", "alice@example.org")
    result = invoke("unsubscribe", "--token", token)
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: setting MAILER_SECRET_KEY: still the public sample")
    assert not (sample / "lists" / "suppressed.csv").exists()


def test_forged_token_in_a_real_process(sample: Path) -> None:
    (sample / ".env").write_text(f"MAILER_SECRET_KEY={KEY}\n", encoding="utf-8")
    forged = make_token("guessed-key", "example", "alice@example.org")
    result = run_cli("unsubscribe", "--token", forged, cwd=sample)
    assert result.returncode == 2
    assert result.stderr == (
        "Error: unsubscribe token is not valid (forged, altered or for another key)\n"
    )
    assert not (sample / "lists" / "suppressed.csv").exists()
    genuine = run_cli(
        "unsubscribe", "--token", make_token(KEY, "example", "alice@example.org"), cwd=sample
    )
    assert genuine.returncode == 0, genuine.stderr
    assert Suppression.for_lists_dir(sample / "lists").is_suppressed("ALICE@example.org")


def test_a_token_made_for_one_purpose_never_verifies_for_another() -> None:
    forward = make_token(KEY, "example", "bob@example.net", purpose="forward")
    assert verify_token(KEY, forward, purpose="forward") == ("example", "bob@example.net")
    with pytest.raises(TokenError):
        verify_token(KEY, forward)  # an unsubscribe check
    unsubscribe = make_token(KEY, "example", "bob@example.net")
    with pytest.raises(TokenError):
        verify_token(KEY, unsubscribe, purpose="forward")
