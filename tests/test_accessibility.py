"""Every message kind, read by axe-core in Debian's Chromium: zero violations with the default
rules, at 375 and 800 px, light and dark; small text at 7:1 contrast (axe's AAA rule), no
text under 14 px, nothing wider than the screen, images with alt text and a size, and the
headings in order. The archive's pages get the default rules too.

Images are answered by the test (``page.route``), never fetched: the sample's real image for
the hero, a 1600 px wide PNG for the image inside the long article.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, Page, Route

from tests.browser import chromium
from tests.cli import invoke
from tests.conftest import REPO
from tests.looks import (
    DATE,
    LONG,
    NOTE,
    RIVER,
    SITE,
    digest_preview,
    forward_preview,
    png,
    write_long_article,
)

pytestmark = pytest.mark.slow

WIDTHS = (375, 800)
SCHEMES: tuple[Literal["light", "dark"], ...] = ("light", "dark")
SHOTS = Path("/tmp/shots17")
SAMPLE_IMAGE = REPO / "articles" / "images" / "market-hall.jpg"
WIDE = png(1600, 400)
AXE = Axe()
AAA_ONLY = {"runOnly": {"type": "rule", "values": ["color-contrast-enhanced"]}}

# Text a reader can see (not the hidden preheader) whose computed size is under 14 px.
SMALL_TEXT_JS = """() => {
  const small = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (!node.textContent.trim()) continue;
    const el = node.parentElement;
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) continue;
    const size = parseFloat(getComputedStyle(el).fontSize);
    if (size < 14) small.push(`${el.tagName} ${size}px: ${node.textContent.trim().slice(0, 40)}`);
  }
  return small;
}"""
IMAGES_JS = """() => [...document.images].map(i => ({
  alt: i.getAttribute('alt'), width: i.getAttribute('width'), height: i.getAttribute('height'),
  inBody: !!i.closest('.article-body'), shown: i.getBoundingClientRect().width,
  loaded: i.naturalWidth}))"""
HEADINGS_JS = """() => [...document.querySelectorAll('h1,h2,h3,h4,h5,h6')].map(h =>
  [h.tagName, !!h.closest('.article-body'), parseFloat(getComputedStyle(h).fontSize)])"""


@pytest.fixture
def browser() -> Iterator[Browser]:
    with chromium() as running:
        yield running


def answer_images(route: Route) -> None:
    """The page's own file, and images made up here; nothing else leaves the browser."""
    url = route.request.url
    if url.startswith("file:"):
        route.continue_()
    elif url.endswith("wide.png"):
        route.fulfill(status=200, content_type="image/png", body=WIDE)
    elif url.endswith((".jpg", ".jpeg")):
        route.fulfill(status=200, content_type="image/jpeg", body=SAMPLE_IMAGE.read_bytes())
    else:
        route.abort()


def violations(page: Page, options: dict[str, Any] | None = None) -> list[str]:
    result = AXE.run(page, options=options) if options else AXE.run(page)
    return [
        f"{v['id']} ({v['impact']}): {node['html'][:160]}"
        for v in result.response["violations"]
        for node in v["nodes"]
    ]


def look(browser: Browser, document: Path, name: str, *, message: bool) -> dict[str, Any]:
    """Every width and scheme of one document: what axe and the page say, per view."""
    found: dict[str, Any] = {}
    SHOTS.mkdir(parents=True, exist_ok=True)
    for scheme in SCHEMES:
        for width in WIDTHS:
            context = browser.new_context(
                viewport={"width": width, "height": 800},
                color_scheme=scheme,
            )
            try:
                page = context.new_page()
                page.route("**/*", answer_images)
                page.goto(document.as_uri())
                page.wait_for_load_state("load")
                view = f"{name} {width}px {scheme}"
                page.screenshot(path=str(SHOTS / f"{name}-{width}-{scheme}.png"), full_page=True)
                found[view] = {
                    "axe": violations(page),
                    "aaa": violations(page, AAA_ONLY),
                    "wider": page.evaluate("document.documentElement.scrollWidth") > width,
                    "background": page.evaluate(
                        "getComputedStyle(document.querySelector('.container')"
                        " || document.body).backgroundColor"
                    ),
                }
                if message:
                    found[view]["small"] = page.evaluate(SMALL_TEXT_JS)
                    found[view]["images"] = page.evaluate(IMAGES_JS)
                    found[view]["headings"] = page.evaluate(HEADINGS_JS)
            finally:
                context.close()
    return found


def assert_readable(found: dict[str, Any], *, articles: int) -> None:
    for view, seen in found.items():
        assert seen["axe"] == [], view
        assert seen["aaa"] == [], view  # small text (and all text) at 7:1
        assert seen["small"] == [], view
        assert not seen["wider"], view
        for image in seen["images"]:
            assert image["alt"], (view, image)
            assert image["loaded"] and image["shown"] <= 536, (view, image)
            if not image["inBody"]:
                assert image["width"] and image["height"], (view, image)
        headings = seen["headings"]
        assert [h[0] for h in headings if h[0] == "H1"] == ["H1"], view  # the masthead
        titles = [h for h in headings if not h[1] and h[0] != "H1"]
        assert [h[0] for h in titles] == ["H2"] * articles, view
        title_size = min(h[2] for h in titles)
        for tag, in_body, size in headings:
            if in_body:  # demoted below the title, and never larger than it
                assert tag in ("H3", "H4", "H5", "H6") and size <= title_size, (view, tag)
    light = {v["background"] for k, v in found.items() if k.endswith("light")}
    dark = {v["background"] for k, v in found.items() if k.endswith("dark")}
    assert len(light) == len(dark) == 1 and light != dark  # dark mode is its own design


# The documents are made before the browser starts: Playwright's sync API runs an event loop
# of its own, and the CLI runs one too.


@pytest.fixture
def digest_html(sample: Path) -> Path:
    # With the public site: "View in browser", a forward link per article, the archive.
    return digest_preview(sample, env={"MAILER_PUBLIC_URL": SITE}).html


@pytest.fixture
def forward_html(sample: Path) -> Path:
    return forward_preview(sample, RIVER, "--note", NOTE).html


@pytest.fixture
def long_forward_html(sample: Path) -> Path:
    write_long_article(sample / "articles")
    return forward_preview(sample, LONG).html


@pytest.fixture
def archive_pages(sample: Path) -> dict[str, Path]:
    result = invoke(
        "archive", "build", "--out", "site", "--date", DATE, env={"MAILER_PUBLIC_URL": SITE}
    )
    assert result.exit_code == 0, result.output
    return {
        "archive-index": sample / "site" / "issues" / "index.html",
        "archive-issue": sample / "site" / "issues" / DATE / "index.html",
        "archive-article": sample / "site" / "articles" / RIVER / "index.html",
    }


def test_the_digest_has_no_violations_light_or_dark(digest_html: Path, browser: Browser) -> None:
    found = look(browser, digest_html, "digest", message=True)
    assert_readable(found, articles=6)
    # The sample's image is a real file, shown with its alt text and size.
    (hero,) = found["digest 375px light"]["images"]
    assert hero["alt"] and hero["loaded"] == 1072


def test_a_forward_has_no_violations_light_or_dark(forward_html: Path, browser: Browser) -> None:
    found = look(browser, forward_html, "forward", message=True)
    assert_readable(found, articles=1)
    headings = found["forward 800px light"]["headings"]
    assert headings[-1][:2] == ["H3", True]  # the Markdown "## What changed"


def test_a_long_article_forward_has_no_violations(
    long_forward_html: Path, browser: Browser
) -> None:
    found = look(browser, long_forward_html, "forward-long", message=True)
    assert_readable(found, articles=1)
    # The 1600 px image fits the phone's screen.
    (wide,) = [i for i in found["forward-long 375px light"]["images"] if i["inBody"]]
    assert wide["loaded"] == 1600 and wide["shown"] <= 375 - 2 * 18


def test_the_archive_pages_have_no_violations(
    archive_pages: dict[str, Path], browser: Browser
) -> None:
    for name, page in archive_pages.items():
        found = look(browser, page, name, message=False)
        for view, seen in found.items():
            assert seen["axe"] == [], view
            assert seen["aaa"] == [], view  # 7:1, as the messages
            assert not seen["wider"], view
        light = {v["background"] for k, v in found.items() if k.endswith("light")}
        dark = {v["background"] for k, v in found.items() if k.endswith("dark")}
        assert light != dark, name  # a dark mode of their own
