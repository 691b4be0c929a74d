"""The bounce corpus (tests/bounces/*.eml: DSNs in the shapes of Postfix, Exim, Gmail,
Microsoft 365 and qmail, plus auto-replies), what each must read as, and helpers to put it
in a Maildir or mbox, make a DSN, and scan: shared by the bounce tests."""

from __future__ import annotations

import mailbox
from collections.abc import Iterable
from pathlib import Path

from mailer.bounces import BounceReader, MemoryStore, SqliteStore, scan
from mailer.suppression import Suppression

CORPUS = Path(__file__).parent / "bounces"
SECRET = "test-secret-for-the-bounce-fixtures"  # the fixtures' VERP tags are signed with it
CAROL = "carol.longname-with-many-parts@mail.example-university.ac.uk"
DAVE_MID = "<9c1f0e2a7b.d4e5f60718293a4b5c6d@news.example.org>"

# file -> (verdict, kind, address, campaign, matched by)
EXPECTED: dict[str, tuple[str, str | None, str | None, int | None, str | None]] = {
    "postfix-hard.eml": ("bounce", "hard", "alice@example.com", 7, "verp"),
    "postfix-delayed.eml": ("bounce", "soft", "bob@example.net", 7, "verp"),
    "exim-hard.eml": ("bounce", "hard", CAROL, 7, "verp"),  # short tag, resolved
    "gmail-hard.eml": ("bounce", "hard", "dave@gmail.example", 8, "message-id"),
    "gmail-policy.eml": ("bounce", "soft", "grace@example.com", 8, "verp"),  # 5.7.26: about us
    "m365-hard.eml": ("bounce", "hard", "erin@contoso.example", 8, "verp"),  # upper-cased tag
    "qmail-hard.eml": ("bounce", "hard", "frank@example.org", 8, "verp"),  # flufl.bounce
    "autoreply-rfc3834.eml": ("auto-reply", None, None, None, None),
    "autoreply-outlook.eml": ("auto-reply", None, None, None, None),
    "autoreply-vacation.eml": ("auto-reply", None, None, None, None),
    "autoreply-precedence.eml": ("auto-reply", None, None, None, None),
    "other-human-reply.eml": ("other", None, None, None, None),
    "postfix-unmatched.eml": ("unmatched", None, None, None, None),  # forged tag, unknown id
}
HARD = {
    "alice@example.com",
    CAROL,
    "dave@gmail.example",
    "erin@contoso.example",
    "frank@example.org",
}


class Ledgerish:
    """What the ledger would answer: one Message-ID of campaign 8, campaign 7's addresses."""

    def by_message_id(self, message_id: str) -> tuple[int, str] | None:
        return (8, "dave@gmail.example") if message_id == DAVE_MID else None

    def addresses(self, campaign_id: int) -> Iterable[str]:
        if campaign_id == 7:
            return [f"reader{i}@example.com" for i in range(200)] + [CAROL]
        return []


def reader() -> BounceReader:
    return BounceReader(SECRET, Ledgerish())


def corpus() -> list[Path]:
    return sorted(CORPUS.glob("*.eml"))


def make_maildir(folder: Path, files: Iterable[Path]) -> Path:
    box = mailbox.Maildir(folder, create=True)
    for path in files:
        box.add(path.read_bytes())
    return folder


def make_mbox(path: Path, files: Iterable[Path]) -> Path:
    box = mailbox.mbox(path, create=True)
    box.lock()
    for path_ in files:
        box.add(path_.read_bytes())
    box.flush()
    box.unlock()
    box.close()
    return path


def scan_with(
    messages: Iterable[bytes], tmp_path: Path, store: SqliteStore | MemoryStore, limit: int = 3
) -> tuple[dict[str, object], Suppression]:
    suppression = Suppression.for_lists_dir(tmp_path / "lists")
    summary = scan(messages, reader(), store, suppression, soft_limit=limit)
    return summary.as_dict(), Suppression.for_lists_dir(tmp_path / "lists")


def dsn(to: str, recipient: str, status: str, *, message_id: str, serial: int) -> bytes:
    """A Postfix-shaped DSN for one recipient, to a return path."""
    action = "failed" if status.startswith("5") else "delayed"
    boundary = f"B{serial}.relay.example"
    return (
        f"From: MAILER-DAEMON@relay.example (Mail Delivery System)\r\n"
        f"To: {to}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"Message-Id: <dsn.{serial}@relay.example>\r\nAuto-Submitted: auto-replied\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\r\n'
        f"\r\n--{boundary}\r\nContent-Type: text/plain\r\n\r\nThe mail system\r\n"
        f"\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Reporting-MTA: dns; relay.example\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {status[0]}50 {status} mailbox trouble\r\n"
        f"\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"Return-Path: <{to}>\r\nMessage-ID: {message_id}\r\nTo: {recipient}\r\n"
        f"\r\n--{boundary}--\r\n"
    ).encode()
