"""Deliverability wired into the send path, through the real CLI and a real aiosmtpd: every
message of a digest and of a forward carries a VERP return path and DKIM signatures that
dkimpy verifies; a bounce to that return path suppresses the address, and the next issue
leaves it out."""

from __future__ import annotations

import mailbox
import re
from pathlib import Path

import dkim as dkimpy  # type: ignore[import-untyped]
import pytest

from mailer import verp
from mailer.suppression import Suppression
from tests.cli import error_lines, invoke
from tests.smtpd import Recorder, Server, smtp_server

DATE = "2026-11-27"
BOUNCES = "bounces@news.example.org"
SECRET = Server("", 0, Recorder()).env()["MAILER_SECRET_KEY"]


def keygen(selector: str, kind: str, folder: Path) -> tuple[Path, str]:
    result = invoke(
        "dkim", "keygen", "--selector", selector, "--kind", kind, "--domain", "example.org",
        "--out-dir", str(folder),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (path,) = folder.glob(f"{selector}*.pem")
    record = "".join(re.findall(r'"([^"]*)"', result.output))
    assert record.startswith("v=DKIM1;"), result.output
    return path, record


def dns_for(records: dict[str, str]):  # type: ignore[no-untyped-def]
    table = {f"{s}._domainkey.example.org.".encode(): r.encode() for s, r in records.items()}

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        return table.get(name)

    return lookup


@pytest.fixture
def keys(sample: Path) -> dict[str, str]:
    rsa_path, rsa_record = keygen("rsa2026", "rsa", sample / "keys")
    ed_path, ed_record = keygen("ed2026", "ed25519", sample / "keys")
    return {
        "MAILER_FROM": "news@example.org",
        "MAILER_BOUNCE_ADDRESS": BOUNCES,
        "MAILER_DKIM_SELECTOR": "rsa2026",
        "MAILER_DKIM_KEY_FILE": str(rsa_path),
        "MAILER_DKIM_ED25519_SELECTOR": "ed2026",
        "MAILER_DKIM_ED25519_KEY_FILE": str(ed_path),
        "_rsa": rsa_record,
        "_ed": ed_record,
    }


def settings_env(keys: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in keys.items() if not k.startswith("_")}


def test_a_sent_digest_has_a_tagged_return_path_and_two_dkim_signatures(
    sample: Path, keys: dict[str, str]
) -> None:
    lookup = dns_for({"rsa2026": keys["_rsa"], "ed2026": keys["_ed"]})
    with smtp_server() as server:
        result = invoke(
            "digest", "--date", DATE, "--send", "--yes", env=server.env(**settings_env(keys))
        )
        assert result.exit_code == 0, result.output
        received = server.recorder.received
    assert len(received) >= 3  # every subscriber of the sample list
    for mail in received:
        (recipient,) = mail.recipients
        tag = verp.parse(mail.sender, SECRET)
        assert tag is not None, mail.sender
        assert mail.sender.endswith("@news.example.org")
        # The long form names the recipient; the short one (a non-ASCII or long address)
        # is resolved among the campaign's addresses.
        found = tag.email or verp.resolve(tag, SECRET, [m.recipients[0] for m in received])
        assert found is not None and found.lower() == recipient.lower()
        signed = dkimpy.DKIM(mail.data)
        assert mail.data.count(b"DKIM-Signature:") == 2
        assert signed.verify(idx=0, dnsfunc=lookup)
        assert signed.verify(idx=1, dnsfunc=lookup)
        header = mail.data.split(b"\r\n\r\n", 1)[0].lower()
        assert b"list-unsubscribe-post" in header.split(b"h=", 1)[1]
        # A changed body no longer verifies.
        assert not dkimpy.verify(mail.data.replace(b"river", b"rivet", 1), dnsfunc=lookup)


def test_a_forward_is_signed_and_tagged_too(sample: Path, keys: dict[str, str]) -> None:
    lookup = dns_for({"rsa2026": keys["_rsa"], "ed2026": keys["_ed"]})
    with smtp_server() as server:
        result = invoke(
            "forward", "2026-11-27-river-path-reopens", "--to", "friend@example.net",
            "--sender", "Alice Martin <alice@example.org>", "--send",
            env=server.env(**settings_env(keys)),
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        (mail,) = server.recorder.received
    tag = verp.parse(mail.sender, SECRET)
    assert tag is not None and tag.email == "friend@example.net"
    assert dkimpy.verify(mail.data, dnsfunc=lookup)


def test_a_broken_key_file_stops_the_send_before_anything_is_frozen(
    sample: Path, keys: dict[str, str]
) -> None:
    bad = sample / "keys" / "broken.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    env = settings_env(keys) | {"MAILER_DKIM_KEY_FILE": str(bad)}
    with smtp_server() as server:
        result = invoke("digest", "--date", DATE, "--send", "--yes", env=server.env(**env))
        assert server.recorder.received == []
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert str(bad) in line
    assert "not a key" not in result.output
    assert not (sample / ".mailer" / "ledger.sqlite3").exists() or "Sending" not in result.output


def test_a_selector_without_a_key_file_is_one_line_naming_both(sample: Path) -> None:
    result = invoke("digest", "--date", DATE, env={"MAILER_DKIM_SELECTOR": "s1"})
    assert result.exit_code == 2
    (line,) = error_lines(result)
    assert "MAILER_DKIM_SELECTOR" in line and "MAILER_DKIM_KEY_FILE" in line


def test_check_verifies_the_signature_and_names_the_return_path(
    sample: Path, keys: dict[str, str]
) -> None:
    with smtp_server() as server:
        result = invoke("check", env=server.env(**settings_env(keys)))
    assert result.exit_code == 0, result.output
    assert "DKIM:" in result.output and "rsa2026" in result.output
    assert "ed2026" in result.output and "verifies" in result.output
    assert BOUNCES in result.output


def test_a_bounce_to_the_return_path_suppresses_and_the_next_issue_leaves_it_out(
    sample: Path, keys: dict[str, str]
) -> None:
    env = settings_env(keys)
    with smtp_server() as server:
        assert (
            invoke("digest", "--date", DATE, "--send", "--yes", env=server.env(**env)).exit_code
            == 0
        )
        first = {m.recipients[0].lower(): m.sender for m in server.recorder.received}
    victim = sorted(first)[0]
    return_path = first[victim]
    dsn = (
        f"Return-Path: <>\nDelivered-To: {return_path}\nTo: {return_path}\n"
        "From: MAILER-DAEMON@relay.example.net\nSubject: Undelivered Mail Returned to Sender\n"
        "Auto-Submitted: auto-replied\nMessage-ID: <dsn-1@relay.example.net>\n"
        "MIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\n\n'
        "--b1\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
        "--b1\nContent-Type: message/delivery-status\n\n"
        "Reporting-MTA: dns; relay.example.net\n\n"
        f"Final-Recipient: rfc822; {victim}\nAction: failed\nStatus: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\n\n--b1--\n"
    )
    box = mailbox.Maildir(sample / "Maildir", create=True)
    box.add(dsn.encode())
    scan = invoke("bounces", "scan", "--maildir", str(sample / "Maildir"), env=server.env(**env))
    assert scan.exit_code == 0, scan.output
    suppression = Suppression.for_lists_dir(sample / "lists")
    assert suppression.is_suppressed(victim)
    again = invoke("bounces", "scan", "--maildir", str(sample / "Maildir"), env=server.env(**env))
    assert again.exit_code == 0, again.output
    with smtp_server() as server:
        result = invoke("digest", "--date", "2026-12-04", "--days", "14", "--send", "--yes",
                        env=server.env(**env))  # fmt: skip
        assert result.exit_code == 0, result.output
        second = {m.recipients[0].lower() for m in server.recorder.received}
    assert victim not in second
    assert second == set(first) - {victim}
