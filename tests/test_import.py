"""`mailer import` against real HTTP servers on 127.0.0.1: feeds, pages, faults, hostile input."""

from __future__ import annotations

import gzip
import resource
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from typer.testing import Result

from mailer.articles import load_articles
from mailer.importer import import_url
from tests.cli import error_lines, invoke
from tests.process import run_mailer
from tests.smtpd import closed_port

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Riverside Notes</title>
  <id>urn:uuid:2b1f0d9c-feed</id>
  <updated>2026-11-25T10:00:00Z</updated>
  <entry>
    <title>The river path reopens</title>
    <link href="https://riverside.example/2026/11/river-path"/>
    <id>tag:riverside.example,2026:river-path</id>
    <published>2026-11-24T09:30:00+01:00</published>
    <updated>2026-11-24T09:30:00+01:00</updated>
    <author><name>Jo Bell</name></author>
    <summary>The path is open again after two years.</summary>
    <content type="html">&lt;p&gt;The river path reopened on Friday after two years of
      flood repairs.&lt;/p&gt;&lt;h2&gt;What changed&lt;/h2&gt;&lt;ul&gt;&lt;li&gt;New
      bridges&lt;/li&gt;&lt;li&gt;A wider path&lt;/li&gt;&lt;/ul&gt;&lt;blockquote&gt;&lt;p&gt;Worth
      the wait.&lt;/p&gt;&lt;/blockquote&gt;&lt;p&gt;&lt;a
      href="javascript:alert(1)"&gt;Bad&lt;/a&gt; and &lt;a
      href="https://riverside.example/map"&gt;the map&lt;/a&gt;.&lt;/p&gt;
      &lt;script&gt;alert(2)&lt;/script&gt;</content>
  </entry>
  <entry>
    <title>Old news: the bridge survey</title>
    <link href="https://riverside.example/2026/10/survey"/>
    <id>tag:riverside.example,2026:survey</id>
    <updated>2026-10-01T08:00:00Z</updated>
    <summary>The survey found the bank undermined.</summary>
  </entry>
</feed>
"""

RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel>
  <title>Hartley Gazette</title>
  <link>https://gazette.example/</link>
  <description>Local news</description>
  <item>
    <title>Market hall roof repaired</title>
    <link>https://gazette.example/market-hall</link>
    <guid isPermaLink="false">gazette-1001</guid>
    <pubDate>Sun, 22 Nov 2026 18:00:00 GMT</pubDate>
    <dc:creator>Sam Okafor</dc:creator>
    <enclosure url="https://gazette.example/img/hall.jpg" type="image/jpeg" length="1000"/>
    <description>&lt;p&gt;Traders are back under a dry roof.&lt;/p&gt;</description>
  </item>
  <item>
    <title>Budget vote on Thursday</title>
    <link>https://gazette.example/budget</link>
    <guid isPermaLink="false">gazette-1002</guid>
    <pubDate>Thu, 26 Nov 2026 09:00:00 GMT</pubDate>
    <description>Councillors vote on the budget.</description>
  </item>
  <item>
    <title>Summer fete photos</title>
    <link>https://gazette.example/fete</link>
    <guid isPermaLink="false">gazette-0900</guid>
    <pubDate>Sat, 01 Aug 2026 12:00:00 GMT</pubDate>
    <description>Pictures from the fete.</description>
  </item>
</channel>
</rss>
"""

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>Why the river path took two years | Riverside Notes</title>
<link rel="canonical" href="https://riverside.example/2026/11/why-two-years/">
<meta property="og:title" content="Why the river path took two years">
<meta property="og:image" content="/img/path.jpg">
<meta name="author" content="Jo Bell">
<meta property="article:published_time" content="2026-11-20T09:30:00+00:00">
<script>document.write("tracking")</script>
</head><body>
<nav><a href="/">Home</a> <a href="/about">About</a></nav>
<article>
<h1>Why the river path took two years</h1>
<p>The river path reopened on Friday after two years of flood repairs, and the council says
the new surface should last for decades. Walkers were back within the hour.</p>
<h2>What went wrong</h2>
<p>The first contractor found that the bank had been undermined further than the survey
showed, and the work stopped for a winter while engineers drew up a new plan.</p>
<ul><li>Two bridges were rebuilt.</li><li>Four hundred metres of bank were piled.</li></ul>
</article>
<footer>Copyright 2026 Riverside Notes</footer>
</body></html>
"""


# --- a real HTTP server on loopback -------------------------------------------------------


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    # Instead of ``body``: write the answer yourself (slow, endless), given the handler.
    writer: Callable[[BaseHTTPRequestHandler, threading.Event], None] | None = None


@dataclass
class Site:
    base: str
    routes: dict[str, Route]
    seen: list[dict[str, str]]

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture
def site() -> Iterator[Site]:
    routes: dict[str, Route] = {}
    seen: list[dict[str, str]] = []
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            seen.append({k.lower(): v for k, v in self.headers.items()})
            route = routes.get(self.path)
            if route is None:
                route = Route(b"not here", status=404, content_type="text/plain")
            if route.writer is not None:
                route.writer(self, stop)
                return
            self.send_response(route.status)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(route.body)))
            for key, value in route.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(route.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    # A client that stops reading (a refused bomb) is no error of the test's server: say nothing.
    server.handle_error = lambda request, address: None  # type: ignore[method-assign]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Site(f"http://127.0.0.1:{server.server_address[1]}", routes, seen)
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def serve(site: Site, path: str, text: str, content_type: str) -> str:
    site.routes[path] = Route(text.encode("utf-8"), content_type=content_type)
    return site.url(path)


def run(*args: str) -> Result:
    return invoke("import", *args)


def front(path: Path) -> dict[str, str]:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\n")
    head, _, _ = text[4:].partition("\n---\n")
    loaded = yaml.safe_load(head)
    assert isinstance(loaded, dict)
    return {str(k): str(v) for k, v in loaded.items()}


def body(path: Path) -> str:
    return path.read_text(encoding="utf-8").split("\n---\n", 1)[1]


def written(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.md"))


# --- feeds and pages ----------------------------------------------------------------------


def test_an_atom_feed_becomes_article_files_and_a_second_run_writes_nothing(
    tmp_path: Path, site: Site
) -> None:
    url = serve(site, "/feed.atom", ATOM, "application/atom+xml")
    folder = tmp_path / "articles"
    result = run(url, "--articles", str(folder))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"wrote {folder}/2026-11-24-the-river-path-reopens.md",
        f"wrote {folder}/2026-10-01-old-news-the-bridge-survey.md",
    ]
    new = folder / "2026-11-24-the-river-path-reopens.md"
    assert front(new) == {
        "title": "The river path reopens",
        "date": "2026-11-24T08:30:00Z",
        "url": "https://riverside.example/2026/11/river-path",
        "author": "Jo Bell",
        "summary": "The path is open again after two years.",
        "source": "tag:riverside.example,2026:river-path",
    }
    text = body(new)
    assert "## What changed\n\n- New bridges\n- A wider path\n\n> Worth the wait." in text
    assert "[the map](<https://riverside.example/map>)" in text
    assert "javascript" not in text and "script" not in text and "alert" not in text
    old = folder / "2026-10-01-old-news-the-bridge-survey.md"
    assert front(old)["title"] == "Old news: the bridge survey"
    assert body(old).strip() == "The survey found the bank undermined."
    assert "mailer/" in site.seen[0]["user-agent"]

    again = run(url, "--articles", str(folder))
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines() == [
        "skipped (already imported) The river path reopens",
        "skipped (already imported) Old news: the bridge survey",
    ]
    assert written(folder) == [old.name, new.name]
    # What was written reads back as articles.
    titles = {a.title for a in load_articles(folder)}
    assert titles == {"The river path reopens", "Old news: the bridge survey"}


def test_a_renamed_or_edited_file_is_still_known(tmp_path: Path, site: Site) -> None:
    url = serve(site, "/feed.atom", ATOM, "application/atom+xml")
    folder = tmp_path / "articles"
    assert run(url, "--articles", str(folder)).exit_code == 0
    for path in folder.glob("*.md"):
        text = path.read_text(encoding="utf-8").replace("The river path reopens", "Edited")
        path.rename(folder / f"renamed-{path.name}")
        (folder / f"renamed-{path.name}").write_text(text, encoding="utf-8")
    result = run(url, "--articles", str(folder))
    assert result.exit_code == 0, result.output
    assert not any(line.startswith("wrote") for line in result.stdout.splitlines())
    assert len(written(folder)) == 2


def test_an_rss_feed_with_since(tmp_path: Path, site: Site) -> None:
    url = serve(site, "/rss.xml", RSS, "application/rss+xml")
    folder = tmp_path / "articles"
    result = run(url, "--articles", str(folder), "--since", "2026-11-01")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        f"wrote {folder}/2026-11-22-market-hall-roof-repaired.md",
        f"wrote {folder}/2026-11-26-budget-vote-on-thursday.md",
        "skipped (older than --since) Summer fete photos",
    ]
    hall = front(folder / "2026-11-22-market-hall-roof-repaired.md")
    assert hall == {
        "title": "Market hall roof repaired",
        "date": "2026-11-22T18:00:00Z",
        "url": "https://gazette.example/market-hall",
        "author": "Sam Okafor",
        "image": "https://gazette.example/img/hall.jpg",
        "source": "gazette-1001",
    }
    # Later, without --since: only the old item is new.
    result = run(url, "--articles", str(folder))
    assert result.stdout.splitlines()[-1] == f"wrote {folder}/2026-08-01-summer-fete-photos.md"
    assert result.stdout.count("wrote") == 1


def test_a_web_page_becomes_one_article(tmp_path: Path, site: Site) -> None:
    url = serve(site, "/2026/11/why-two-years/", PAGE, "text/html; charset=utf-8")
    folder = tmp_path / "articles"
    result = run(url, "--articles", str(folder))
    assert result.exit_code == 0, result.output
    name = "2026-11-20-why-the-river-path-took-two-years.md"
    assert result.stdout.splitlines() == [f"wrote {folder}/{name}"]
    assert front(folder / name) == {
        "title": "Why the river path took two years",
        "date": "2026-11-20",
        "url": "https://riverside.example/2026/11/why-two-years/",
        "author": "Jo Bell",
        "image": "https://riverside.example/img/path.jpg",
        "source": "https://riverside.example/2026/11/why-two-years/",
    }
    text = body(folder / name)
    assert text.lstrip().startswith("The river path reopened on Friday")
    assert "## What went wrong" in text and "- Two bridges were rebuilt." in text
    assert "tracking" not in text and "Home" not in text and "Copyright" not in text

    again = run(url, "--articles", str(folder))
    assert again.stdout.splitlines() == [
        "skipped (already imported) Why the river path took two years"
    ]
    assert written(folder) == [name]


def test_a_page_in_windows_1252_is_read_right(tmp_path: Path, site: Site) -> None:
    page = PAGE.replace('<meta charset="utf-8">', '<meta charset="windows-1252">')
    page = page.replace("took two years", "took two years: café “repairs”")
    site.routes["/p"] = Route(page.encode("cp1252"), content_type="text/html")
    folder = tmp_path / "articles"
    result = run(site.url("/p"), "--articles", str(folder))
    assert result.exit_code == 0, result.output
    (path,) = folder.glob("*.md")
    assert front(path)["title"] == "Why the river path took two years: café “repairs”"


# --- faults: one line, exit 2 or 3, nothing written ---------------------------------------


def one_error(result: Result, code: int) -> str:
    assert result.exit_code == code, result.output
    (line,) = error_lines(result.stderr)
    assert result.stdout == ""
    return line


def test_a_refused_connection_is_exit_3(tmp_path: Path) -> None:
    with closed_port() as port:
        result = run(f"http://127.0.0.1:{port}/feed", "--articles", str(tmp_path / "a"))
    line = one_error(result, 3)
    assert f"127.0.0.1:{port}: cannot connect" in line
    assert not (tmp_path / "a").exists()


def test_a_404_is_exit_3(tmp_path: Path, site: Site) -> None:
    line = one_error(run(site.url("/gone"), "--articles", str(tmp_path / "a")), 3)
    assert "HTTP 404" in line and "/gone" in line


def test_a_redirect_loop_and_a_redirect_away_from_http_are_exit_3(
    tmp_path: Path, site: Site
) -> None:
    site.routes["/loop"] = Route(status=302, headers={"Location": "/loop"})
    site.routes["/away"] = Route(status=302, headers={"Location": "file:///etc/passwd"})
    assert "redirects" in one_error(run(site.url("/loop"), "--articles", str(tmp_path)), 3)
    assert "not http(s)" in one_error(run(site.url("/away"), "--articles", str(tmp_path)), 3)
    site.routes["/moved"] = Route(status=301, headers={"Location": "/feed"})
    serve(site, "/feed", ATOM, "application/atom+xml")
    assert run(site.url("/moved"), "--articles", str(tmp_path / "a")).exit_code == 0


def endless(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
    """An answer that never ends, with no length: only the size cap stops the reader."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/rss+xml")
    handler.end_headers()
    chunk = b"<!-- " + b"x" * 65_000 + b" -->\n"
    try:
        handler.wfile.write(b'<?xml version="1.0"?>\n<rss version="2.0"><channel>')
        while not stop.is_set():
            handler.wfile.write(chunk)
    except OSError:
        pass


def test_an_oversize_answer_is_cut_at_the_cap(tmp_path: Path, site: Site) -> None:
    site.routes["/huge"] = Route(writer=endless)
    line = one_error(run(site.url("/huge"), "--articles", str(tmp_path)), 3)
    assert "larger than 10,485,760 bytes" in line
    # A declared length over the cap is refused before anything is read.
    site.routes["/declared"] = Route(b"x", headers={"Content-Length": str(10**9)})

    def lying(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(10**9))
        handler.end_headers()

    site.routes["/declared"] = Route(writer=lying)
    assert "larger than" in one_error(run(site.url("/declared"), "--articles", str(tmp_path)), 3)


def silent(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
    stop.wait(30)


def dripping(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
    """A byte every 50 ms: each read is quick, the whole answer never comes."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/rss+xml")
    handler.end_headers()
    try:
        while not stop.wait(0.05):
            handler.wfile.write(b" ")
            handler.wfile.flush()
    except OSError:
        pass


def test_a_slow_server_times_out(tmp_path: Path, site: Site) -> None:
    site.routes["/silent"] = Route(writer=silent)
    site.routes["/drip"] = Route(writer=dripping)
    for path in ("/silent", "/drip"):
        line = one_error(run(site.url(path), "--articles", str(tmp_path), "--timeout", "0.5"), 3)
        assert "within 0.5 s" in line, line
    assert written(tmp_path) == []


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ('{"items": []}', "neither an RSS or Atom feed nor a web page"),
        ("just some words", "neither an RSS or Atom feed nor a web page"),
        ("<?xml version='1.0'?><rss version='2.0'><chan", "a broken feed, with no item read"),
        ("<html><body><nav>Home</nav></body></html>", "no story text"),
    ],
)
def test_what_is_not_a_feed_or_page_is_exit_2(
    tmp_path: Path, site: Site, content: str, needle: str
) -> None:
    kind = "text/html" if content.startswith("<html") else "application/octet-stream"
    url = serve(site, "/x", content, kind)
    line = one_error(run(url, "--articles", str(tmp_path)), 2)
    assert needle in line, line
    assert written(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("http://127.0.0.1/f", "--since", "last week"), "--since: 'last week' is not a date"),
        (("http://127.0.0.1/f", "--since", "2026-02-30"), "--since: '2026-02-30' is not a date"),
        (("ftp://127.0.0.1/f",), "is not an http(s) URL"),
        (("javascript:alert(1)",), "is not an http(s) URL"),
    ],
)
def test_bad_arguments_are_exit_2(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    line = one_error(run(*args, "--articles", str(tmp_path)), 2)
    assert needle in line, line


# --- hostile feeds ------------------------------------------------------------------------


def hostile_feed(items: int) -> str:
    entries = [
        # A title that tries to add a header line, one with controls, a script in a link.
        """<item><title>Line one&#10;Bcc: victim@example.com</title>
        <link>javascript:alert(1)</link><guid isPermaLink="false">evil-1</guid>
        <pubDate>Wed, 25 Nov 2026 10:00:00 GMT</pubDate>
        <description>&lt;img src=x onerror=alert(1)&gt;&lt;p&gt;Hello&lt;/p&gt;</description>
        </item>""",
        """<item><title>Bell&#x202E;gnp.exe ring\u0007</title>
        <link>https://evil.example/a b</link><guid isPermaLink="false">evil-2</guid>
        <pubDate>Wed, 25 Nov 2026 11:00:00 GMT</pubDate>
        <author>x@example.com (Eve&#13;&#10;Mallory)</author>
        <description>&lt;iframe src="https://evil.example"&gt;&lt;/iframe&gt;Text</description></item>""",
        """<item><title>---</title><guid isPermaLink="false">evil-3</guid>
        <pubDate>Wed, 25 Nov 2026 12:00:00 GMT</pubDate>
        <description>title: injected&#10;---&#10;body</description></item>""",
        """<item><title></title><guid isPermaLink="false">evil-4</guid>
        <description>No title</description></item>""",
    ]
    entries += [
        f"<item><title>Old item {n}</title><guid>old-{n}</guid>"
        f"<link>https://gazette.example/old/{n}</link>"
        "<pubDate>Mon, 01 Jan 2024 00:00:00 GMT</pubDate></item>"
        for n in range(items - len(entries))
    ]
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>T</title>'
        + "".join(entries)
        + "</channel></rss>"
    )


@pytest.mark.slow
def test_a_hostile_feed_of_ten_thousand_items(tmp_path: Path, site: Site) -> None:
    url = serve(site, "/evil.xml", hostile_feed(10_000), "application/rss+xml")
    folder = tmp_path / "articles"
    result = run(url, "--articles", str(folder), "--since", "2026-01-01")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        f"wrote {folder}/2026-11-25-line-one-bcc-victim-example-com.md",
        f"wrote {folder}/2026-11-25-bell-gnp-exe-ring.md",
        f"wrote {folder}/2026-11-25-article.md",
        "skipped (no title) evil-4",
    ]
    assert lines[4:-1] == [f"skipped (older than --since) Old item {n}" for n in range(996)]
    assert lines[-1] == "skipped 9,000 more items (a feed is read to its first 1,000 items)"
    first = front(folder / "2026-11-25-line-one-bcc-victim-example-com.md")
    assert first == {
        "title": "Line one Bcc: victim@example.com",
        "date": "2026-11-25T10:00:00Z",
        "source": "evil-1",
    }
    second = front(folder / "2026-11-25-bell-gnp-exe-ring.md")
    assert second["title"] == "Bell gnp.exe ring"
    assert second["author"] == "Eve Mallory"
    assert "url" not in second
    third = folder / "2026-11-25-article.md"
    assert front(third) == {"title": "---", "date": "2026-11-25T12:00:00Z", "source": "evil-3"}
    for path in folder.glob("*.md"):
        text = path.read_text(encoding="utf-8")
        assert "javascript" not in text and "onerror" not in text and "iframe" not in text
    articles = load_articles(folder)
    assert sorted(a.title for a in articles) == [
        "---",
        "Bell gnp.exe ring",
        "Line one Bcc: victim@example.com",
    ]


# --- cron: two runs at once, a real process ---------------------------------------------


def test_two_imports_at_once_write_each_item_once(tmp_path: Path, site: Site) -> None:
    url = serve(site, "/rss.xml", RSS, "application/rss+xml")
    folder = tmp_path / "articles"
    folder.mkdir()
    errors: list[BaseException] = []

    def one() -> None:
        try:
            import_url(url, folder)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(written(folder)) == 3
    assert not [p for p in folder.iterdir() if p.name.startswith(".import-")]


@pytest.mark.slow
def test_import_then_digest_in_real_processes(tmp_path: Path, site: Site) -> None:
    feed = serve(site, "/feed.atom", ATOM, "application/atom+xml")
    page = serve(site, "/2026/11/why-two-years/", PAGE, "text/html")
    for url in (feed, page):
        done = run_mailer("import", url, "--since", "2026-11-01", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
    assert written(tmp_path / "articles") == [
        "2026-11-20-why-the-river-path-took-two-years.md",
        "2026-11-24-the-river-path-reopens.md",
    ]
    again = run_mailer("import", feed, cwd=tmp_path)
    assert again.stdout.count("wrote") == 1  # the old item, now that --since is gone
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "example.csv").write_text("email,name\na@example.org,A\n")
    digest = run_mailer("digest", "--date", "2026-11-27", "--days", "14", cwd=tmp_path)
    assert digest.returncode == 0, digest.stderr
    text = (tmp_path / "previews" / "digest-2026-11-27" / "digest.txt").read_text()
    assert "The river path reopens" in text and "Why the river path took two years" in text


def test_html_in_a_title_is_read_as_text(tmp_path: Path, site: Site) -> None:
    feed = ATOM.replace(
        "<title>The river path reopens</title>",
        '<title type="html">Fish &amp;amp; &lt;b&gt;chips&lt;/b&gt; &amp;lt;3</title>',
    )
    url = serve(site, "/feed.atom", feed, "application/atom+xml")
    result = run(url, "--articles", str(tmp_path), "--since", "2026-11-01")
    assert result.stdout.splitlines()[0] == f"wrote {tmp_path}/2026-11-24-fish-chips-3.md"
    assert front(tmp_path / "2026-11-24-fish-chips-3.md")["title"] == "Fish & chips <3"


# --- from an adversarial probe ---------------------------------------------------------------


def slow_headers(handler: BaseHTTPRequestHandler, stop: threading.Event) -> None:
    """A header line every 0.2 s, for ever: each read is quick, the answer never starts."""
    handler.send_response(200)
    try:
        for n in range(10_000):
            handler.send_header(f"X-Slow-{n}", "x")
            handler.flush_headers()
            if stop.wait(0.2):
                return
    except OSError:
        pass


def test_a_server_that_trickles_its_headers_is_bounded_too(tmp_path: Path, site: Site) -> None:
    site.routes["/slowheaders"] = Route(writer=slow_headers)
    started = time.monotonic()
    line = one_error(
        run(site.url("/slowheaders"), "--articles", str(tmp_path), "--timeout", "1"), 3
    )
    assert "within 1 s" in line, line
    assert time.monotonic() - started < 10
    assert written(tmp_path) == []


def gzipped(data: bytes, times: int = 1) -> bytes:
    for _ in range(times):
        data = gzip.compress(data, compresslevel=9)
    return data


def test_a_compressed_feed_is_read_and_a_compression_bomb_is_refused(
    tmp_path: Path, site: Site
) -> None:
    site.routes["/gz"] = Route(
        gzipped(ATOM.encode("utf-8")),
        content_type="application/atom+xml",
        headers={"Content-Encoding": "gzip"},
    )
    assert run(site.url("/gz"), "--articles", str(tmp_path / "ok")).exit_code == 0
    assert written(tmp_path / "ok")
    zeros = b"<!--" + b"0" * 200_000_000 + b"-->"  # 200 MB of nothing, a few hundred KB sent
    bombs = {
        "/bomb": Route(gzipped(zeros), headers={"Content-Encoding": "gzip"}),
        "/double": Route(gzipped(zeros, 2), headers={"Content-Encoding": "gzip, gzip"}),
        "/brotli": Route(b"x", headers={"Content-Encoding": "br"}),
    }
    site.routes.update(bombs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    lines = [one_error(run(site.url(p), "--articles", str(tmp_path)), 3) for p in bombs]
    assert "larger than 10,485,760 bytes" in lines[0]
    assert "not read" in lines[1] and "not read" in lines[2]
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert grown_kib < 100 * 1024  # never near the 200 MB it unpacks to
    assert written(tmp_path) == []


def test_an_absurd_feed_date_is_taken_as_no_date(
    tmp_path: Path, site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILER_TIMEZONE", "Pacific/Kiritimati")
    feed = ATOM.replace("2026-11-24T09:30:00+01:00", "0001-01-01T00:00:00Z")
    assert feed != ATOM
    url = serve(site, "/ancient", feed, "application/atom+xml")
    result = run(url, "--articles", str(tmp_path))
    assert result.exit_code == 0, result.output
    assert not any(name.startswith("0001-") for name in written(tmp_path))
    digest = invoke("digest", "--articles", str(tmp_path), "--out", str(tmp_path / "pv"))
    assert "out of range" not in digest.output
