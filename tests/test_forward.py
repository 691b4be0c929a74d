"""`mailer forward`: a real send to aiosmtpd, the previews, and every guard against abuse."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
import json
import re
import subprocess
from collections.abc import Iterator
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import Result

from mailer.forward import CANNOT_FORWARD, MAX_NOTE_CHARS, note_html, parse_sender
from mailer.ledger import Ledger, State
from mailer.models import Recipient, SendResult, Status
from mailer.suppression import Suppression
from tests.cli import invoke, refused
from tests.mail import body, parsed
from tests.process import run_mailer
from tests.smtpd import TEST_FROM, TEST_UNSUBSCRIBE_URL, Recorder, Server, smtp_server

SLUG = "2026-11-27-river-path-reopens"
TITLE = "The river path reopens after two years of flood repairs"
URL = "https://example.com/news/river-path-reopens"
OTHER = "2026-11-22-market-hall"
SENDER = "Alice Martin <alice@example.org>"
SUBSCRIBE = "https://example.com/subscribe"
NEWSLETTER_FROM = TEST_FROM  # what Server.env sends as (not the sample, which --send refuses)


def forward(*args: str, env: dict[str, str] | None = None) -> Result:
    return invoke("forward", *args, env=env)


def to(*friends: str) -> list[str]:
    return [arg for friend in friends for arg in ("--to", friend)]


@pytest.fixture
def base(sample: Path) -> dict[str, str]:
    return {
        "MAILER_LEDGER": str(sample / ".mailer" / "ledger.sqlite3"),
        "MAILER_SUBSCRIBE_URL": SUBSCRIBE,
    }


@pytest.fixture
def server(base: dict[str, str]) -> Iterator[Server]:
    with smtp_server() as running:
        yield running


def env_of(server: Server, base: dict[str, str], **extra: str) -> dict[str, str]:
    return server.env(**base, **extra)


def ledger_path(base: dict[str, str]) -> Path:
    return Path(base["MAILER_LEDGER"])


def forward_campaigns(base: dict[str, str]) -> list[str]:
    path = ledger_path(base)
    if not path.exists():
        return []
    with Ledger.open(path, readonly=True) as book:
        return [c.name for c in book.campaigns(kind="forward")]


def assert_nothing_happened(sample: Path, base: dict[str, str], server: Server | None) -> None:
    assert not (sample / "previews").exists()
    assert forward_campaigns(base) == []
    if server is not None:
        assert server.recorder.received == []


def previews(sample: Path, slug: str = SLUG) -> list[EmailMessage]:
    folder = sample / "previews" / f"forward-{slug}"
    return [parsed(p.read_bytes()) for p in sorted(folder.glob("*.eml"))]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.append((tag, attrs))


def start_tags(document: str) -> list[tuple[str, list[tuple[str, str | None]]]]:
    """The real elements of an HTML document, as a browser's parser sees them."""
    parser = _Tags()
    parser.feed(document)
    parser.close()
    return parser.found


def visible(document: str) -> str:
    """What a reader sees of some HTML: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", document))


# --- the message --------------------------------------------------------------------------


def test_forward_is_delivered_with_from_reply_to_subject_and_body(
    sample: Path, base: dict[str, str], server: Server
) -> None:
    friends = ("friend@example.net", "Other.Friend@Example.COM")
    note = "Thought of you when I read this, see you Friday!"
    result = forward(
        SLUG, *to(*friends), "--sender", SENDER, "--note", note, "--send",
        env=env_of(server, base),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    received = server.recorder.received
    assert sorted(r.recipients[0] for r in received) == ["Other.Friend@example.com", friends[0]]
    ids = set()
    for item in received:
        msg = item.message
        friend = item.recipients[0]
        # each friend their own message: one envelope recipient, one To, no Cc or Bcc
        assert item.recipients == [friend] and item.sender == NEWSLETTER_FROM
        assert [a.addr_spec for a in msg["To"].addresses] == [friend]
        assert msg["Cc"] is None and msg["Bcc"] is None
        assert not re.search(rb"(?im)^bcc:", item.data)
        ids.add(msg["Message-ID"])
        # From is the newsletter's own address (DMARC), named after the sender
        (sender,) = msg["From"].addresses
        assert sender.display_name == "Alice Martin via The Sample Weekly"
        assert sender.addr_spec == NEWSLETTER_FROM
        assert [a.addr_spec for a in msg["Reply-To"].addresses] == ["alice@example.org"]
        assert msg["Subject"] == f"Alice Martin shared: {TITLE}"
        # no unsubscribe header and no token: the friend is not a subscriber
        assert msg["List-Unsubscribe"] is None and msg["List-Unsubscribe-Post"] is None
        text, page = body(msg, "plain"), body(msg, "html")
        for document in (text, visible(page)):
            flat = " ".join(document.split())
            assert "Alice Martin" in flat and "alice@example.org" in flat  # who sent it
            assert "asked us to send it to you" in flat  # and why the friend gets it
            assert f"send this article to {friend}" in flat
            assert note in flat
            # the full article, not a summary
            assert "Walkers and cyclists got their river back" in flat
            assert "so the council can finally settle the argument about use" in flat
            assert "token" not in document.lower() and "unsubscribe" not in document.lower()
        assert flat.index("asked us") < flat.index(note) < flat.index("Walkers and cyclists")
        assert f"Read the original: {URL}" in text
        assert f"Subscribe to The Sample Weekly:\n{SUBSCRIBE}" in text
        assert f'href="{URL}"' in page and f'href="{SUBSCRIBE}"' in page
        assert "<strong>lit section</strong>" in page
        assert TEST_UNSUBSCRIBE_URL not in item.data.decode()
    assert len(ids) == 2
    # one campaign per forward, and `mailer status` reads it
    names = forward_campaigns(base)
    assert len(names) == 2
    with Ledger.open(ledger_path(base), readonly=True) as book:
        for name in names:
            campaign = book.campaign(name)
            assert campaign is not None and campaign.frozen_count == 1
            assert book.counts(campaign)[State.SENT] == 1
            assert campaign.finished_at is not None
        since = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
        assert book.forward_count_since("ALICE@example.org", since) == 2
        assert book.forward_exists(friends[0], SLUG)
    status = invoke("status", names[0], "--json", env=env_of(server, base))
    assert status.exit_code == 0, status.output
    document = json.loads(status.output)
    assert document["campaign"]["kind"] == "forward" and document["counts"]["sent"] == 1


def test_dry_run_is_the_default_writes_previews_and_records_nothing(
    sample: Path, base: dict[str, str]
) -> None:
    result = forward(SLUG, *to("a@example.net", "b@example.net"), "--sender", SENDER, env=base)
    assert result.exit_code == 0, result.output
    folder = sample / "previews" / f"forward-{SLUG}"
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        ".mailer-preview",
        "000001-a_at_example.net.eml",
        "000002-b_at_example.net.eml",
        "forward.html",
        "forward.txt",
    ]
    assert [m["To"] for m in previews(sample)] == ["a@example.net", "b@example.net"]
    assert not ledger_path(base).exists()
    out = sample / "elsewhere"
    result = forward(SLUG, *to("a@example.net"), "--sender", SENDER, "--out", str(out), env=base)
    assert result.exit_code == 0, result.output
    assert (out / "forward.html").is_file()
    result = forward(SLUG, *to("a@example.net"), "--sender", SENDER, "--send", "--out", str(out))
    assert "give one of them" in refused(result)


def test_a_txt_article_by_path_is_sent_in_full(sample: Path, base: dict[str, str]) -> None:
    path = Path("articles") / "2026-11-24-school-robotics.txt"
    result = forward(str(path), *to("a@example.net"), "--sender", "bob@example.com", env=base)
    assert result.exit_code == 0, result.output
    (msg,) = previews(sample, "2026-11-24-school-robotics")
    text = body(msg, "plain")
    assert (
        msg["Subject"] == "bob@example.com shared: School robotics team heads to the national final"
    )
    assert "bob@example.com read this article" in text
    assert "The robot, nicknamed Gerald, finished the maze in 41 seconds." in text
    assert "Share this story" not in text  # the loader's clutter stripping applies


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("no-such-article", "no article with this slug"),
        ("../lists/example.csv", "not an article of the articles folder"),
        ("outside.md", "not an article of the articles folder"),
        ("articles/missing.md", "no such article file"),
    ],
)
def test_article_must_be_in_the_articles_folder(
    sample: Path, base: dict[str, str], ref: str, message: str
) -> None:
    (sample / "outside.md").write_text(f"---\ntitle: Out\nurl: {URL}\n---\nSecret.\n")
    result = forward(ref, *to("a@example.net"), "--sender", SENDER, env=base)
    assert message in refused(result)
    assert_nothing_happened(sample, base, None)


# --- the note ----------------------------------------------------------------------------

NASTY_NOTE = (
    '<script>alert("x")</script> <a href="https://evil.example/win">prize</a> '
    "claim at https://evil.example/prize or www.evil.example & evil.example today"
)


def test_note_is_escaped_and_its_urls_stay_text(sample: Path, base: dict[str, str]) -> None:
    result = forward(SLUG, *to("a@example.net"), "--sender", SENDER, "--note", NASTY_NOTE, env=base)
    assert result.exit_code == 0, result.output
    (msg,) = previews(sample)
    page = body(msg, "html")
    tags = start_tags(page)
    assert "script" not in [tag for tag, _ in tags]
    assert not [attrs for _, attrs in tags if "evil" in str(attrs)]
    plain = forward(SLUG, *to("a@example.net"), "--sender", SENDER, "--out", "plain", env=base)
    assert plain.exit_code == 0
    unnoted = body(parsed(next((sample / "plain").glob("*.eml")).read_bytes()), "html")
    links = [tag for tag, _ in start_tags(page) if tag == "a"]
    assert links == [tag for tag, _ in start_tags(unnoted) if tag == "a"]  # the note adds none
    assert NASTY_NOTE in " ".join(visible(page).split())  # and reads exactly as written
    # no address in the note is one text run that a mail client could linkify
    assert "evil.example" not in page and "https://" not in page.split('class="note"')[1][:400]
    assert NASTY_NOTE in " ".join(body(msg, "plain").split())  # plain text, as written


def test_note_html_breaks_up_link_like_text() -> None:
    marked = str(note_html("see https://a.example/x, www.b.example & c.example <b>"))
    assert "<a" not in marked and "<b>" not in marked and "&lt;b&gt;" in marked
    assert visible(marked) == "see https://a.example/x, www.b.example & c.example <b>"
    assert not re.search(r"\w\.\w|:/", marked)  # no link-like text run is left whole
    assert "a<span>.</span>example" in marked and "https<span>:</span>//" in marked


@pytest.mark.parametrize(
    ("note", "ok"),
    [
        ("x" * MAX_NOTE_CHARS, True),
        ("é" * MAX_NOTE_CHARS, True),
        ("x" * (MAX_NOTE_CHARS + 1), False),
        ("é" * (MAX_NOTE_CHARS + 1), False),
    ],
)
def test_note_is_at_most_500_characters(
    sample: Path, base: dict[str, str], note: str, ok: bool
) -> None:
    assert MAX_NOTE_CHARS == 500
    result = forward(SLUG, *to("a@example.net"), "--sender", SENDER, "--note", note, env=base)
    if ok:
        assert result.exit_code == 0, result.output
        assert note in body(previews(sample)[0], "plain").replace("\n", "")
    else:
        assert "at most 500" in refused(result)
        assert_nothing_happened(sample, base, None)


# --- injection -----------------------------------------------------------------------------

INJECTIONS = [
    ("--sender", "Alice\r\nBcc: x@evil.com <alice@example.org>"),
    ("--sender", "Alice\nBcc: x@evil.com <alice@example.org>"),
    ("--sender", "Alice\rBcc: x@evil.com <alice@example.org>"),
    ("--sender", "Ali\x00ce <alice@example.org>"),
    ("--sender", "Alice\u2028Bcc: x@evil.com <alice@example.org>"),
    ("--sender", "Alice\x85Bcc: x@evil.com <alice@example.org>"),
    ("--sender", "Alice\x1b[31m <alice@example.org>"),
    ("--sender", "Alice \u202eevil <alice@example.org>"),
    ("--sender", "Alice\x9b <alice@example.org>"),
    ("--note", "look \u202eevil"),
    ("--sender", "alice@example.org\r\nBcc: x@evil.com"),
    ("--sender", "Alice <alice@example.org\nBcc: x@evil.com>"),
    ("--note", "hello\r\nBcc: x@evil.com"),
    ("--note", "two\nlines"),
    ("--note", "nul\x00byte"),
    ("--note", "tab\there"),
    ("--note", "para\u2029graph"),
    ("--note", "next\x85line"),
    ("--to", "friend@example.net\r\nBcc: x@evil.com"),
    ("--to", "friend@example.net\n"),
    ("--to", "fri\x00end@example.net"),
    ("--to", "friend@example.net\u2028"),
]


@pytest.mark.parametrize(("option", "value"), INJECTIONS)
def test_control_characters_in_name_note_or_address_are_refused(
    sample: Path, base: dict[str, str], server: Server, option: str, value: str
) -> None:
    args = {"--sender": SENDER, "--note": "hi", "--to": "friend@example.net"}
    args[option] = value
    result = forward(
        SLUG, *(x for pair in args.items() for x in pair), "--send", env=env_of(server, base)
    )
    line = refused(result)
    assert option in line and ("control" in line or "line break" in line)
    assert "evil" not in line  # the value is not echoed
    assert_nothing_happened(sample, base, server)
    assert not ledger_path(base).exists()


# Zero-width and bidirectional marks, the word joiner, byte-order mark and soft hyphen: all
# Unicode format characters (Cf), invisible in a mail client, so a name could pass for another.
INVISIBLE = [
    "\u200b",
    "\u200c",
    "\u200d",
    "\u200e",
    "\u200f",
    "\u061c",
    "\u2060",
    "\ufeff",
    "\u202a",
    "\u202b",
    "\u202c",
    "\u202d",
    "\u202e",
    "\u2066",
    "\u2067",
    "\u2068",
    "\u2069",
    "\u00ad",
    "\U000e0041",  # a tag character: Cf as well
]


@pytest.mark.parametrize("char", INVISIBLE, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("option", ["--sender", "--note"])
def test_invisible_format_characters_in_name_or_note_are_refused(
    sample: Path, base: dict[str, str], server: Server, option: str, char: str
) -> None:
    args = {"--sender": SENDER, "--note": "hi", "--to": "friend@example.net"}
    args[option] = (
        f"Ali{char}ce Martin <alice@example.org>" if option == "--sender" else f"h{char}i"
    )
    result = forward(
        SLUG, *(x for pair in args.items() for x in pair), "--send", env=env_of(server, base)
    )
    line = refused(result)
    assert line.startswith(f"Error: {option}")
    assert f"(U+{ord(char):04X})" in line and "control" in line
    assert char not in line  # the value is not echoed
    assert_nothing_happened(sample, base, server)
    assert not ledger_path(base).exists()


def test_visible_non_ascii_names_and_notes_are_still_fine(
    sample: Path, base: dict[str, str]
) -> None:
    result = forward(
        SLUG,
        *to("friend@example.net"),
        "--sender",
        "Zoë Ōtani-Åberg <zoe@example.org>",
        "--note",
        "Ça te plaira — 川の道 🙂",
        env=base,
    )
    assert result.exit_code == 0, result.output
    (msg,) = previews(sample)
    assert msg["From"].addresses[0].display_name == "Zoë Ōtani-Åberg via The Sample Weekly"
    assert "Ça te plaira — 川の道 🙂" in body(msg, "plain")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--sender", "=?UTF-8?Q?Alice=0ABcc:_x@evil.com?= <alice@example.org>"),
        ("--sender", "=?UTF-8?B?QWxpY2UKQmNjOiB4QGV2aWwuY29t?= <alice@example.org>"),
        ("--sender", "=?UTF-8?Q?Alice=0D=0ABcc:_x@evil.com?=@example.org"),
        ("--note", "=?UTF-8?Q?hi=0D=0ABcc:_x@evil.com?="),
        ("--to", "=?UTF-8?Q?a=0ABcc:_x@evil.com?=@example.net"),
    ],
)
def test_encoded_words_that_decode_to_line_breaks_are_refused(
    sample: Path, base: dict[str, str], server: Server, option: str, value: str
) -> None:
    args = {"--sender": SENDER, "--note": "hi", "--to": "friend@example.net"}
    args[option] = value
    result = forward(
        SLUG, *(x for pair in args.items() for x in pair), "--send", env=env_of(server, base)
    )
    assert "encoded word" in refused(result)
    assert_nothing_happened(sample, base, server)


def test_any_encoded_word_in_a_name_is_refused_so_no_bcc_can_appear(
    sample: Path, base: dict[str, str]
) -> None:
    result = forward(
        SLUG, *to("a@example.net"), "--sender", "=?UTF-8?Q?Alice?= <alice@example.org>", env=base
    )
    assert "=?" in refused(result)
    for path in sample.rglob("*.eml"):
        assert not re.search(rb"(?im)^bcc:", path.read_bytes())


# --- parsing the sender ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "alice@example.org(<bob@example.org>",
        "alice@example.org (Bob) ",
        "Alice (Bob) <alice@example.org>",
        "Alice <alice@example.org>, Bob <bob@example.org>",
        "alice@example.org, bob@example.org",
        "alice@example.org bob@example.org",
        "alice@example.org;bob@example.org",
        "Friends: alice@example.org, bob@example.org;",
        "Alice <alice@example.org> <bob@example.org>",
        "Alice <alice@example.org> trailing",
        "Alice <<alice@example.org>>",
        "Alice <alice@example.org",
        "alice@example.org>",
        '"Alice <bob@example.org>" <alice@example.org>',
        '"Al\\"ice" <alice@example.org>',
        '"Alice" Bob <alice@example.org>',
        "bob@example.org <alice@example.org>",
        "Alice <bob@example.org@alice@example.org>",
        "Alice <@relay.example:alice@example.org>",
        "Win a prize at prize.example <alice@example.org>",
        "Visit https <alice@example.org>:",
        "<>",
        "",
        "A" * 65 + " <alice@example.org>",
    ],
)
def test_sender_is_parsed_strictly(sample: Path, base: dict[str, str], value: str) -> None:
    result = forward(SLUG, *to("a@example.net"), "--sender", value, env=base)
    assert "--sender" in refused(result)
    assert_nothing_happened(sample, base, None)


@pytest.mark.parametrize(
    "value",
    [
        "alice@example.org(<bob@example.org>",
        "Friend <friend@example.net>",
        "a@example.net, b@example.net",
        "a@example.net b@example.net",
        "not-an-address",
        "a@localhost",
    ],
)
def test_friend_must_be_exactly_one_valid_address(
    sample: Path, base: dict[str, str], value: str
) -> None:
    result = forward(SLUG, "--to", value, "--sender", SENDER, env=base)
    assert "--to" in refused(result)
    assert_nothing_happened(sample, base, None)


@pytest.mark.parametrize(
    ("value", "name", "address"),
    [
        ("alice@example.org", "", "alice@example.org"),
        ("  alice@EXAMPLE.org ", "", "alice@example.org"),
        ("Alice Martin <alice@Example.ORG>", "Alice Martin", "alice@example.org"),
        ('"Alice Martin" <alice@example.org>', "Alice Martin", "alice@example.org"),
        ("<alice@example.org>", "", "alice@example.org"),
        ("Zoë   Durand <zoë@bücher.example>", "Zoë Durand", "zoë@bücher.example"),
        ("J.R.R. Tolkien <jrr@example.org>", "J.R.R. Tolkien", "jrr@example.org"),
    ],
)
def test_accepted_sender_forms_are_normalised(value: str, name: str, address: str) -> None:
    sender = parse_sender(value)
    assert (sender.name, sender.address) == (name, address)


def test_non_ascii_name_is_encoded_in_from_and_subject(sample: Path, base: dict[str, str]) -> None:
    sender = "Zoë Durand <zoë@example.com>"
    result = forward(SLUG, *to("a@example.net"), "--sender", sender, env=base)
    assert result.exit_code == 0, result.output
    (msg,) = previews(sample)
    assert msg["From"].addresses[0].display_name == "Zoë Durand via The Sample Weekly"
    assert msg["Subject"] == f"Zoë Durand shared: {TITLE}"
    raw = (next((sample / "previews" / f"forward-{SLUG}").glob("*.eml"))).read_bytes()
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"=?utf-8?" in head and b"Zo\xc3\xab Durand via" not in head


# --- friends ---------------------------------------------------------------------------------


def test_more_than_five_friends_are_refused(
    sample: Path, base: dict[str, str], server: Server
) -> None:
    friends = [f"f{i}@example.net" for i in range(6)]
    result = forward(SLUG, *to(*friends), "--sender", SENDER, "--send", env=env_of(server, base))
    assert "at most 5" in refused(result)
    assert_nothing_happened(sample, base, server)
    result = forward(
        SLUG, *to(*friends[:5]), "--sender", SENDER, "--send", env=env_of(server, base)
    )
    assert result.exit_code == 0, result.output
    assert len(server.recorder.received) == 5


def test_the_same_friend_twice_is_refused(sample: Path, base: dict[str, str]) -> None:
    result = forward(
        SLUG, *to("a@example.net", "b@example.net", "A@Example.NET"), "--sender", SENDER, env=base
    )
    assert "given twice" in refused(result)
    assert_nothing_happened(sample, base, None)


def test_suppressed_friend_is_refused_without_saying_why(
    sample: Path, base: dict[str, str], server: Server
) -> None:
    Suppression.for_lists_dir(sample / "lists").add("gone@example.net", "unsubscribed")
    result = forward(
        SLUG, *to("ok@example.net", "Gone@Example.NET"), "--sender", SENDER, "--send",
        env=env_of(server, base),
    )  # fmt: skip
    line = refused(result)
    assert line == "Error: " + CANNOT_FORWARD.format(friend="Gone@example.net")
    for word in ("suppress", "unsubscri", "bounce", "opt", "block", "list"):
        assert word not in result.output.lower()
    assert_nothing_happened(sample, base, server)  # not even to the other friend
    dry = forward(SLUG, *to("gone@example.net"), "--sender", SENDER, env=base)
    assert refused(dry) == "Error: " + CANNOT_FORWARD.format(friend="gone@example.net")


# --- quota and repeats ------------------------------------------------------------------------


def test_ten_forwards_per_sender_per_day_and_dry_runs_do_not_count(
    sample: Path, base: dict[str, str], server: Server
) -> None:
    env = env_of(server, base)
    friends = [f"friend{i}@example.net" for i in range(12)]
    for _ in range(3):  # previews are free
        assert forward(SLUG, *to(*friends[:5]), "--sender", SENDER, env=env).exit_code == 0
    assert forward(SLUG, *to(*friends[:5]), "--sender", SENDER, "--send", env=env).exit_code == 0
    assert forward(SLUG, *to(*friends[5:9]), "--sender", SENDER, "--send", env=env).exit_code == 0
    # 9 sent: two more would be 11, so neither goes
    line = refused(forward(SLUG, *to(*friends[9:11]), "--sender", SENDER, "--send", env=env))
    assert "10 articles per 24 hours" in line and "9 sent, 1 left, 2 asked" in line
    assert len(server.recorder.received) == 9
    assert forward(SLUG, *to(friends[9]), "--sender", SENDER, "--send", env=env).exit_code == 0
    # the 11th: refused, also in a dry run, and whatever the case of the address
    for sender in (SENDER, "ALICE@EXAMPLE.ORG"):
        for extra in ((), ("--send",)):
            result = forward(SLUG, *to(friends[10]), "--sender", sender, *extra, env=env)
            assert "10 sent, 0 left" in refused(result)
    assert len(server.recorder.received) == 10
    # another sender has their own quota
    assert (
        forward(SLUG, *to(friends[10]), "--sender", "bob@example.com", "--send", env=env).exit_code
        == 0
    )
    # the quota is configurable
    more = {**env, "MAILER_FORWARD_DAILY_QUOTA": "11"}
    assert forward(SLUG, *to(friends[11]), "--sender", SENDER, "--send", env=more).exit_code == 0


def test_quota_counts_only_forwards_sent_in_the_last_24_hours(
    sample: Path, base: dict[str, str]
) -> None:
    recorder = Recorder(refuse={"bad@example.net": "550 5.2.1 mailbox disabled"})
    with smtp_server(recorder) as server:
        # one attempt: a refusal is final at once (by default a forward is tried 4 times)
        env = env_of(server, base, MAILER_FORWARD_DAILY_QUOTA="2", MAILER_MAX_ATTEMPTS="1")
        # two forwards a day ago and one refused by the server do not count
        past = dt.datetime.now(dt.UTC) - dt.timedelta(hours=25)
        with Ledger.open(ledger_path(base), clock=lambda: past) as book:
            asyncio.run(_sent_forwards(book, ["old1@example.net", "old2@example.net"]))
        bad = (SLUG, *to("bad@example.net"), "--sender", SENDER, "--send")
        result = forward(*bad, env=env)
        assert result.exit_code == 1, result.output
        assert "refused this forward before" in refused(forward(*bad, env=env))
        ok = forward(
            SLUG, *to("a@example.net", "b@example.net"), "--sender", SENDER, "--send", env=env
        )
        assert ok.exit_code == 0, ok.output
        assert "2 sent, 0 left" in refused(
            forward(OTHER, *to("c@example.net"), "--sender", SENDER, "--send", env=env)
        )
    assert sorted(r.recipients[0] for r in recorder.received) == ["a@example.net", "b@example.net"]


async def _sent_forwards(book: Ledger, friends: list[str]) -> None:
    for friend in friends:
        campaign = book.start_campaign(
            f"old {friend}", kind="forward", recipients=[Recipient(friend)]
        )
        book.record_forward(campaign, sender="alice@example.org", friend=friend, article=SLUG)
        await book.mark_sending(campaign, friend, f"<{friend}>")
        book.record(campaign, SendResult(1, friend, f"<{friend}>", Status.SENT, 250, "ok"))
    await book.flush()


def test_one_forward_per_friend_and_article(
    sample: Path, base: dict[str, str], server: Server
) -> None:
    env = env_of(server, base)
    assert (
        forward(SLUG, *to("friend@example.net"), "--sender", SENDER, "--send", env=env).exit_code
        == 0
    )
    cannot = "Error: " + CANNOT_FORWARD.format(friend="friend@example.net")
    # again, from the same sender or another, sent or previewed: refused, with the same
    # words as for a suppressed address (a sender learns nothing about the friend)
    for sender in (SENDER, "bob@example.com"):
        for extra in ((), ("--send",)):
            result = forward(SLUG, *to("friend@example.net"), "--sender", sender, *extra, env=env)
            assert refused(result) == cannot
    # with another friend in the same command: nobody gets it
    result = forward(
        SLUG, *to("new@example.net", "Friend@example.net"), "--sender", SENDER, "--send", env=env
    )
    assert refused(result) == "Error: " + CANNOT_FORWARD.format(friend="Friend@example.net")
    assert [r.recipients for r in server.recorder.received] == [["friend@example.net"]]
    # another article to the same friend, and the same article to another friend, go
    assert (
        forward(OTHER, *to("friend@example.net"), "--sender", SENDER, "--send", env=env).exit_code
        == 0
    )
    assert (
        forward(SLUG, *to("new@example.net"), "--sender", SENDER, "--send", env=env).exit_code == 0
    )
    assert len(server.recorder.received) == 3


def test_a_deferred_forward_is_resumed_by_running_it_again(
    sample: Path, base: dict[str, str]
) -> None:
    recorder = Recorder(refuse={"late@example.net": "451 4.7.1 greylisted"})
    with smtp_server(recorder) as server:
        env = env_of(server, base, MAILER_MAX_ATTEMPTS="2")
        args = (SLUG, *to("late@example.net"), "--sender", SENDER, "--send")
        first = forward(*args, env=env)
        assert first.exit_code == 1, first.output
        assert recorder.rcpt_attempts["late@example.net"] == 2  # retried by the engine
        (name,) = forward_campaigns(base)
        with Ledger.open(ledger_path(base), readonly=True) as book:
            campaign = book.campaign(name)
            assert campaign is not None and book.counts(campaign)[State.DEFERRED] == 1
            ever = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
            assert book.forward_count_since("alice@example.org", ever) == 0  # not sent
        recorder.refuse.clear()
        second = forward(*args, env=env)
        assert second.exit_code == 0, second.output
        assert forward_campaigns(base) == [name]  # the same campaign, resumed
        assert len(recorder.received) == 1
        assert refused(forward(*args, env=env)).startswith("Error: cannot forward")


def test_a_forward_the_server_refused_is_not_sent_again(sample: Path, base: dict[str, str]) -> None:
    recorder = Recorder(refuse={"nobody@example.net": "550 5.1.1 no such user"})
    with smtp_server(recorder) as server:
        # a forward is one message, so a refusal is judged once the relay has given it
        # MAILER_MAX_ATTEMPTS times, across runs (one here)
        env = env_of(server, base, MAILER_MAX_ATTEMPTS="1")
        args = (SLUG, *to("nobody@example.net"), "--sender", SENDER, "--send")
        assert forward(*args, env=env).exit_code == 1
        # a 5.1.x hard bounce is suppressed, as for a digest: the generic refusal follows
        assert Suppression.for_lists_dir(sample / "lists").is_suppressed("nobody@example.net")
        assert refused(forward(*args, env=env)).startswith("Error: cannot forward")
    assert recorder.rcpt_attempts["nobody@example.net"] == 1


def test_a_forward_refused_by_a_relay_that_never_took_our_mail_stays_retryable(
    sample: Path, base: dict[str, str]
) -> None:
    recorder = Recorder(rcpt_reply="550 5.1.1 no such user")  # says so for everyone
    with smtp_server(recorder) as server:
        env = env_of(server, base)
        args = (SLUG, *to("friend@example.net"), "--sender", SENDER, "--send")
        assert forward(*args, env=env).exit_code == 1
        assert not Suppression.for_lists_dir(sample / "lists").is_suppressed("friend@example.net")
        recorder.rcpt_reply = None  # the relay is fixed: the same command sends it
        assert forward(*args, env=env).exit_code == 0
    assert [r.recipients for r in recorder.received] == [["friend@example.net"]]


def test_the_same_forward_again_resumes_the_friends_not_yet_sent(
    sample: Path, base: dict[str, str]
) -> None:
    recorder = Recorder(tempfail_once={"b@example.net"})
    with smtp_server(recorder) as server:
        env = env_of(server, base, MAILER_MAX_ATTEMPTS="1")
        friends = to("a@example.net", "b@example.net", "c@example.net")
        args = (SLUG, *friends, "--sender", SENDER, "--send")
        first = forward(*args, env=env)
        assert first.exit_code == 1, first.output  # b was deferred
        again = forward(*args, env=env)
        assert again.exit_code == 0, again.output
        assert "Already sent to a@example.net: skipped." in again.output
        # once nothing is left to resume, the same command is refused like any repeat
        assert refused(forward(*args, env=env)).startswith("Error: cannot forward")
        # another sender may still not reach them through this article
        other = (SLUG, *to("a@example.net"), "--sender", "mallory@example.org", "--send")
        assert refused(forward(*other, env=env)).startswith("Error: cannot forward")
    assert sorted(r.recipients[0] for r in recorder.received) == [
        "a@example.net",
        "b@example.net",
        "c@example.net",
    ]


# --- a real process ----------------------------------------------------------------------------


@pytest.mark.slow
def test_forward_in_a_real_process(sample: Path, base: dict[str, str]) -> None:
    with smtp_server() as server:
        env = env_of(server, base)

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return run_mailer("forward", *args, cwd=sample, env=env)

        done = run(
            SLUG, "--to", "friend@example.net", "--sender", SENDER, "--note", "Hi!", "--send"
        )
        assert done.returncode == 0, done.stderr
        assert len(server.recorder.received) == 1
        again = run(SLUG, "--to", "friend@example.net", "--sender", SENDER, "--send")
        assert again.returncode == 2
        assert again.stderr.splitlines() == [
            "Error: " + CANNOT_FORWARD.format(friend="friend@example.net")
        ]
        helped = run("--help")
        assert helped.returncode == 0 and "--sender" in helped.stdout
    assert len(server.recorder.received) == 1


def test_a_slug_from_front_matter_cannot_move_the_preview_folder(
    sample: Path, base: dict[str, str]
) -> None:
    (sample / "articles" / "odd.md").write_text(
        f"---\ntitle: Odd\nslug: ../../escape\nurl: {URL}\n---\nBody.\n", encoding="utf-8"
    )
    result = forward("odd", *to("a@example.net"), "--sender", SENDER, env=base)
    assert result.exit_code == 0, result.output
    assert [p.name for p in (sample / "previews").iterdir()] == ["forward-escape"]
    assert not (sample.parent / "escape").exists() and not (sample / "escape").exists()
