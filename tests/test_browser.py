"""`mailer serve` in a real browser: Debian's Chromium, driven by Playwright, against uvicorn.

The unsubscribe link is taken from a real digest preview, its origin mapped to the local
server (as the TLS reverse proxy at MAILER_PUBLIC_URL would), and the forward form sends to a
real aiosmtpd. Screenshots at 375 and 800 px wide go to /tmp/shots/ (not into the repo).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page

from mailer.settings import load_settings
from mailer.suppression import Suppression
from mailer.tokens import make_token
from tests.browser import chromium
from tests.cli import invoke
from tests.mail import parsed
from tests.smtpd import Server, smtp_server
from tests.web import WebServer, web_server

SECRET = "test-secret-key-0123456789-abcdefghijklmnop"
PUBLIC = "https://news.example.org"
SLUG = "2026-11-27-river-path-reopens"
SHOTS = Path("/tmp/shots")
WIDTHS = (375, 800)
AXE = Axe()
AAA_ONLY = {"runOnly": {"type": "rule", "values": ["color-contrast-enhanced"]}}


@pytest.fixture
def smtp() -> Iterator[Server]:
    with smtp_server() as running:
        yield running


@pytest.fixture
def web(sample: Path, monkeypatch: pytest.MonkeyPatch, smtp: Server) -> Iterator[WebServer]:
    env = smtp.env(
        MAILER_SECRET_KEY=SECRET,
        MAILER_PUBLIC_URL=PUBLIC,
        MAILER_LEDGER=str(sample / ".mailer" / "ledger.sqlite3"),
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with web_server(load_settings()) as running:
        yield running


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


def shoot(browser: Browser, url: str, name: str) -> None:
    """Full-page screenshots of ``url`` at each width, for a person to look at."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        context = browser.new_context(viewport={"width": width, "height": 700})
        try:
            page = context.new_page()
            page.goto(url)
            page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
            # nothing is wider than the screen: no sideways scrolling on a phone
            assert page.evaluate("document.documentElement.scrollWidth") <= width
        finally:
            context.close()


def unsubscribe_link(sample: Path, address: str) -> str:
    """The https URL of List-Unsubscribe in ``address``'s copy of a real digest preview."""
    result = invoke("digest", "--date", "2026-11-27")
    assert result.exit_code == 0, result.output
    (path,) = (sample / "previews").glob(f"*/*-{address.replace('@', '_at_')}.eml")
    header = str(parsed(path.read_bytes())["List-Unsubscribe"])
    urls = [part.strip(" <>") for part in header.split(",")]
    (url,) = [u for u in urls if u.startswith("https://")]
    return url


@pytest.fixture
def bob_link(sample: Path, web: WebServer) -> str:
    """Made before the browser starts: Playwright's sync API runs an event loop of its own,
    and the CLI runs one too."""
    return local(web, unsubscribe_link(sample, "bob@example.net"))


def local(web: WebServer, url: str) -> str:
    assert url.startswith(PUBLIC + "/"), url
    return web.url + url[len(PUBLIC) :]


def new_page(browser: Browser, width: int = 800) -> Page:
    return browser.new_context(viewport={"width": width, "height": 700}).new_page()


@pytest.mark.slow
def test_unsubscribe_from_a_real_digest_link_by_clicking_the_button(
    sample: Path, bob_link: str, browser: Browser
) -> None:
    link = bob_link
    shoot(browser, link, "unsubscribe")
    assert not Suppression.for_lists_dir(sample / "lists").is_suppressed("bob@example.net")
    page = new_page(browser, 375)
    page.goto(link)
    assert page.locator("h1").inner_text() == "Unsubscribe?"
    assert "b•••@example.net" in page.locator("main").inner_text()
    page.get_by_role("button", name="Unsubscribe").click()
    page.wait_for_selector("text=You are unsubscribed")
    assert Suppression.for_lists_dir(sample / "lists").is_suppressed("bob@example.net")
    SHOTS.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 700})
        page.screenshot(path=str(SHOTS / f"unsubscribed-{width}.png"), full_page=True)
    # and the undo button works too
    page.get_by_role("button", name="Resubscribe").click()
    page.wait_for_selector("text=Welcome back")
    assert not Suppression.for_lists_dir(sample / "lists").is_suppressed("bob@example.net")
    page.context.close()


@pytest.mark.slow
def test_fill_in_and_send_the_forward_form(
    sample: Path, web: WebServer, browser: Browser, smtp: Server
) -> None:
    token = make_token(SECRET, "example", "alice@example.org", purpose="forward")
    url = f"{web.url}/forward/{SLUG}?token={token}"
    shoot(browser, url, "forward")
    page = new_page(browser, 375)
    page.goto(url)
    assert page.get_by_label("Your name").input_value() == "Alice Martin"
    page.get_by_label("Your friend’s address").fill("friend@example.net")
    page.get_by_label("A note").fill("This one is for you, see you on the path!")
    page.get_by_role("button", name="Send").click()
    page.wait_for_selector("h1:text('Sent')")
    page.context.close()
    (received,) = smtp.recorder.received
    assert received.recipients == ["friend@example.net"]
    assert received.message["Subject"].startswith("Alice Martin shared: ")


def axe_findings(page: Page) -> list[str]:
    """axe-core's default rules, plus 7:1 contrast (the messages' bar), on the page as shown."""
    found = []
    for options in (None, AAA_ONLY):
        result = AXE.run(page, options=options) if options else AXE.run(page)
        found += [
            f"{v['id']}: {node['html'][:120]}"
            for v in result.response["violations"]
            for node in v["nodes"]
        ]
    return found


@pytest.mark.slow
def test_the_pages_have_no_accessibility_violations_light_or_dark(
    sample: Path, bob_link: str, web: WebServer, browser: Browser
) -> None:
    token = make_token(SECRET, "example", "alice@example.org", purpose="forward")
    pages = {
        "unsubscribe": bob_link,
        "forward": f"{web.url}/forward/{SLUG}?token={token}",
        "error": f"{web.url}/unsubscribe?token=forged.token",
        "missing": f"{web.url}/no/such/page",
    }
    backgrounds: dict[str, set[str]] = {"light": set(), "dark": set()}
    for scheme in ("light", "dark"):
        for width in WIDTHS:
            context = browser.new_context(
                viewport={"width": width, "height": 700}, color_scheme=scheme
            )
            try:
                page = context.new_page()
                for name, url in pages.items():
                    page.goto(url)
                    assert axe_findings(page) == [], (name, width, scheme)
                    backgrounds[scheme].add(
                        page.evaluate("getComputedStyle(document.body).backgroundColor")
                    )
                # The page after the button, and the one after undoing it.
                page.goto(bob_link)
                page.get_by_role("button", name="Unsubscribe").click()
                page.wait_for_selector("text=You are unsubscribed")
                assert axe_findings(page) == [], ("unsubscribed", width, scheme)
                page.get_by_role("button", name="Resubscribe").click()
                page.wait_for_selector("text=Welcome back")
                assert axe_findings(page) == [], ("resubscribed", width, scheme)
            finally:
                context.close()
    assert backgrounds["light"].isdisjoint(backgrounds["dark"])  # a dark mode of their own
