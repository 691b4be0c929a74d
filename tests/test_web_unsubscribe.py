"""`mailer serve`: one-click unsubscribe (RFC 8058) over real HTTP, against a real uvicorn."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mailer.errors import ConfigError
from mailer.settings import Settings, load_settings
from mailer.suppression import Suppression
from mailer.tokens import make_token
from tests.conftest import REPO
from tests.web import WebServer, assert_security_headers, web_server

SECRET = "test-secret-key-0123456789-abcdefghijklmnop"
ALICE = "alice@example.org"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def settings(sample: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("MAILER_SECRET_KEY", SECRET)
    monkeypatch.setenv("MAILER_PUBLIC_URL", "https://news.example.org")
    return load_settings()


@pytest.fixture
def web(settings: Settings) -> Iterator[WebServer]:
    with web_server(settings) as running:
        yield running


def token(email: str = ALICE, *, purpose: str = "unsubscribe", secret: str = SECRET) -> str:
    return make_token(secret, "example", email, purpose=purpose)  # type: ignore[arg-type]


def suppressed(sample: Path) -> Suppression:
    return Suppression.for_lists_dir(sample / "lists")


def nothing_written(sample: Path) -> bool:
    lists = sample / "lists"
    return not any((lists / name).exists() for name in ("suppressed.csv", "suppressed.journal"))


def test_one_click_urlencoded_suppresses_at_once(sample: Path, web: WebServer) -> None:
    with web.client() as client:
        response = client.post("/unsubscribe", params={"token": token()}, data=ONE_CLICK)
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
    assert response.headers["cache-control"] == "no-store"
    assert "You are unsubscribed" in response.text
    entry = suppressed(sample).get(ALICE)
    assert entry is not None and entry.reason == "unsubscribed"
    log = (sample / "lists" / "suppressed.log").read_text().splitlines()
    assert [line.split("\t")[1:4] for line in log] == [["suppress", ALICE, "unsubscribed"]]
    assert "one-click from list 'example'" in log[0]


def test_one_click_multipart_suppresses_at_once(sample: Path, web: WebServer) -> None:
    with web.client() as client:
        response = client.post(
            "/unsubscribe",
            params={"token": token("bob@example.net")},
            files={"List-Unsubscribe": (None, "One-Click")},
        )
    assert response.request.headers["content-type"].startswith("multipart/form-data")
    assert response.status_code == 200
    assert suppressed(sample).is_suppressed("bob@example.net")


def test_get_and_head_change_nothing(sample: Path, web: WebServer) -> None:
    with web.client() as client:
        page = client.get("/unsubscribe", params={"token": token()})
        head = client.head("/unsubscribe", params={"token": token()})
    assert page.status_code == head.status_code == 200
    assert head.content == b""
    assert nothing_written(sample)
    assert not (sample / "lists" / "suppressed.log").exists()
    text = page.text
    assert "a•••@example.org" in text and ALICE not in text
    assert "example" in text and "The Sample Weekly" in text
    assert page.headers["cache-control"] == "no-store"
    forms = re.findall(r'<form method="post" action="([^"]+)"', text)
    assert forms == [f"/unsubscribe?token={token()}"]
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in text
    assert "<script" not in text


def test_the_page_button_posts_what_the_form_says(sample: Path, web: WebServer) -> None:
    with web.client() as client:
        page = client.get("/unsubscribe", params={"token": token()})
        action = re.findall(r'action="([^"]+)"', page.text)[0]
        done = client.post(action.replace("&amp;", "&"), data=ONE_CLICK)
        assert done.status_code == 200
        resubscribe = re.findall(r'action="([^"]+)"', done.text)[0]
        assert resubscribe.startswith("/resubscribe?token=")
        assert suppressed(sample).is_suppressed(ALICE)
        back = client.post(resubscribe, data={})
    assert back.status_code == 200 and "Welcome back" in back.text
    assert not suppressed(sample).is_suppressed(ALICE)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "garbage",
        token()[:-3],  # truncated
        token()[:20] + ("A" if token()[20] != "A" else "B") + token()[21:],  # altered
        token(secret="another-secret-key-0123456789-abcdefghijkl"),  # another key
        token(purpose="forward"),  # a forward link cannot unsubscribe
        token("nobody@example.com"),  # genuine, for nobody on the list: no hint either way
    ],
)
def test_a_bad_token_is_400_plain_and_writes_nothing(
    sample: Path, web: WebServer, bad: str
) -> None:
    genuine = bad == token("nobody@example.com")
    with web.client() as client:
        page = client.get("/unsubscribe", params={"token": bad})
        post = client.post("/unsubscribe", params={"token": bad}, data=ONE_CLICK)
        resub = client.post("/resubscribe", params={"token": bad})
    if genuine:  # a genuine token works whoever it names; the answer says nothing more
        assert page.status_code == post.status_code == 200
        return
    for response in (page, post, resub):
        assert response.status_code == 400
        assert_security_headers(response)
        assert "This link does not work" in response.text
    assert page.text == post.text == resub.text  # the same words whatever is wrong
    assert nothing_written(sample)


def test_no_token_or_two_tokens_is_400(sample: Path, web: WebServer) -> None:
    with web.client() as client:
        assert client.post("/unsubscribe", data=ONE_CLICK).status_code == 400
        two = client.post(f"/unsubscribe?token={token()}&token={token()}", data=ONE_CLICK)
        assert two.status_code == 400
    assert nothing_written(sample)


@pytest.mark.parametrize(
    "body",
    [{}, {"List-Unsubscribe": "one-click-please"}, {"Unsubscribe": "One-Click"}],
)
def test_a_post_without_the_one_click_body_is_400(
    sample: Path, web: WebServer, body: dict[str, str]
) -> None:
    with web.client() as client:
        response = client.post("/unsubscribe", params={"token": token()}, data=body)
    assert response.status_code == 400
    assert nothing_written(sample)


def test_a_broken_multipart_body_is_400(sample: Path, web: WebServer) -> None:
    with web.client() as client:
        response = client.post(
            "/unsubscribe",
            params={"token": token()},
            content=b'--x\r\nContent-Disposition: form-data; name="List-Uns',
            headers={"content-type": "multipart/form-data; boundary=x"},
        )
    assert response.status_code == 400
    assert nothing_written(sample)


def test_a_replay_is_still_200_and_records_once(sample: Path, web: WebServer) -> None:
    with web.client() as client:
        answers = [
            client.post("/unsubscribe", params={"token": token()}, data=ONE_CLICK) for _ in range(3)
        ]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert len(suppressed(sample)) == 1
    assert len((sample / "lists" / "suppressed.log").read_text().splitlines()) == 1


def test_a_body_over_the_cap_is_413_and_writes_nothing(sample: Path, web: WebServer) -> None:
    with web.client() as client:
        big = client.post(
            "/unsubscribe",
            params={"token": token()},
            data={**ONE_CLICK, "padding": "x" * 9000},
        )

        def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it comes
            yield b"List-Unsubscribe=One-Click&padding="
            for _ in range(10):
                yield b"x" * 1000

        chunked = client.post(
            "/unsubscribe",
            params={"token": token()},
            content=chunks(),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
    for response in (big, chunked):
        assert response.status_code == 413
        assert_security_headers(response)
    assert nothing_written(sample)


def test_resubscribe_never_lifts_a_bounce_or_complaint(sample: Path, web: WebServer) -> None:
    suppressed(sample).add("bob@example.net", "bounced")
    entry = suppressed(sample).get("bob@example.net")
    assert entry is not None and entry.date is not None
    scoped = make_token(
        SECRET, "example", "bob@example.net", purpose="resubscribe",
        scope=f"bounced:{entry.date.isoformat()}",
    )  # fmt: skip
    with web.client() as client:
        for tok in (token("bob@example.net"), scoped):
            response = client.post("/resubscribe", params={"token": tok})
            assert response.status_code == 400
    entry = suppressed(sample).get("bob@example.net")
    assert entry is not None and entry.reason == "bounced"


def test_an_old_message_cannot_undo_an_unsubscribe(sample: Path, web: WebServer) -> None:
    """The unsubscribe token is in every message ever sent: it must not resubscribe, and a
    click on an address already unsubscribed (say, by the operator) offers no undo."""
    suppressed(sample).add("bob@example.net", "unsubscribed", note="by e-mail to the editor")
    with web.client() as client:
        old = client.post("/resubscribe", params={"token": token("bob@example.net")})
        again = client.post(
            "/unsubscribe", params={"token": token("bob@example.net")}, data=ONE_CLICK
        )
    assert old.status_code == 400
    assert again.status_code == 200 and "You are unsubscribed" in again.text
    assert "Resubscribe" not in again.text and "/resubscribe" not in again.text
    assert suppressed(sample).is_suppressed("bob@example.net")


def test_headers_on_every_page_and_405_404(web: WebServer) -> None:
    with web.client() as client:
        answers = {
            "page": client.get("/unsubscribe", params={"token": token()}),
            "bad": client.get("/unsubscribe", params={"token": "x"}),
            "missing": client.get("/no/such/page"),
            "put": client.put("/unsubscribe", params={"token": token()}),
            "get resubscribe": client.get("/resubscribe", params={"token": token()}),
        }
    assert answers["missing"].status_code == 404
    assert "Page not found" in answers["missing"].text
    assert answers["put"].status_code == answers["get resubscribe"].status_code == 405
    assert "POST" in answers["get resubscribe"].headers["allow"]
    for name, response in answers.items():
        assert_security_headers(response)
        assert response.headers["content-type"].startswith("text/html"), name
    assert answers["bad"].headers["cache-control"] == "no-store"


def test_the_sample_secret_key_is_refused(sample: Path) -> None:
    with pytest.raises(ConfigError, match="MAILER_SECRET_KEY"):
        web_server(load_settings()).__enter__()


async def _post_all(url: str, emails: list[str]) -> list[int]:
    limits = httpx.Limits(max_connections=25)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        answers = await asyncio.gather(
            *(
                client.post("/unsubscribe", params={"token": token(e)}, data=ONE_CLICK)
                for e in emails
            )
        )
    return [a.status_code for a in answers]


def test_concurrent_unsubscribes_are_all_kept_and_commands_see_them(
    sample: Path, web: WebServer
) -> None:
    emails = [f"reader{i}@example.com" for i in range(120)]
    assert asyncio.run(_post_all(web.url, emails)) == [200] * len(emails)
    journal = sample / "lists" / "suppressed.journal"
    assert journal.exists()  # the web appends; the CSV is not rewritten per unsubscribe
    assert all(suppressed(sample).is_suppressed(e) for e in emails)
    log = (sample / "lists" / "suppressed.log").read_text().splitlines()
    assert len(log) == len(emails)
    # a command that rewrites the CSV folds the journal into it
    suppression = suppressed(sample)
    assert suppression.add("late@example.com", "manual")
    assert not journal.exists()
    again = suppressed(sample)
    assert len(again) == len(emails) + 1 and all(again.is_suppressed(e) for e in emails)


async def _post_same(url: str, tokens: list[str]) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        answers = await asyncio.gather(
            *(client.post("/unsubscribe", params={"token": t}, data=ONE_CLICK) for t in tokens)
        )
    assert [a.status_code for a in answers] == [200] * len(tokens)
    return [a.text for a in answers]


def test_of_clicks_made_together_only_the_one_that_suppressed_offers_the_undo(
    sample: Path, web: WebServer
) -> None:
    """Clicks on one address written in one batch (some with the address in other case):
    one of them made the suppression, and only its page may undo it."""
    tokens = [token(ALICE), token(ALICE.upper()), token("Alice@Example.org")] * 4
    pages = asyncio.run(_post_same(web.url, tokens))
    assert sum("/resubscribe" in page for page in pages) == 1
    assert all("You are unsubscribed" in page for page in pages)
    assert len(suppressed(sample)) == 1
    assert len((sample / "lists" / "suppressed.log").read_text().splitlines()) == 1


@pytest.mark.slow
def test_mailer_serve_runs_logs_no_token_and_stops_cleanly(
    sample: Path, settings: Settings
) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(REPO),
        "MAILER_SECRET_KEY": SECRET,
        "MAILER_PUBLIC_URL": "https://news.example.org",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailer", "serve", "--port", "0"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        match = re.fullmatch(r"Serving 'The Sample Weekly' on (http://127\.0\.0\.1:\d+)/\n", first)
        assert match, first
        with httpx.Client(base_url=match.group(1)) as client:
            assert client.get("/unsubscribe", params={"token": token()}).status_code == 200
            answer = client.post("/unsubscribe", params={"token": token()}, data=ONE_CLICK)
            assert answer.status_code == 200
            assert client.get("/unsubscribe", params={"token": "x" + token()}).status_code == 400
        proc.send_signal(signal.SIGTERM)
        out, errors = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, errors
    assert token() not in out + errors and "token" not in out + errors
    assert "Traceback" not in errors
    assert suppressed(sample).is_suppressed(ALICE)


def test_serve_refuses_a_port_in_use_with_one_line(sample: Path, settings: Settings) -> None:
    import socket

    from tests.cli import invoke, refused

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = invoke("serve", "--port", str(port), env={"MAILER_SECRET_KEY": SECRET})
    assert refused(result).startswith(f"Error: --host 127.0.0.1 --port {port}: cannot listen")
