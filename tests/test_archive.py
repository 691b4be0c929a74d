"""The archive: issues kept when sent (or built), their pages and Atom feed without personal
data, static files, and the routes served by a real uvicorn and read with httpx."""

from __future__ import annotations

import csv
import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import feedparser
import httpx
import pytest
import uvicorn
from aiosmtpd.smtp import SMTP
from starlette.applications import Starlette

from mailer.settings import SAMPLE_SECRET_KEY, Settings
from mailer.tokens import make_token
from mailer.web.archive import routes
from tests.browser import chromium
from tests.cli import invoke, refused
from tests.files import leftovers
from tests.smtpd import Recorder, smtp_server

DATE = "2026-11-27"
EARLIER = "2026-11-21"  # built with --days 14: the bonfire and the shelter
EARLIER_ISSUE = ("--date", EARLIER, "--days", "14")
SITE = "https://news.example.com"
RECORD = Path(".mailer") / "archive" / "issues" / f"{DATE}.json"
RIVER = "2026-11-27-river-path-reopens"
RIVER_TITLE = "The river path reopens after two years of flood repairs"
SHELTER = "2026-11-21-winter-shelter"  # in both issues
ISSUE_SLUGS = [
    RIVER,
    "2026-11-26-budget-vote",
    "2026-11-25-bakery-apprentices",
    "2026-11-24-school-robotics",
    "2026-11-22-market-hall",
    SHELTER,
]


def personal_data(sample: Path, secret: str = SAMPLE_SECRET_KEY) -> list[str]:
    """Every subscriber's address and name, and every token a digest to them would carry."""
    found: list[str] = []
    with (sample / "lists" / "example.csv").open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            email = row["email"]
            found += [email, email.lower(), email.split("@")[0]]
            found += [row["name"]] if row["name"] else []
            found += [
                make_token(secret, "example", email, purpose=p) for p in ("unsubscribe", "forward")
            ]
    return found


def assert_no_personal_data(text: str, sample: Path, secret: str = SAMPLE_SECRET_KEY) -> None:
    lowered = text.lower()
    for value in personal_data(sample, secret):
        assert value.lower() not in lowered, value
    assert "token=" not in text
    assert "unsubscribe" not in lowered


def build(*args: str, env: dict[str, str] | None = None) -> None:
    result = invoke("archive", "build", *args, env=env)
    assert result.exit_code == 0, result.output


def site_env() -> dict[str, str]:
    return {"MAILER_PUBLIC_URL": SITE}


@dataclass
class ArchiveWatcher(Recorder):
    """Notes, as each message arrives, whether the issue's record is already there."""

    record: Path = Path()
    archived_at_data: list[bool] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        self.archived_at_data.append(self.record.is_file())
        return await super().handle_DATA(server, session, envelope)


# --- the record ------------------------------------------------------------------------------


def test_a_real_send_archives_its_issue_before_the_mail_and_without_personal_data(
    sample: Path,
) -> None:
    key = "archive-tests-secret-key-0123456789-abcdef"
    recorder = ArchiveWatcher(record=sample / RECORD)
    with smtp_server(recorder) as server:
        result = invoke(
            "digest",
            "--send",
            "--yes",
            "--date",
            DATE,
            env=server.env(MAILER_PUBLIC_URL=SITE, MAILER_SECRET_KEY=key),
        )
        assert result.exit_code == 0, result.output
        received = server.recorder.received
    assert len(received) == 5
    assert recorder.archived_at_data == [True] * 5  # kept before the first message went out
    text = (sample / RECORD).read_text(encoding="utf-8")
    assert_no_personal_data(text, sample, key)
    record = json.loads(text)
    assert record["date"] == DATE
    assert record["subject"] == "The Sample Weekly: week of November 27, 2026"
    assert [a["slug"] for a in record["articles"]] == ISSUE_SLUGS
    river = record["articles"][0]
    assert river["title"] == RIVER_TITLE
    assert river["url"] == "https://example.com/news/river-path-reopens"
    assert "<strong>lit section</strong>" in river["body_html"]
    assert "Six benches" in river["body_text"]
    # Each message's "View in browser" link is the page of this record.
    for message in received:
        assert f"{SITE}/issues/{DATE}/" in message.data.decode("utf-8", "replace")
    assert leftovers(sample / RECORD.parent) == []


def test_a_dry_run_archives_nothing(sample: Path) -> None:
    result = invoke("digest", "--date", DATE, env=site_env())
    assert result.exit_code == 0, result.output
    assert not (sample / ".mailer" / "archive").exists()


def test_archive_build_keeps_the_issue_as_it_was_when_articles_change_later(
    sample: Path,
) -> None:
    build("--date", DATE, "--out", "site")
    record = json.loads((sample / RECORD).read_text(encoding="utf-8"))
    first = record["published"]
    river = sample / "articles" / f"{RIVER}.md"
    river.write_text(
        river.read_text(encoding="utf-8").replace(RIVER_TITLE, "A new title"), encoding="utf-8"
    )
    build("--out", "site", "--pages-only")
    page = (sample / "site" / "issues" / DATE / "index.html").read_text(encoding="utf-8")
    assert RIVER_TITLE in page and "A new title" not in page
    # Built again from the articles as they are now, it keeps its first publication time.
    build("--date", DATE)
    record = json.loads((sample / RECORD).read_text(encoding="utf-8"))
    assert record["articles"][0]["title"] == "A new title"
    assert record["published"] == first


def test_a_damaged_record_is_one_error_line_naming_it(sample: Path) -> None:
    build("--date", DATE)
    (sample / RECORD).write_text('{"version": 1, "date": ', encoding="utf-8")
    line = refused(invoke("archive", "build", "--out", "site", "--pages-only"))
    assert f"{RECORD}: not an issue record (invalid JSON" in line
    (sample / RECORD).write_text(
        json.dumps({"version": 1, "date": DATE, "subject": 3}), encoding="utf-8"
    )
    line = refused(invoke("archive", "build", "--out", "site", "--pages-only"))
    assert "'subject' is not text" in line
    assert not (sample / "site" / "feed.xml").exists()


def test_bad_options_are_refused(sample: Path) -> None:
    assert "--date" in refused(invoke("archive", "build", "--date", "27/11/2026"))
    assert "--out" in refused(invoke("archive", "build", "--pages-only"))
    assert "no articles" in refused(invoke("archive", "build", "--date", "2020-01-01"))
    assert not (sample / ".mailer").exists()


# --- static pages ----------------------------------------------------------------------------

EXPECTED = sorted(
    [
        "feed.xml",
        "issues/index.html",
        f"issues/{DATE}/index.html",
        f"issues/{EARLIER}/index.html",
        *(f"articles/{slug}/index.html" for slug in ISSUE_SLUGS),
        "articles/2026-11-10-bonfire-night/index.html",
    ]
)


def test_static_build_writes_every_page_without_personal_data_and_keeps_other_files(
    sample: Path,
) -> None:
    site = sample / "site"
    (site / "issues").mkdir(parents=True)
    (site / "index.html").write_text("my home page", encoding="utf-8")
    (site / "issues" / "notes.txt").write_text("mine", encoding="utf-8")
    build(*EARLIER_ISSUE, env=site_env())
    build("--date", DATE, "--out", "site", env=site_env())
    written = sorted(str(p.relative_to(site)) for p in site.rglob("*") if p.is_file())
    # The market hall's picture is kept beside the articles: the site has its own copy.
    image = "media/images/market-hall.jpg"
    assert written == sorted([*EXPECTED, image, "index.html", "issues/notes.txt"])
    assert (site / image).read_bytes() == (
        sample / "articles" / "images" / "market-hall.jpg"
    ).read_bytes()
    assert (site / "index.html").read_text(encoding="utf-8") == "my home page"
    for name in EXPECTED:
        assert_no_personal_data((site / name).read_text(encoding="utf-8"), sample)
    assert not [p for p in site.rglob(".*.tmp")]
    index = (site / "issues" / "index.html").read_text(encoding="utf-8")
    assert index.index(f'href="../issues/{DATE}/"') < index.index(f'href="../issues/{EARLIER}/"')
    issue = (site / "issues" / DATE / "index.html").read_text(encoding="utf-8")
    assert "The Sample Weekly: week of November 27, 2026" in issue
    for slug in ISSUE_SLUGS:
        assert f'href="../../articles/{slug}/"' in issue
    assert f'href="../../issues/{EARLIER}/"' in issue  # the older issue
    article = (site / "articles" / RIVER / "index.html").read_text(encoding="utf-8")
    assert RIVER_TITLE in article
    assert "<strong>lit section</strong>" in article  # the full text
    assert 'href="https://example.com/news/river-path-reopens"' in article
    # An article in two issues is shown from the newest one.
    shelter = (site / "articles" / SHELTER / "index.html").read_text(encoding="utf-8")
    assert f'href="../../issues/{DATE}/"' in shelter


def test_the_feed_is_atom_with_one_entry_per_issue_newest_first(sample: Path) -> None:
    build(*EARLIER_ISSUE, env=site_env())
    build("--date", DATE, "--out", "site", env=site_env())
    feed = feedparser.parse((sample / "site" / "feed.xml").read_bytes())
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10"
    assert feed.feed.title == "The Sample Weekly"
    assert [e.title for e in feed.entries] == [
        "The Sample Weekly: week of November 27, 2026",
        "The Sample Weekly: week of November 21, 2026",
    ]
    assert [e.link for e in feed.entries] == [f"{SITE}/issues/{DATE}/", f"{SITE}/issues/{EARLIER}/"]
    content = feed.entries[0].content[0].value
    assert f'href="{SITE}/articles/{RIVER}/"' in content
    assert RIVER_TITLE in content
    assert_no_personal_data((sample / "site" / "feed.xml").read_text(encoding="utf-8"), sample)


def test_the_feed_without_a_public_url_is_still_atom(sample: Path) -> None:
    build("--date", DATE, "--out", "site")
    feed = feedparser.parse((sample / "site" / "feed.xml").read_bytes())
    assert not feed.bozo, feed.bozo_exception
    assert feed.version == "atom10"
    assert feed.entries[0].id.startswith("tag:example.com,")


def hostile_record(sample: Path) -> None:
    build("--date", DATE)
    record = json.loads((sample / RECORD).read_text(encoding="utf-8"))
    record["articles"][0]["slug"] = "../../../escaped"
    record["articles"][1]["slug"] = "/etc/passwd"
    (sample / RECORD).write_text(json.dumps(record), encoding="utf-8")
    # A file that looks like a record but whose name is not a date is not one.
    (sample / RECORD.parent / "..%2F..%2Fx.json").write_text("{}", encoding="utf-8")


def test_static_build_keeps_hostile_slugs_inside_the_folder(sample: Path) -> None:
    hostile_record(sample)
    build("--out", "site", "--pages-only")
    site = sample / "site"
    assert (site / "articles" / "escaped" / "index.html").is_file()
    assert (site / "articles" / "etc-passwd" / "index.html").is_file()
    outside = sorted(p.name for p in sample.iterdir())
    assert outside == sorted([".mailer", "articles", "lists", "site"])
    issue = (site / "issues" / DATE / "index.html").read_text(encoding="utf-8")
    assert 'href="../../articles/escaped/"' in issue


def test_static_build_refuses_a_link_that_leads_out_of_the_folder(sample: Path) -> None:
    build("--date", DATE)
    elsewhere = sample / "elsewhere"
    elsewhere.mkdir()
    (sample / "site").mkdir()
    (sample / "site" / "articles").symlink_to(elsewhere, target_is_directory=True)
    line = refused(invoke("archive", "build", "--out", "site", "--pages-only"))
    assert "leads outside site; nothing was written" in line
    assert list(elsewhere.iterdir()) == []
    assert sorted(p.name for p in (sample / "site").iterdir()) == ["articles"]


# --- served ----------------------------------------------------------------------------------


@contextmanager
def serving(app: Starlette) -> Iterator[httpx.Client]:
    """``app`` on a real uvicorn on 127.0.0.1 (a port the system picks), and a client."""
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", ws="none"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(20)


@pytest.fixture
def web(sample: Path) -> Iterator[httpx.Client]:
    build(*EARLIER_ISSUE)
    build("--date", DATE)
    settings = Settings(archive_dir=sample / ".mailer" / "archive", public_url=SITE)
    with serving(Starlette(routes=routes(settings))) as client:
        yield client


HTML = "text/html; charset=utf-8"


def test_each_page_and_the_feed_are_served_without_personal_data(
    sample: Path, web: httpx.Client
) -> None:
    pages = ["/issues/", f"/issues/{DATE}/", f"/issues/{EARLIER}/"]
    pages += [f"/articles/{slug}/" for slug in ISSUE_SLUGS]
    for path in pages:
        response = web.get(path)
        assert response.status_code == 200, path
        assert response.headers["content-type"] == HTML
        assert_no_personal_data(response.text, sample)
        head = web.head(path)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-type"] == HTML
    assert "The Sample Weekly: week of November 21, 2026" in web.get("/issues/").text
    assert "<strong>lit section</strong>" in web.get(f"/articles/{RIVER}/").text
    feed = web.get("/feed.xml")
    assert feed.headers["content-type"] == "application/atom+xml; charset=utf-8"
    parsed = feedparser.parse(feed.content)
    assert not parsed.bozo and parsed.version == "atom10"
    assert [e.link for e in parsed.entries] == [
        f"{SITE}/issues/{DATE}/",
        f"{SITE}/issues/{EARLIER}/",
    ]


def test_a_new_issue_shows_without_a_restart(sample: Path, web: httpx.Client) -> None:
    assert "2026-11-13" not in web.get("/issues/").text
    build("--date", "2026-11-13")
    assert web.get("/issues/2026-11-13/").status_code == 200
    assert 'href="../issues/2026-11-13/"' in web.get("/issues/").text


@pytest.mark.parametrize(
    "path",
    [
        "/issues/2026-11-26/",  # no such issue
        "/issues/2026-13-45/",
        "/issues/latest/",
        "/articles/no-such-article/",
        "/articles/.hidden/",
        "/articles/a%20b/",
        "/articles/.hidden",
    ],
)
def test_an_unknown_or_malformed_address_is_a_plain_404(web: httpx.Client, path: str) -> None:
    response = web.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == HTML
    assert "Not found" in response.text
    assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "path", ["/issues/..%2F..%2Fetc%2Fpasswd/", "/articles/..%2F..%2F.mailer/", "/articles/%2e%2e/"]
)
def test_a_path_that_tries_to_leave_is_not_found(web: httpx.Client, path: str) -> None:
    # Decoded, these are no route of the archive; the app's own 404 answers.
    response = web.get(path)
    assert response.status_code == 404
    assert "root:" not in response.text and "Traceback" not in response.text


def test_an_address_without_its_slash_is_redirected_for_relative_links(web: httpx.Client) -> None:
    for path, target in [
        ("/issues", "issues/"),
        (f"/issues/{DATE}", f"{DATE}/"),
        (f"/articles/{RIVER}", f"{RIVER}/"),
    ]:
        response = web.get(path)
        assert response.status_code == 308
        assert response.headers["location"] == target
        assert web.get(path, follow_redirects=True).status_code == 200


def test_only_get_and_head_are_answered(web: httpx.Client) -> None:
    for path in ("/issues/", f"/issues/{DATE}/", "/feed.xml", "/issues"):
        assert web.post(path).status_code == 405
        assert web.delete(path).status_code == 405


def test_a_damaged_record_is_a_plain_500_that_tells_nothing(
    sample: Path, web: httpx.Client
) -> None:
    (sample / RECORD).write_text("{", encoding="utf-8")
    response = web.get(f"/issues/{DATE}/")
    assert response.status_code == 500
    assert str(RECORD) not in response.text and "JSON" not in response.text
    assert web.get(f"/issues/{EARLIER}/").status_code == 200


@pytest.mark.slow
def test_archive_pages_fit_a_phone_and_link_to_no_token(web: httpx.Client) -> None:
    """Nothing is wider than a 375 px screen, in a real Chromium."""
    base = str(web.base_url).rstrip("/")
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 375, "height": 800})
        for path in ("/issues/", f"/issues/{DATE}/", f"/articles/{RIVER}/"):
            page.goto(base + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 375, (path, width)
            links = page.eval_on_selector_all("a", "els => els.map(e => e.href)")
            assert all(not re.search(r"token=", link) for link in links)
