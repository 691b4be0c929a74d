"""`mailer serve`: the forward form over real HTTP, sending to a real aiosmtpd."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mailer.forward import MAX_NOTE_CHARS
from mailer.ledger import Ledger
from mailer.settings import Settings, load_settings
from mailer.suppression import Suppression
from mailer.tokens import make_token
from tests.smtpd import Server, closed_port, smtp_server
from tests.web import WebServer, assert_security_headers, web_server

SECRET = "test-secret-key-0123456789-abcdefghijklmnop"
SLUG = "2026-11-27-river-path-reopens"
TITLE = "The river path reopens after two years of flood repairs"
ALICE = "alice@example.org"
FRIEND = "friend@example.net"


def configure(sample: Path, monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    values = {
        "MAILER_SECRET_KEY": SECRET,
        "MAILER_PUBLIC_URL": "https://news.example.org",
        "MAILER_LEDGER": str(sample / ".mailer" / "ledger.sqlite3"),
        **env,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return load_settings()


@pytest.fixture
def smtp() -> Iterator[Server]:
    with smtp_server() as running:
        yield running


@pytest.fixture
def web(sample: Path, monkeypatch: pytest.MonkeyPatch, smtp: Server) -> Iterator[WebServer]:
    with web_server(configure(sample, monkeypatch, **smtp.env())) as running:
        yield running


def token(email: str = ALICE, *, purpose: str = "forward", list_name: str = "example") -> str:
    return make_token(SECRET, list_name, email, purpose=purpose)  # type: ignore[arg-type]


def form(friend: str = FRIEND, *, name: str = "Alice Martin", note: str = "") -> dict[str, str]:
    return {"friend": friend, "name": name, "note": note, "website": ""}


def post(
    client: httpx.Client, data: dict[str, str], *, slug: str = SLUG, tok: str | None = None
) -> httpx.Response:
    return client.post(f"/forward/{slug}", params={"token": tok or token()}, data=data)


def forward_campaigns(sample: Path) -> list[str]:
    path = sample / ".mailer" / "ledger.sqlite3"
    if not path.exists():
        return []
    with Ledger.open(path, readonly=True) as book:
        return [c.name for c in book.campaigns(kind="forward")]


def problem(response: httpx.Response) -> str:
    found = re.findall(r'<p class="notice" role="alert">(.*?)</p>', response.text)
    assert len(found) == 1, response.text
    return found[0]


def test_the_form_is_prefilled_from_the_list(web: WebServer) -> None:
    with web.client() as client:
        page = client.get(f"/forward/{SLUG}", params={"token": token()})
        head = client.head(f"/forward/{SLUG}", params={"token": token()})
    assert page.status_code == head.status_code == 200
    assert_security_headers(page)
    assert page.headers["cache-control"] == "no-store"
    text = page.text
    assert TITLE in text
    assert 'name="name" value="Alice Martin"' in text
    assert 'name="friend" value=""' in text
    assert 'name="website" value=""' in text  # the honeypot
    assert f'action="/forward/{SLUG}?token={token()}"' in text


def test_a_forward_is_sent_through_the_same_path_as_the_command(
    sample: Path, web: WebServer, smtp: Server
) -> None:
    with web.client() as client:
        response = post(client, form(name="Alice M", note="See you at the path, Friday!"))
    assert response.status_code == 200, response.text
    assert "<h1>Sent</h1>" in response.text
    (received,) = smtp.recorder.received
    msg = received.message
    assert received.recipients == [FRIEND]
    assert msg["From"].addresses[0].display_name == "Alice M via The Sample Weekly"
    assert [a.addr_spec for a in msg["Reply-To"].addresses] == [ALICE]
    assert msg["Subject"] == f"Alice M shared: {TITLE}"
    assert msg["List-Unsubscribe"] is None
    assert forward_campaigns(sample) == [f"forward {SLUG} from {ALICE} to {FRIEND}"]


def test_an_empty_name_sends_as_the_address(web: WebServer, smtp: Server) -> None:
    with web.client() as client:
        assert post(client, form(name=" ")).status_code == 200
    (received,) = smtp.recorder.received
    assert received.message["Subject"] == f"{ALICE} shared: {TITLE}"


def test_the_daily_quota_is_the_commands(
    sample: Path, monkeypatch: pytest.MonkeyPatch, smtp: Server
) -> None:
    settings = configure(sample, monkeypatch, **smtp.env(MAILER_FORWARD_DAILY_QUOTA="2"))
    with web_server(settings) as web, web.client() as client:
        for i in range(2):
            assert post(client, form(f"f{i}@example.net")).status_code == 200
        third = post(client, form("f2@example.net"))
    assert third.status_code == 400
    assert problem(third) == (
        f"{ALICE} may forward 2 articles per 24 hours; 2 sent, 0 left, 1 asked."
    )
    assert 'value="f2@example.net"' in third.text  # the form keeps what was typed
    assert len(smtp.recorder.received) == 2


def test_a_spent_quota_answers_alike_for_every_friend_suppressed_or_not(
    sample: Path, monkeypatch: pytest.MonkeyPatch, smtp: Server
) -> None:
    """Otherwise a spent quota would tell suppressed friends ("Sent") from others."""
    settings = configure(sample, monkeypatch, **smtp.env(MAILER_FORWARD_DAILY_QUOTA="1"))
    Suppression.for_lists_dir(sample / "lists").add("gone@example.net", "unsubscribed")
    with web_server(settings) as web, web.client() as client:
        assert post(client, form("f0@example.net")).status_code == 200
        gone = post(client, form("gone@example.net"))
        other = post(client, form("someone@example.net"))
    assert gone.status_code == other.status_code == 400
    assert problem(gone) == problem(other)
    assert len(smtp.recorder.received) == 1


def test_an_article_dated_in_the_future_cannot_be_forwarded(
    sample: Path, web: WebServer, smtp: Server
) -> None:
    (sample / "articles" / "2099-01-01-embargo.md").write_text(
        "---\ntitle: Embargoed budget\ndate: 2099-01-01\nurl: https://example.com/e\n---\n"
        "Not out yet.\n",
        encoding="utf-8",
    )
    with web.client() as client:
        page = client.get("/forward/2099-01-01-embargo", params={"token": token()})
        sent = post(client, form(), slug="2099-01-01-embargo")
    assert page.status_code == 404 and sent.status_code == 404
    assert "Embargoed" not in page.text + sent.text
    assert smtp.recorder.received == []


def test_a_suppressed_friend_or_a_repeat_looks_sent_and_nothing_goes(
    sample: Path, web: WebServer, smtp: Server
) -> None:
    Suppression.for_lists_dir(sample / "lists").add("gone@example.net", "unsubscribed")
    with web.client() as client:
        gone = post(client, form("Gone@Example.NET"))
        first = post(client, form())
        again = post(client, form())
    for response in (gone, first, again):
        assert response.status_code == 200 and "<h1>Sent</h1>" in response.text
    for word in ("suppress", "unsubscri", "bounce", "already"):
        assert word not in gone.text.lower() and word not in again.text.lower()
    assert [r.recipients for r in smtp.recorder.received] == [[FRIEND]]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (form(note="x" * (MAX_NOTE_CHARS + 1)), "The note: 501 characters; a note may have"),
        (form(note="line one\nline two"), "The note: contains a line break"),
        (form(note="hidden\u202eright-to-left"), "The note: contains an invisible"),
        (form(name="Alice <evil@example.com>"), "Your name: the name may not contain"),
        (form(name="Visit www.example.com now"), "Your name: the name looks like a web"),
        (form("not an address"), "Your friend’s address: "),
        (form("a@example.net, b@example.net"), "Your friend’s address: "),
        (form(""), "Please give your friend’s address."),
    ],
)
def test_the_note_name_and_address_rules_are_the_commands(
    sample: Path, web: WebServer, smtp: Server, data: dict[str, str], expected: str
) -> None:
    with web.client() as client:
        response = post(client, data)
    assert response.status_code == 400
    assert_security_headers(response)
    assert problem(response).startswith(expected.replace("’", "&#8217;")) or problem(
        response
    ).startswith(expected), problem(response)
    assert smtp.recorder.received == [] and forward_campaigns(sample) == []


@pytest.mark.slow
def test_the_global_rate_limit_answers_429(
    sample: Path, monkeypatch: pytest.MonkeyPatch, smtp: Server
) -> None:
    settings = configure(sample, monkeypatch, **smtp.env(MAILER_FORWARD_RATE="2"))
    with web_server(settings) as web, web.client() as client:
        # A form refused for a typo is not charged: one visitor's mistakes shut no one out.
        for _ in range(3):
            assert post(client, form("not an address")).status_code == 400
        answers = [post(client, form(f"f{i}@example.net")) for i in range(3)]
        other = post(client, form("x@example.net"), tok=token("bob@example.net"))
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert other.status_code == 429  # for the whole site, not per sender
    assert "Too many requests" in answers[2].text
    assert_security_headers(answers[2])
    assert len(smtp.recorder.received) == 2


def test_a_filled_honeypot_pretends_and_sends_nothing(
    sample: Path, web: WebServer, smtp: Server
) -> None:
    with web.client() as client:
        response = post(client, {**form(), "website": "http://spam.example"})
    assert response.status_code == 200 and "<h1>Sent</h1>" in response.text
    assert smtp.recorder.received == [] and forward_campaigns(sample) == []


@pytest.mark.parametrize(
    "bad",
    [
        token(purpose="unsubscribe"),  # an unsubscribe link cannot send mail
        token()[:-2],
        "nonsense",
    ],
)
def test_a_wrong_token_is_400(sample: Path, web: WebServer, smtp: Server, bad: str) -> None:
    with web.client() as client:
        page = client.get(f"/forward/{SLUG}", params={"token": bad})
        sent = post(client, form(), tok=bad)
    assert page.status_code == sent.status_code == 400
    assert "This link does not work" in page.text
    assert smtp.recorder.received == [] and forward_campaigns(sample) == []


def test_a_sender_off_the_list_or_suppressed_is_refused(
    sample: Path, web: WebServer, smtp: Server
) -> None:
    Suppression.for_lists_dir(sample / "lists").add("bob@example.net", "complaint")
    refused = {
        "not on the list": token("stranger@example.com"),
        "suppressed": token("bob@example.net"),
        "no such list": token(list_name="gone"),
    }
    with web.client() as client:
        for why, tok in refused.items():
            page = client.get(f"/forward/{SLUG}", params={"token": tok})
            sent = post(client, form(), tok=tok)
            assert page.status_code == sent.status_code == 403, why
            assert "subscribers of the newsletter only" in page.text
    assert smtp.recorder.received == [] and forward_campaigns(sample) == []


@pytest.mark.parametrize(
    "slug", ["no-such-article", "2026-11-27-river-path-reopens.md", "..", ".hidden", "a%2F..%2Fb"]
)
def test_an_unknown_slug_is_404(web: WebServer, smtp: Server, slug: str) -> None:
    with web.client() as client:
        page = client.get(f"/forward/{slug}", params={"token": token()})
        sent = post(client, form(), slug=slug)
    assert page.status_code == sent.status_code == 404
    assert_security_headers(page)
    assert smtp.recorder.received == []


def test_a_body_over_the_cap_is_413(sample: Path, web: WebServer, smtp: Server) -> None:
    with web.client() as client:
        response = post(client, form(note="x" * 9000))
    assert response.status_code == 413
    assert smtp.recorder.received == [] and forward_campaigns(sample) == []


def test_a_relay_that_is_down_gives_one_clear_reason(
    sample: Path, monkeypatch: pytest.MonkeyPatch, smtp: Server
) -> None:
    with closed_port() as port:
        settings = configure(sample, monkeypatch, **smtp.env(MAILER_SMTP_PORT=str(port)))
        with web_server(settings) as web, web.client() as client:
            response = post(client, form())
    assert response.status_code == 503
    assert "Nothing was sent" in response.text or "could not be sent" in response.text
    assert "Traceback" not in response.text and str(port) not in response.text
