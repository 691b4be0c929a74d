"""Images kept beside the articles on the site (issue 13): ``/media/<path>`` over a real uvicorn
(only images an article or an archived issue names; no way out of the folder), the static
archive's own copy, and the preview and the archive page as Chromium shows them."""

from __future__ import annotations

import http.client
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

import mailer.articles.images as images_module
import mailer.web.media as media_module
from mailer.articles import read_image
from mailer.settings import Settings, load_settings
from tests.browser import chromium
from tests.cli import invoke, refused
from tests.conftest import REPO
from tests.web import WebServer, assert_security_headers, web_server

DATE = "2026-11-27"
HALL = "2026-11-22-market-hall"
IMAGE = "images/market-hall.jpg"
MEDIA = f"/media/{IMAGE}"
JPEG = (REPO / "articles" / IMAGE).read_bytes()
RECORD = Path(".mailer") / "archive" / "issues" / f"{DATE}.json"
SECRET = "test-secret-key-0123456789-abcdefghijklmnop"
LEAK = b"alice@example.org"  # in lists/example.csv


def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("MAILER_SECRET_KEY", SECRET)
    return load_settings()


def archive(*args: str) -> str:
    result = invoke("archive", "build", "--date", DATE, *args)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def site(sample: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebServer]:
    with web_server(settings(monkeypatch)) as running:
        yield running


def raw_get(server: WebServer, path: str) -> tuple[int, bytes]:
    """A request line sent as it is written: no client tidies ``..`` or ``%2e`` away."""
    where = urlsplit(server.url)
    connection = http.client.HTTPConnection(where.hostname or "", where.port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_accept_encoding=True)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


# --- served ---------------------------------------------------------------------------------


def test_the_site_serves_the_image_cacheable_and_typed(site: WebServer) -> None:
    with site.client() as client:
        response = client.get(MEDIA)
        assert response.status_code == 200
        assert response.content == JPEG
        assert response.headers["content-type"] == "image/jpeg"
        assert response.headers["cache-control"] == "public, max-age=86400"
        assert_security_headers(response)  # X-Content-Type-Options: nosniff among them
        etag = response.headers["etag"]
        again = client.get(MEDIA, headers={"If-None-Match": f'W/"x", {etag}'})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == etag
        assert client.get(MEDIA, headers={"If-None-Match": '"other"'}).status_code == 200
        head = client.head(MEDIA)
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-type"] == "image/jpeg"
        assert client.post(MEDIA).status_code == 405
        assert client.get("/media/images%2Fmarket-hall.jpg").content == JPEG  # one path, decoded


TRAVERSAL = [
    "/media/../lists/example.csv",
    "/media/../../../../../../etc/passwd",
    "/media/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/media/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/media/%2E%2E%2Flists%2Fexample.csv",
    "/media/images/../../lists/example.csv",
    "/media/images/..%2F..%2Flists%2Fexample.csv",
    "/media/images/./market-hall.jpg",
    "/media//etc/passwd",
    "/media/%2Fetc%2Fpasswd",
    "/media/%2Fproc%2Fself%2Fenviron",
    "/media/images/market-hall.jpg%00.png",
    "/media/images/market-hall.jpg/",
    "/media/images\\market-hall.jpg",
    "/media/IMAGES/market-hall.jpg",
    f"/media/{HALL}.md",
    "/media/images/",
    "/media/",
    "/media/.mailer/ledger.sqlite3",
    "/media/" + "a/" * 600 + "x.jpg",
]


@pytest.mark.parametrize("path", TRAVERSAL)
def test_a_path_that_tries_to_leave_or_is_not_an_image_is_not_found(
    site: WebServer, path: str
) -> None:
    status, content = raw_get(site, path)
    assert status == 404, (path, status)
    assert JPEG[:64] not in content and b"root:x" not in content and LEAK not in content


def test_only_images_an_article_or_an_archived_issue_names_are_served(
    sample: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = sample / "articles" / "images"
    (images / "draft.jpg").write_bytes(JPEG)  # a picture for an article not yet written
    with web_server(settings(monkeypatch)) as running, running.client() as client:
        assert client.get(MEDIA).status_code == 200  # the current market hall article's
        assert client.get("/media/images/draft.jpg").status_code == 404
    archive()  # as a send keeps it
    (sample / "articles" / f"{HALL}.md").unlink()
    with web_server(settings(monkeypatch)) as running, running.client() as client:
        assert client.get(MEDIA).content == JPEG  # the mail sent with it still shows it
    (sample / RECORD).unlink()
    with web_server(settings(monkeypatch)) as running, running.client() as client:
        assert client.get(MEDIA).status_code == 404


@pytest.mark.parametrize(
    "named", ["images/escape.jpg", "../lists/example.csv", "images/notes.pdf", "images/fake.jpg"]
)
def test_a_record_edited_by_hand_cannot_name_its_way_out(
    sample: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, named: str
) -> None:
    archive()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(JPEG)
    images = sample / "articles" / "images"
    (images / "escape.jpg").symlink_to(outside / "secret.jpg")
    (images / "notes.pdf").write_bytes(b"%PDF-1.4")
    (images / "fake.jpg").write_text("<script>alert(1)</script>", encoding="utf-8")
    record = json.loads((sample / RECORD).read_text(encoding="utf-8"))
    (hall,) = [a for a in record["articles"] if a["slug"] == HALL]
    hall["image"] = named
    (sample / RECORD).write_text(json.dumps(record), encoding="utf-8")
    (sample / "articles" / f"{HALL}.md").unlink()  # only the record names anything now
    with web_server(settings(monkeypatch)) as running:
        status, content = raw_get(running, "/media/" + named)
        assert status == 404 and b"<script>" not in content and LEAK not in content


def test_the_archive_page_shows_the_image_the_site_serves(
    sample: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive()
    monkeypatch.setenv("MAILER_PUBLIC_URL", "https://news.example.org")
    with web_server(settings(monkeypatch)) as running, running.client() as client:
        for page in (f"/issues/{DATE}/", f"/articles/{HALL}/"):
            html = client.get(page).text
            (src,) = re.findall(r'<img class="hero" src="([^"]*)"', html)
            assert src == f"../../media/{IMAGE}"  # relative, as the pages' other links
            image = client.get(urljoin(running.url + page, src))
            assert image.status_code == 200 and image.content == JPEG


# --- the static archive ----------------------------------------------------------------------


def test_archive_build_copies_the_images_its_pages_show(sample: Path) -> None:
    output = archive("--out", "site")
    assert "1 image in media/" in output
    site = sample / "site"
    assert (site / "media" / IMAGE).read_bytes() == JPEG
    for page in (site / "issues" / DATE / "index.html", site / "articles" / HALL / "index.html"):
        (src,) = re.findall(r'<img class="hero" src="([^"]*)"', page.read_text(encoding="utf-8"))
        assert (page.parent / src).resolve() == (site / "media" / IMAGE).resolve()
    assert not list(site.rglob(".*.tmp"))


def test_an_image_gone_since_is_a_warning_and_the_pages_are_written(sample: Path) -> None:
    archive()
    (sample / "articles" / IMAGE).unlink()
    result = invoke("archive", "build", "--out", "site", "--pages-only")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        "warning: articles: image names no file: 'images/market-hall.jpg'; its pages show its "
        "alt text"
    ]
    assert (sample / "site" / "issues" / DATE / "index.html").is_file()
    assert not (sample / "site" / "media").exists()


def test_a_media_folder_that_leads_out_of_the_site_is_refused(sample: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (sample / "site").mkdir()
    (sample / "site" / "media").symlink_to(elsewhere, target_is_directory=True)
    line = refused(invoke("archive", "build", "--date", DATE, "--out", "site"))
    assert "leads outside site; nothing was written" in line
    assert list(elsewhere.iterdir()) == []
    assert not (sample / "site" / "issues").exists()


# --- as a browser shows them ------------------------------------------------------------------

HERO_JS = """() => { const i = document.querySelector('img.hero');
  return {src: i.currentSrc, complete: i.complete, natural: i.naturalWidth,
          shown: i.getBoundingClientRect().width,
          scroll: document.documentElement.scrollWidth}; }"""


@pytest.mark.slow
def test_the_preview_and_the_archive_page_show_the_image_in_chromium(
    sample: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert invoke("digest", "--date", DATE).exit_code == 0
    preview = sample / "previews" / f"digest-{DATE}" / "digest.html"
    archive()
    with web_server(settings(monkeypatch)) as running, chromium() as browser:
        views = [("preview", preview.as_uri()), ("archive", f"{running.url}/issues/{DATE}/")]
        for name, url in views:
            for width in (375, 800):
                page = browser.new_page(viewport={"width": width, "height": 900})
                page.goto(url)
                page.wait_for_load_state("load")
                hero = page.evaluate(HERO_JS)
                page.locator("img.hero").scroll_into_view_if_needed()
                page.screenshot(path=f"/tmp/img13-{name}-{width}.png")
                page.screenshot(path=f"/tmp/img13-{name}-{width}-full.png", full_page=True)
                page.close()
                assert hero["complete"] and hero["natural"] == 1072, (name, width, hero)
                assert 0 < hero["shown"] <= min(536, width), (name, width, hero)
                assert hero["scroll"] <= width, (name, width, hero)  # no sideways scrolling
                assert hero["src"].endswith(MEDIA), hero


# --- from an adversarial probe ------------------------------------------------------------


def test_a_folder_swapped_for_a_link_after_the_check_is_not_followed(
    sample: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An author swaps articles/images for a link to a folder outside between the path's
    check and its opening: the file is opened a folder at a time, never through a link."""
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "market-hall.jpg").write_bytes(JPEG[:100] + b"SECRET OUTSIDE")
    articles = sample / "articles"
    (articles / "images").rename(articles / "kept")
    (articles / "images").symlink_to(outside, target_is_directory=True)
    # The check saw the folder as it was: resolving the path changes nothing.
    monkeypatch.setattr(images_module.os.path, "realpath", lambda path: str(path))
    with pytest.raises(ValueError, match="cannot be read"):
        read_image(articles, IMAGE)


def test_an_image_name_that_is_not_utf8_is_one_line_naming_the_field(sample: Path) -> None:
    images = sample / "articles" / "images"
    os.rename(images / "market-hall.jpg", os.fsencode(images) + b"/caf\xe9.jpg")
    (images / "market-hall.jpg").symlink_to(os.fsdecode(b"caf\xe9.jpg"))
    line = refused(invoke("digest", "--date", DATE))
    assert f"{HALL}.md:" in line and "'image'" in line and "not UTF-8" in line


def test_an_unrelated_broken_article_does_not_hide_the_images_of_the_others(
    sample: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(media_module, "CURRENT_SECONDS", 0.0)
    with web_server(settings(monkeypatch)) as running, running.client() as client:
        assert client.get(MEDIA).status_code == 200
        (sample / "articles" / "2026-11-28-half-written.md").write_text(
            "---\ntitle: [unclosed\n---\n", encoding="utf-8"
        )
        assert client.get(MEDIA).status_code == 200  # read again, the broken file left out
        (sample / "articles" / f"{HALL}.md").unlink()
        assert client.get(MEDIA).status_code == 404  # no article names it any more


def test_if_none_match_star_is_a_304(site: WebServer) -> None:
    with site.client() as client:
        assert client.get(MEDIA, headers={"If-None-Match": "*"}).status_code == 304


def test_a_site_under_a_path_serves_the_archive_and_its_images_there(
    sample: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MAILER_PUBLIC_URL with a path: the messages link to /news/media/…, and the reverse
    proxy passes the path on."""
    monkeypatch.setenv("MAILER_PUBLIC_URL", "https://example.org/news")
    archive()
    with web_server(settings(monkeypatch)) as running, running.client() as client:
        assert client.get(f"/news{MEDIA}").content == JPEG
        assert client.get(f"/news/issues/{DATE}/").status_code == 200
        assert client.get(MEDIA).status_code == 404
