"""Messages: header safety, line lengths and per-recipient headers, built by the Composer."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from mailer.articles import load_articles
from mailer.digest import build_digest
from mailer.errors import HeaderError
from mailer.headers import check_header_value
from mailer.messages import Composer, Envelope
from mailer.models import Recipient, Rendered
from mailer.render import make_environment, render_digest
from mailer.tokens import make_token, verify_token
from tests.conftest import REPO
from tests.mail import decoded_display_name, long_lines, parsed, raw_header

SECRET = "test-secret-key-for-the-message-tests"
INJECTION = "=?UTF-8?Q?Alice=0ABcc:_x@evil.com?="


@pytest.fixture(scope="module")
def rendered() -> Rendered:
    articles = load_articles(REPO / "articles")
    digest = build_digest(
        articles, newsletter="The Sample Weekly", issue_date=dt.date(2026, 11, 27)
    )
    return render_digest(
        digest,
        env=make_environment(None),
        newsletter={"name": "The Sample Weekly", "from_address": "news@example.com"},
        extra_fields=["city"],
    )


def composer(rendered: Rendered, *, from_address: str = "news@example.com") -> Composer:
    return Composer(
        rendered,
        Envelope(
            from_name="The Sample Weekly",
            from_address=from_address,
            list_id="sample.example.com",
            unsubscribe_url="https://example.com/unsubscribe",
        ),
        unsubscribe_token=lambda r: make_token(SECRET, "example", r.email),
        campaign_key="The Sample Weekly 2026-11-27",
    )


@pytest.mark.parametrize(
    "value",
    [
        "Alice\r\nBcc: x@evil.com",
        "Alice\nBcc: x@evil.com",
        "Alice\rBcc: x@evil.com",
        "Alice\x00",
        "Alice\tBcc: x@evil.com",
        "Alice\x07bell",
        "Alice\x1b[31m",
        "Alice\x7f",
        "Alice\u2028Bcc: x@evil.com",
        "Alice\u2029",
        "Alice\x85",
        "Alice\x80",
        "Alice\x9bBcc",
        INJECTION,
        "=?utf-8?q?Alice=0D=0ABcc:_x@evil.com?=",
        "=?utf-8?b?QWxpY2UKQmNjOiB4QGV2aWwuY29t?=",  # base64 of "Alice\nBcc: x@evil.com"
        "Hello =?iso-8859-1?q?Alice=0A?= there",
    ],
)
def test_check_header_value_refuses_line_breaks_and_controls(value: str) -> None:
    with pytest.raises(HeaderError) as caught:
        check_header_value("To", value)
    assert caught.value.message.startswith("To: ")


@pytest.mark.parametrize(
    "value", ["Alice Martin", "Zoë Durand", "=?utf-8?q?Zo=C3=AB?=", "O'Brien & Sons", ""]
)
def test_check_header_value_accepts_ordinary_values(value: str) -> None:
    assert check_header_value("To", value) == value


def test_subject_hiding_a_newline_is_refused(rendered: Rendered) -> None:
    bad = Rendered(subject="Weekly " + INJECTION, html=rendered.html, text=rendered.text)
    with pytest.raises(HeaderError) as caught:
        composer(bad)
    assert "Subject" in caught.value.message


def test_recipient_name_hiding_a_newline_is_refused(rendered: Rendered) -> None:
    with pytest.raises(HeaderError) as caught:
        composer(rendered).compose(Recipient("alice@example.org", INJECTION), 1)
    assert caught.value.message.startswith("To: ")


def test_message_structure_and_list_headers(rendered: Rendered) -> None:
    out = composer(rendered).compose(
        Recipient("alice@example.org", "Alice Martin", {"city": "Northfield"}), 1
    )
    msg = parsed(out.data)
    assert msg.get_content_type() == "multipart/alternative"
    plain, html = msg.iter_parts()
    assert (plain.get_content_type(), html.get_content_type()) == ("text/plain", "text/html")
    assert plain.get_content_charset() == html.get_content_charset() == "utf-8"
    assert msg["To"] == "Alice Martin <alice@example.org>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Id"] == "The Sample Weekly <sample.example.com>"
    assert msg["Date"] is not None and msg["Date"].datetime is not None
    unsubscribe = msg["List-Unsubscribe"].strip()
    assert unsubscribe.startswith("<https://example.com/unsubscribe?token=")
    token = unsubscribe.removeprefix("<https://example.com/unsubscribe?token=").rstrip(">")
    assert verify_token(SECRET, token) == ("example", "alice@example.org")
    assert out.data.count(b"\r\n") == out.data.count(b"\n")  # CRLF everywhere
    assert long_lines(out.data) == []


def test_long_names_subjects_and_paragraphs_keep_lines_under_998(rendered: Rendered) -> None:
    long_subject = "A subject with a very long word " + "x" * 1500
    subject_issue = Rendered(subject=long_subject, html=rendered.html, text=rendered.text)
    names = [
        "Žofie Ångström-Øberg Łukasiewicz " * 10,  # 300+ characters, non-ASCII
        "Ж" * 320,  # non-ASCII without a single space
        "Q" * 900,  # ASCII that a quoted string could not fold
        'Dr. "Quoted" Name, Esq.',
    ]
    c = composer(subject_issue)
    for index, name in enumerate(names, 1):
        name = " ".join(name.split())
        out = c.compose(Recipient(f"r{index}@example.org", name), index)
        assert long_lines(out.data) == [], name[:20]
        msg = parsed(out.data)
        assert str(msg["Subject"]) == long_subject
        if name.isascii() and len(name) < 100:
            assert msg["To"].addresses[0].display_name == name
        else:
            assert decoded_display_name(raw_header(out.data, "To")) == name
        assert msg["To"].addresses[0].addr_spec == f"r{index}@example.org"


def test_non_ascii_name_decodes_back_exactly(rendered: Rendered) -> None:
    out = composer(rendered).compose(Recipient("zoe@example.com", "Zoë Durand-Ōtani"), 1)
    raw = raw_header(out.data, "To")
    assert raw.isascii() and "=?utf-8?" in raw.lower()
    msg = parsed(out.data)
    assert msg["To"].addresses[0].display_name == "Zoë Durand-Ōtani"
    assert msg["To"].addresses[0].addr_spec == "zoe@example.com"


def test_message_ids_and_unsubscribe_urls_are_unique_and_in_the_from_domain(
    rendered: Rendered,
) -> None:
    c = composer(rendered)
    ids, urls = set(), set()
    for i in range(300):
        msg = parsed(c.compose(Recipient(f"user{i}@example.org", f"User {i}"), i + 1).data)
        ids.add(msg["Message-ID"])
        urls.add(msg["List-Unsubscribe"])
        assert msg["Message-ID"].endswith("@example.com>")
    assert len(ids) == len(urls) == 300
    # Message-IDs differ per issue too: the same reader gets a new one next week.
    other = Composer(
        rendered,
        c.envelope,
        unsubscribe_token=None,
        campaign_key="The Sample Weekly 2026-12-04",
    )
    assert other.message_id(Recipient("user0@example.org")) not in ids


def test_internationalised_from_domain_is_written_in_ascii(rendered: Rendered) -> None:
    c = composer(rendered, from_address="news@bücher.example")
    out = c.compose(Recipient("ana@example.org", "Ana"), 1)
    msg = parsed(out.data)
    assert msg["From"].addresses[0].domain == "xn--bcher-kva.example"
    assert msg["Message-ID"].endswith("@xn--bcher-kva.example>")
    assert long_lines(out.data) == []


def test_empty_name_falls_back_in_bodies_not_in_to(rendered: Rendered) -> None:
    msg = parsed(composer(rendered).compose(Recipient("carol@example.com", ""), 1).data)
    assert msg["To"] == "carol@example.com"
    plain = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert "Hi reader," in plain.get_content()
    assert "Hi reader," in html.get_content()


def test_personal_values_are_escaped_in_html_only(rendered: Rendered) -> None:
    out = composer(rendered).compose(Recipient("eve@example.org", "Eve <b>&</b> Co"), 1)
    msg = parsed(out.data)
    plain = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    assert plain is not None and html is not None
    assert "Hi Eve <b>&</b> Co," in plain.get_content()
    assert "Hi Eve &lt;b&gt;&amp;&lt;/b&gt; Co," in html.get_content()


def test_outgoing_envelope(rendered: Rendered, tmp_path: Path) -> None:
    out = composer(rendered).compose(Recipient("alice@example.org", "Alice"), 7)
    assert out.index == 7
    assert out.sender == "news@example.com"
    assert out.recipient.email == "alice@example.org"
    assert out.data.startswith(b"To: Alice <alice@example.org>\r\n")
    assert f"Message-ID: {out.message_id}".encode() in out.data
    # What is written is what parses: save and read back like a mail client would.
    path = tmp_path / "one.eml"
    path.write_bytes(out.data)
    assert parsed(path.read_bytes())["Message-ID"] == out.message_id
