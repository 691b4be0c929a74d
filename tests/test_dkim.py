"""DKIM: our signatures verified by an independent implementation (dkimpy), tampering
detected, keys loaded and generated safely."""

from __future__ import annotations

import datetime as dt
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path

import dkim as dkimpy
import pytest
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from mailer.articles import load_articles
from mailer.cli.bounces import register
from mailer.digest import build_digest
from mailer.dkim import (
    OVERSIGNED,
    Signer,
    SigningKey,
    keygen,
    load_key,
    read_key,
    relaxed_body,
    relaxed_header,
    self_check,
    split_message,
)
from mailer.errors import ConfigError
from mailer.messages import Composer, Envelope
from mailer.models import Recipient
from mailer.render import make_environment, render_digest
from mailer.tokens import make_token
from tests.conftest import REPO

DOMAIN = "news.example.org"
MESSAGE = (
    b"From: The Sample Weekly <news@news.example.org>\r\n"
    b"To: Alice <alice@example.com>\r\n"
    b"Subject: The Sample Weekly: November 27, 2026\r\n"
    b"Date: Fri, 27 Nov 2026 08:00:00 +0000\r\n"
    b"Message-ID: <abc.123@news.example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: text/plain; charset="utf-8"\r\n'
    b"List-Id: The Sample Weekly <weekly.news.example.org>\r\n"
    b"List-Unsubscribe: <https://news.example.org/unsubscribe?token=t0k3n>,\r\n"
    b" <mailto:unsubscribe@news.example.org?subject=unsubscribe%20t0k3n>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"\r\n"
    b"Hello Alice,\r\n\r\nThis week's issue.  With  spaces \t and a tab.\r\n\r\n\r\n"
)


def pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return load_key("rsa2026", pem(key), source="test")


@pytest.fixture(scope="module")
def ed_key() -> SigningKey:
    return load_key("ed2026", pem(ed25519.Ed25519PrivateKey.generate()), source="test")


def dns_for(*keys: SigningKey, domain: str = DOMAIN) -> Callable[..., bytes | None]:
    """A ``dnsfunc`` for dkimpy that answers with the test keys' TXT records."""
    records = {f"{k.selector}._domainkey.{domain}.".encode(): k.txt_value().encode() for k in keys}

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    return lookup


def verifies(message: bytes, *keys: SigningKey, index: int = 0) -> bool:
    checker = dkimpy.DKIM(message)
    try:
        return bool(checker.verify(idx=index, dnsfunc=dns_for(*keys)))
    except dkimpy.DKIMException:  # a body hash mismatch is raised, not returned
        return False


def signature_tags(signed: bytes, index: int = 0) -> dict[str, str]:
    fields, _ = split_message(signed)
    raw = [r for n, r in fields if n == "dkim-signature"][index]
    value = raw.partition(b":")[2].decode().replace("\r\n", "")
    tags = (part.strip().partition("=") for part in value.split(";") if part.strip())
    return {name: "".join(v.split()) for name, _, v in tags}


# --- signatures that verify ----------------------------------------------------------------


def test_an_rsa_signature_verifies_with_dkimpy(rsa_key: SigningKey) -> None:
    signed = Signer(DOMAIN, [rsa_key]).sign(MESSAGE)
    assert signed.endswith(MESSAGE)
    assert dkimpy.verify(signed, dnsfunc=dns_for(rsa_key))


def test_an_ed25519_signature_verifies_with_dkimpy(ed_key: SigningKey) -> None:
    signed = Signer(DOMAIN, [ed_key]).sign(MESSAGE)
    assert signature_tags(signed)["a"] == "ed25519-sha256"
    assert dkimpy.verify(signed, dnsfunc=dns_for(ed_key))


def test_both_keys_give_two_signatures_and_both_verify(
    rsa_key: SigningKey, ed_key: SigningKey
) -> None:
    signed = Signer(DOMAIN, [rsa_key, ed_key]).sign(MESSAGE)
    assert signed.count(b"DKIM-Signature:") == 2
    assert [signature_tags(signed, i)["a"] for i in (0, 1)] == ["rsa-sha256", "ed25519-sha256"]
    assert verifies(signed, rsa_key, ed_key, index=0)
    assert verifies(signed, rsa_key, ed_key, index=1)


def test_the_signature_covers_the_list_headers_and_oversigns(rsa_key: SigningKey) -> None:
    tags = signature_tags(Signer(DOMAIN, [rsa_key], clock=lambda: 1_800_000_000).sign(MESSAGE))
    assert tags["c"] == "relaxed/relaxed"
    assert tags["d"] == DOMAIN
    assert tags["s"] == "rsa2026"
    assert tags["t"] == "1800000000"
    signed = tags["h"].split(":")
    for name in ("from", "to", "subject", "date", "message-id", "mime-version", "content-type"):
        assert signed.count(name) == 2, name  # present once, listed twice
    for name in ("list-id", "list-unsubscribe", "list-unsubscribe-post"):
        assert signed.count(name) == 2, name
    assert signed.count("reply-to") == 1  # absent: listed once, so none can be added
    assert set(signed) <= set(OVERSIGNED) | {"sender", "in-reply-to", "references"}


def test_a_composed_digest_verifies_and_a_forward_without_list_headers_too(
    rsa_key: SigningKey, ed_key: SigningKey
) -> None:
    articles = load_articles(REPO / "articles")
    digest = build_digest(
        articles, newsletter="The Sample Weekly", issue_date=dt.date(2026, 11, 27)
    )
    rendered = render_digest(
        digest,
        env=make_environment(None),
        newsletter={"name": "The Sample Weekly", "from_address": f"news@{DOMAIN}"},
        extra_fields=["city"],
    )
    composer = Composer(
        rendered,
        Envelope(
            from_name="The Sample Weekly",
            from_address=f"news@{DOMAIN}",
            list_id=f"weekly.{DOMAIN}",
            unsubscribe_url=f"https://{DOMAIN}/unsubscribe",
        ),
        unsubscribe_token=lambda r: make_token("s" * 32, "weekly", r.email),
        campaign_key="weekly 2026-11-27",
    )
    signer = Signer(DOMAIN, [rsa_key, ed_key])
    for person in (
        Recipient(email="alice@example.com", name="Alice", fields={"city": "Zürich"}),
        Recipient(email="jörg@bücher.example", name="Jörg Müller-Lüdenscheidt " * 4),
    ):
        signed = signer.sign(composer.compose(person, 1).data)
        assert verifies(signed, rsa_key, ed_key, index=0)
        assert verifies(signed, rsa_key, ed_key, index=1)
        assert "list-unsubscribe-post" in signature_tags(signed)["h"]


def test_long_folded_headers_and_8bit_utf8_headers_and_bodies(rsa_key: SigningKey) -> None:
    subject = "Ünïcödé subject " + "with many words " * 20
    message = (
        b"From: =?utf-8?q?J=C3=B6rg?= <news@news.example.org>\r\n"
        b"To: J\xc3\xb6rg <j\xc3\xb6rg@b\xc3\xbccher.example>\r\n"
        + b"Subject: "
        + "\r\n\t".join(subject[i : i + 60] for i in range(0, len(subject), 60)).encode()
        + b"\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        b"\r\nGr\xc3\xbc\xc3\x9fe aus Z\xc3\xbcrich \xe2\x80\x94 \xf0\x9f\x93\xb0\r\n"
    )
    signed = Signer(DOMAIN, [rsa_key]).sign(message)
    assert verifies(signed, rsa_key)
    head = signed[: signed.index(b"From:")]
    assert max(len(line) for line in head.split(b"\r\n")) <= 78  # our own header is folded


def test_bare_line_feeds_become_crlf_and_still_verify(ed_key: SigningKey) -> None:
    signed = Signer(DOMAIN, [ed_key]).sign(MESSAGE.replace(b"\r\n", b"\n"))
    assert b"\n" not in signed.replace(b"\r\n", b"")
    assert verifies(signed, ed_key)


# --- tampering ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda m: m.replace(b"This week's", b"This weeks"), id="body byte"),
        pytest.param(lambda m: m + b"P.S. appended\r\n", id="body line added"),
        pytest.param(lambda m: m.replace(b"November 27", b"November 28"), id="signed header"),
        pytest.param(lambda m: m.replace(b"token=t0k3n>", b"token=evil>"), id="list-unsubscribe"),
        pytest.param(
            lambda m: m.replace(b"\r\n\r\n", b"\r\nFrom: Mallory <m@evil.example>\r\n\r\n", 1),
            id="a second From added",
        ),
        pytest.param(
            lambda m: m.replace(b"\r\n\r\n", b"\r\nReply-To: m@evil.example\r\n\r\n", 1),
            id="a Reply-To added",
        ),
        pytest.param(
            lambda m: m.replace(
                b"\r\n\r\n", b"\r\nList-Unsubscribe: <https://evil.example/u>\r\n\r\n", 1
            ),
            id="a second List-Unsubscribe added",
        ),
    ],
)
def test_a_message_changed_after_signing_fails(
    rsa_key: SigningKey, ed_key: SigningKey, tamper: Callable[[bytes], bytes]
) -> None:
    signed = Signer(DOMAIN, [rsa_key, ed_key]).sign(MESSAGE)
    assert verifies(signed, rsa_key, ed_key, index=0)
    changed = tamper(signed)
    assert changed != signed
    assert not verifies(changed, rsa_key, ed_key, index=0)
    assert not verifies(changed, rsa_key, ed_key, index=1)


def test_whitespace_changes_relaxed_canonicalisation_forgives(rsa_key: SigningKey) -> None:
    signed = Signer(DOMAIN, [rsa_key]).sign(MESSAGE)
    refolded = signed.replace(b"Subject: The Sample", b"Subject:   The\r\n  Sample")
    assert verifies(refolded.replace(b"a tab.\r\n", b"a tab.   \r\n\r\n"), rsa_key)


def test_relaxed_canonicalisation_by_the_rfc_examples() -> None:
    # RFC 6376 §3.4.5
    fields, body = split_message(b"A: X\r\nB : Y\t\r\n\tZ  \r\n\r\n C \r\nD \t E\r\n\r\n\r\n")
    assert [relaxed_header(n, r) for n, r in fields] == [b"a:X\r\n", b"b:Y Z\r\n"]
    assert relaxed_body(body) == b" C\r\nD E\r\n"
    assert relaxed_body(b"") == b""
    assert relaxed_body(b"\r\n\r\n") == b""
    assert relaxed_body(b"no final line break") == b"no final line break\r\n"


# --- keys ----------------------------------------------------------------------------------------


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_key_errors_are_one_line_naming_the_file_without_key_material(tmp_path: Path) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cases = {
        _write(tmp_path / "small.pem", pem(small)): "1024 bits",
        _write(tmp_path / "ec.pem", pem(ec.generate_private_key(ec.SECP256R1()))): "RSA",
        _write(tmp_path / "junk.pem", b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n"): "not a PEM",
        _write(
            tmp_path / "public.pem",
            small.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        ): "not a PEM",
        _write(
            tmp_path / "locked.pem",
            small.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"pw"),
            ),
        ): "encrypted",
        tmp_path / "missing.pem": "cannot read",
        tmp_path: "cannot read",
    }
    for path, words in cases.items():
        with pytest.raises(ConfigError) as caught:
            read_key("sel", path)
        message = caught.value.message
        assert str(path) in message and words in message, message
        assert "\n" not in message and "c2VjcmV0" not in message and "BEGIN" not in message


def test_bad_selectors_and_domains_are_refused(rsa_key: SigningKey) -> None:
    with pytest.raises(ConfigError, match="selector"):
        load_key("bad selector", b"", source="x")
    with pytest.raises(ConfigError, match="domain"):
        Signer("not a domain", [rsa_key])
    with pytest.raises(ConfigError, match="selector of its own"):
        Signer(DOMAIN, [rsa_key, SigningKey("rsa2026", rsa_key.key)])


def test_keygen_writes_a_private_key_0600_never_overwrites_and_prints_the_record(
    tmp_path: Path,
) -> None:
    made = keygen("mail2026", "rsa", tmp_path / "keys", "News.Example.org")
    assert stat.S_IMODE(os.stat(made.path).st_mode) == 0o600
    assert made.record.startswith(
        'mail2026._domainkey.news.example.org. IN TXT "v=DKIM1; k=rsa; p='
    )
    strings = made.record.split(" TXT ")[1].split('" "')
    assert len(strings) == 2 and all(len(s.strip('"')) <= 255 for s in strings)
    loaded = read_key("mail2026", made.path)
    signed = Signer("news.example.org", [loaded]).sign(MESSAGE)
    assert verifies(signed, loaded)
    before = made.path.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        keygen("mail2026", "ed25519", tmp_path / "keys", "news.example.org")
    assert made.path.read_bytes() == before
    ed = keygen("ed2026", "ed25519", tmp_path / "keys", "news.example.org")
    assert ed.record.endswith('"') and "k=ed25519" in ed.record
    self_check(Signer("news.example.org", [loaded, read_key("ed2026", ed.path)]))


def test_the_keygen_command_prints_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAILER_FROM", "news@news.example.org")
    app = typer.Typer()
    register(app)
    result = CliRunner().invoke(app, ["dkim", "keygen", "--selector", "s1", "--kind", "ed25519"])
    assert result.exit_code == 0, result.output
    assert 's1._domainkey.news.example.org. IN TXT "v=DKIM1; k=ed25519; p=' in result.output
    assert (tmp_path / ".mailer" / "dkim" / "s1.dkim.pem").is_file()
    again = CliRunner().invoke(app, ["dkim", "keygen", "--selector", "s1"])
    assert again.exit_code == 2
    assert "already exists" in again.output and "Traceback" not in again.output


def reference_relaxed_body(body: bytes) -> bytes:
    """RFC 6376 §3.4.4 spelled out line by line, to hold the fast version to."""
    lines = body.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = [re.sub(rb"[ \t]+", b" ", line).rstrip(b" ") for line in lines]
    while out and out[-1] == b"":
        out.pop()
    return b"".join(line + b"\r\n" for line in out)


@given(st.lists(st.sampled_from([b"a", b" ", b"\t", b"\r\n", b"  ", b"=20", b"\xc3\xa9"])))
def test_the_fast_relaxed_body_is_the_rfc_one(pieces: list[bytes]) -> None:
    body = b"".join(pieces)
    assert relaxed_body(body) == reference_relaxed_body(body)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from([b"word", b" ", b"\t", b"\r\n", b"  ", b"\xe2\x80\x94"])))
def test_any_body_verifies_with_dkimpy(ed_key: SigningKey, pieces: list[bytes]) -> None:
    message = MESSAGE.split(b"\r\n\r\n")[0] + b"\r\n\r\n" + b"".join(pieces)
    if not message.endswith(b"\r\n"):
        message += b"\r\n"
    assert verifies(Signer(DOMAIN, [ed_key]).sign(message), ed_key)
