"""Bounce mail: a corpus of DSNs (Postfix, Exim, Gmail, Microsoft 365), qmail and
auto-replies, read from Maildir and mbox, acted on once; and a VERP round trip through a
real SMTP server."""

from __future__ import annotations

import json
import mailbox
import os
import shutil
from pathlib import Path

import dkim as dkimpy
import pytest
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from typer.testing import CliRunner

from mailer.bounces import (
    MAX_MESSAGE,
    BounceReader,
    LedgerResolver,
    MemoryStore,
    Reading,
    SqliteStore,
    read_maildir,
    read_mbox,
    scan,
)
from mailer.cli.bounces import register
from mailer.delivery import Delivery
from mailer.dkim import Signer, load_key
from mailer.errors import InputError
from mailer.ledger import Ledger
from mailer.models import DeliveryPolicy, Outgoing, Recipient, SendResult, SMTPConfig, Status
from mailer.suppression import Suppression
from mailer.transports.smtp import SMTPTransport
from mailer.verp import return_path
from tests.dsn import (
    CAROL,
    CORPUS,
    DAVE_MID,
    EXPECTED,
    HARD,
    SECRET,
    Ledgerish,
    corpus,
    dsn,
    make_maildir,
    make_mbox,
    reader,
    scan_with,
)
from tests.smtpd import smtp_server


def test_the_corpus_is_complete() -> None:
    assert {p.name for p in corpus()} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_message_is_classified_right(name: str) -> None:
    verdict, kind, address, campaign, how = EXPECTED[name]
    reading = reader().read((CORPUS / name).read_bytes())
    assert reading.verdict == verdict, reading
    if kind is None:
        assert reading.bounces == ()
        return
    (bounce,) = reading.bounces
    assert (bounce.kind, bounce.email, bounce.campaign, bounce.matched_by) == (
        kind,
        address,
        campaign,
        how,
    )
    assert bounce.source_id == reading.source_id
    assert "\n" not in bounce.diagnostic and len(bounce.diagnostic) <= 300


def test_status_codes_and_diagnostics_come_from_the_report() -> None:
    readings = {p.name: reader().read(p.read_bytes()) for p in corpus()}
    assert readings["postfix-hard.eml"].bounces[0].status == "5.1.1"
    assert "User unknown" in readings["postfix-hard.eml"].bounces[0].diagnostic
    assert readings["postfix-delayed.eml"].bounces[0].status == "4.4.1"
    assert readings["m365-hard.eml"].bounces[0].status == "5.1.10"
    assert readings["gmail-policy.eml"].bounces[0].status == "5.7.26"
    assert readings["gmail-hard.eml"].bounces[0].message_id == DAVE_MID
    assert "victim@example.com" in readings["postfix-unmatched.eml"].note


def test_without_a_ledger_only_long_tags_match() -> None:
    alone = BounceReader(SECRET)
    assert alone.read((CORPUS / "postfix-hard.eml").read_bytes()).verdict == "bounce"
    assert alone.read((CORPUS / "exim-hard.eml").read_bytes()).verdict == "unmatched"
    assert alone.read((CORPUS / "gmail-hard.eml").read_bytes()).verdict == "unmatched"


def test_a_tag_signed_with_another_key_matches_nothing() -> None:
    foreign = BounceReader("another-secret", Ledgerish())
    for name in ("postfix-hard.eml", "m365-hard.eml", "qmail-hard.eml"):
        assert foreign.read((CORPUS / name).read_bytes()).verdict == "unmatched"


def test_garbage_and_huge_messages_are_read_within_bounds(
    capfd: pytest.CaptureFixture[str],
) -> None:
    for raw in (b"", b"\x00\xff" * 1000, b"Content-Type: multipart/report\r\n\r\n--", b":\r\n"):
        assert reader().read(raw).verdict == "other"
    # An 8-bit From header makes one of flufl.bounce's detectors raise: no traceback.
    tripping = b"From: \xff\xfe <x@example.com>\r\nSubject: hi\r\n\r\nbody\r\n"
    reading = reader().read(tripping)
    assert reading.verdict == "other" and "flufl.bounce" in reading.note
    assert capfd.readouterr() == ("", "")
    huge = (CORPUS / "postfix-hard.eml").read_bytes() + b"x" * (3 * MAX_MESSAGE)
    assert reader().read(huge).bounces[0].email == "alice@example.com"


def test_maildir_and_mbox_scans_agree_and_suppress_the_hard_bounces(tmp_path: Path) -> None:
    maildir = make_maildir(tmp_path / "Maildir", corpus())
    mbox = make_mbox(tmp_path / "bounces.mbox", corpus())
    with SqliteStore(tmp_path / "a" / "bounces.sqlite3") as store:
        from_maildir, suppressed = scan_with(read_maildir(maildir), tmp_path / "a", store)
    with SqliteStore(tmp_path / "b" / "bounces.sqlite3") as store:
        from_mbox, _ = scan_with(read_mbox(mbox), tmp_path / "b", store)
    assert {k: v for k, v in from_maildir.items() if k not in ("bounces", "suppressed")} == {
        k: v for k, v in from_mbox.items() if k not in ("bounces", "suppressed")
    }
    assert sorted(map(str, from_maildir["suppressed"])) == sorted(map(str, from_mbox["suppressed"]))
    assert sorted(json.dumps(b, sort_keys=True) for b in from_maildir["bounces"]) == sorted(  # type: ignore[attr-defined]
        json.dumps(b, sort_keys=True)
        for b in from_mbox["bounces"]  # type: ignore[attr-defined]
    )
    assert from_maildir["messages"] == len(EXPECTED)
    assert (from_maildir["hard"], from_maildir["soft"]) == (5, 2)
    assert (from_maildir["auto_replies"], from_maildir["unmatched"], from_maildir["other"]) == (
        4,
        1,
        1,
    )
    assert set(map(str, from_maildir["suppressed"])) == HARD
    for address in HARD:
        entry = suppressed.get(address)
        assert entry is not None and entry.reason == "bounced"
    for address in ("bob@example.net", "grace@example.com", "victim@example.com"):
        assert not suppressed.is_suppressed(address)


def test_a_second_scan_changes_nothing_and_the_maildir_is_left_alone(tmp_path: Path) -> None:
    maildir = make_maildir(tmp_path / "Maildir", corpus())
    files_before = sorted(str(p.relative_to(maildir)) for p in maildir.rglob("*") if p.is_file())
    stamps = {p: p.stat().st_mtime_ns for p in maildir.rglob("*") if p.is_file()}
    record = tmp_path / ".mailer" / "bounces.sqlite3"
    with SqliteStore(record) as store:
        scan_with(read_maildir(maildir), tmp_path, store)
    suppressed_file = tmp_path / "lists" / "suppressed.csv"
    before = (suppressed_file.read_bytes(), record.read_bytes())
    with SqliteStore(record) as store:
        second, _ = scan_with(read_maildir(maildir), tmp_path, store)
    assert second["already_seen"] == second["messages"] == len(EXPECTED)
    assert second["suppressed"] == [] and second["hard"] == second["soft"] == 0
    assert (suppressed_file.read_bytes(), record.read_bytes()) == before
    files_after = sorted(str(p.relative_to(maildir)) for p in maildir.rglob("*") if p.is_file())
    assert files_after == files_before
    assert stamps == {p: p.stat().st_mtime_ns for p in maildir.rglob("*") if p.is_file()}
    assert stat_mode(record) == 0o600


def stat_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


def test_soft_bounces_suppress_after_the_limit_of_different_campaigns(tmp_path: Path) -> None:
    who = "bob@example.net"

    def soft(campaign: int, serial: int) -> bytes:
        path = return_path("bounces@news.example.org", SECRET, campaign, who)
        return dsn(path, who, "4.2.2", message_id=f"<m{serial}@news.example.org>", serial=serial)

    store = MemoryStore()
    first, _ = scan_with([soft(1, 1), soft(1, 2), soft(2, 3)], tmp_path, store)
    assert first["soft"] == 3 and first["suppressed"] == []
    assert store.soft_count(who) == 2  # two campaigns, however many DSNs
    third, suppression = scan_with([soft(3, 4)], tmp_path, store)
    assert third["suppressed"] == [who]
    entry = suppression.get(who)
    assert entry is not None and entry.reason == "bounced"


def test_the_scan_command_prints_a_summary_and_json_and_refuses_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MAILER_SECRET_KEY", SECRET)
    shutil.copytree(Path(__file__).parent.parent / "lists", tmp_path / "lists")
    maildir = make_maildir(tmp_path / "Maildir", corpus())
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    result = runner.invoke(app, ["bounces", "scan", "--maildir", str(maildir)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{len(EXPECTED)} messages read (0 seen before): ")
    assert "auto-replies ignored" in result.output
    again = runner.invoke(app, ["bounces", "scan", "--maildir", str(maildir), "--json"])
    assert again.exit_code == 0, again.output
    data = json.loads(again.output)
    assert data["already_seen"] == data["messages"] == len(EXPECTED)
    assert (tmp_path / ".mailer" / "bounces.sqlite3").is_file()
    not_mbox = tmp_path / "x.mbox"
    not_mbox.mkdir()
    for args in (
        ["bounces", "scan"],
        ["bounces", "scan", "--maildir", str(maildir), "--mbox", "x"],
        ["bounces", "scan", "--maildir", str(tmp_path / "nowhere")],
        ["bounces", "scan", "--mbox", str(tmp_path / "nowhere.mbox")],
        ["bounces", "scan", "--mbox", str(not_mbox)],
    ):
        bad = runner.invoke(app, args)
        assert bad.exit_code == 2, (args, bad.output)
        assert "Error:" in bad.output and "Traceback" not in bad.output
        assert not (tmp_path / "nowhere").exists()
    monkeypatch.delenv("MAILER_SECRET_KEY")
    sample = runner.invoke(app, ["bounces", "scan", "--maildir", str(maildir)])
    assert sample.exit_code == 2 and "public sample key" in sample.output


def test_a_missing_maildir_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a Maildir"):
        read_maildir(tmp_path)
    with pytest.raises(InputError, match="no such mbox"):
        read_mbox(tmp_path / "none")


async def test_verp_round_trip_through_a_real_smtp_server(tmp_path: Path) -> None:
    """A signed message goes out with its tagged MAIL FROM; a DSN to that return path
    suppresses the address, and the next send skips it."""
    key = load_key(
        "ed2026",
        ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        source="test",
    )
    signer = Signer("news.example.org", [key])
    people = [Recipient(email=f"reader{i}@example.com", name="") for i in range(3)]

    def message(index: int, person: Recipient) -> Outgoing:
        mid = f"<issue.{index}@news.example.org>"
        data = (
            f"From: news@news.example.org\r\nTo: {person.email}\r\nSubject: Issue\r\n"
            f"Message-ID: {mid}\r\n\r\nHello.\r\n"
        ).encode()
        sender = return_path("bounces@news.example.org", SECRET, 12, person.email)
        return Outgoing(index, person, sender, mid, signer.sign(data))

    policy = DeliveryPolicy(concurrency=2, max_attempts=1, retry_base_delay=0.01)
    suppression = Suppression.for_lists_dir(tmp_path / "lists")
    with smtp_server() as server:
        config = SMTPConfig(host="127.0.0.1", port=server.port, security="none", loopback=True)
        messages = [message(i, p) for i, p in enumerate(people, 1)]
        results = [r async for r in Delivery(SMTPTransport(config), messages, policy).run()]
        assert {r.status for r in results} == {Status.SENT}
        got = {m.recipients[0]: m for m in server.recorder.received}
        bounced = got["reader1@example.com"]
        assert bounced.sender == "bounces+12-" + bounced.sender.split("-")[1] + (
            "-reader1=example.com@news.example.org"
        )
        txt = {b"ed2026._domainkey.news.example.org.": key.txt_value().encode()}
        assert dkimpy.verify(bounced.data, dnsfunc=lambda name, timeout=5: txt.get(name))

        maildir = make_maildir(tmp_path / "Maildir", [])
        mailbox.Maildir(maildir).add(
            dsn(bounced.sender, "reader1@example.com", "5.1.1", message_id="<x@y>", serial=1)
        )
        with SqliteStore(tmp_path / "bounces.sqlite3") as store:
            summary = scan(read_maildir(maildir), reader(), store, suppression)
        assert summary.suppressed == ["reader1@example.com"]

        server.recorder.received.clear()
        again = [message(i, p) for i, p in enumerate(people, 1)]
        skip = Delivery(
            SMTPTransport(config),
            again,
            policy,
            skip=lambda m: suppression.reason(m.recipient.email),
        )
        second = {r.email: r.status async for r in skip.run()}
        assert second["reader1@example.com"] is Status.SKIPPED
        assert {m.recipients[0] for m in server.recorder.received} == {
            "reader0@example.com",
            "reader2@example.com",
        }


async def test_a_real_ledger_resolves_message_ids_and_short_tags(tmp_path: Path) -> None:
    people = [Recipient(email=CAROL, name=""), Recipient(email="dave@gmail.example", name="")]
    with Ledger.open(tmp_path / "ledger.sqlite3") as ledger:
        campaign = ledger.start_campaign("weekly", kind="digest", recipients=people)
        for person, mid in zip(people, ("<c@news.example.org>", DAVE_MID), strict=True):
            await ledger.mark_sending(campaign, person.email, mid)
            await ledger.record(campaign, SendResult(0, person.email, mid, Status.SENT))
        await ledger.flush()
    with Ledger.open(tmp_path / "ledger.sqlite3", readonly=True) as ledger:
        matcher = BounceReader(SECRET, LedgerResolver(ledger))
        short = return_path("bounces@news.example.org", SECRET, campaign.id, CAROL)
        by_tag = matcher.read(dsn(short, CAROL, "5.1.1", message_id="<?@x>", serial=1))
        by_id = matcher.read(
            dsn(
                "bounces@news.example.org",
                "dave@gmail.example",
                "5.1.1",
                message_id=DAVE_MID,
                serial=2,
            )
        )
    assert [(b.email, b.campaign, b.matched_by) for b in by_tag.bounces] == [
        (CAROL, campaign.id, "verp")
    ]
    assert [(b.email, b.campaign, b.matched_by) for b in by_id.bounces] == [
        ("dave@gmail.example", campaign.id, "message-id")
    ]


def test_readings_are_plain_data() -> None:
    reading = reader().read((CORPUS / "postfix-hard.eml").read_bytes())
    assert isinstance(reading, Reading)
    assert reading.source_id.startswith("mid:<20261120081403")
