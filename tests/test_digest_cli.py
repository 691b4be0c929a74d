"""`mailer digest` end to end as a dry run: selection, bad inputs, previews, lists, no network."""

from __future__ import annotations

import datetime as dt
import email
import re
import socket
import subprocess
from email.message import EmailMessage
from pathlib import Path

import pytest
from typer.testing import Result

from mailer.articles import load_articles
from mailer.digest import build_digest, default_subject, select_articles
from mailer.settings import SAMPLE_SECRET_KEY
from mailer.tokens import verify_token
from tests.cli import error_lines, invoke
from tests.conftest import REPO
from tests.mail import body as text_of
from tests.mail import parsed
from tests.process import run_mailer

DATE = "2026-11-27"
FOLDER = Path("previews") / f"digest-{DATE}"


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    """``mailer digest ARGS``, in process."""
    return invoke("digest", *args, env=env)


def assert_nothing_written(root: Path) -> None:
    previews = root / "previews"
    assert not previews.exists() or not any(previews.iterdir()), list(previews.iterdir())
    assert not [p for p in root.rglob(".digest-*")]


def messages(root: Path, folder: Path = FOLDER) -> list[tuple[bytes, EmailMessage]]:
    out = []
    for path in sorted((root / folder).glob("*.eml")):
        data = path.read_bytes()
        out.append((data, parsed(data)))
    return out


def address(msg: EmailMessage, header: str = "To") -> str:
    """The address, with raw UTF-8 (RFC 6532) that the parser keeps as surrogates decoded."""
    spec = msg[header].addresses[0].addr_spec
    return spec.encode("utf-8", "surrogateescape").decode("utf-8")


def article(folder: Path, day: str, title: str, **extra: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"title: {title}", f"date: {day}", f"url: https://example.com/{day}"]
    lines += [f"{key}: {value}" for key, value in extra.items()]
    path = folder / f"{day}-{len(list(folder.iterdir()))}.md"
    path.write_text("---\n" + "\n".join(lines) + "\n---\n\nA story.\n", encoding="utf-8")
    return path


def titles(root: Path, folder: Path = FOLDER) -> list[str]:
    text = (root / folder / "digest.txt").read_text(encoding="utf-8")
    return re.findall(r"^\d+\. (.+)$", text, re.MULTILINE)


# --- bad inputs -----------------------------------------------------------------------------

BAD_ARTICLES = {
    "invalid-yaml.md": (
        b"---\ntitle: Fine\ndate: 2026-11-27\n  url: https://example.com/x\n---\nBody.\n",
        "invalid-yaml.md:4: invalid YAML",
    ),
    "no-title.md": (b"---\ndate: 2026-11-27\nurl: https://example.com/x\n---\nBody.\n", "title"),
    "no-title.txt": (
        b"URL: https://example.com/x\nDate: 2026-11-27\n\nJust a sentence, no headline.\n",
        "no title",
    ),
    "latin1.txt": (
        "Title: Caf\xe9 opens\nDate: 2026-11-27\nURL: https://example.com/x\n\nCaf\xe9.\n".encode(
            "latin-1"
        ),
        "latin1.txt:1: not valid UTF-8",
    ),
    "picture.txt": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "binary"),
    "empty.md": (b"", "empty"),
    "blank.txt": (b"  \n\n\t\n", "empty"),
    "bad-date.md": (
        b"---\ntitle: Fine\ndate: 27/11/2026\nurl: https://example.com/x\n---\nBody.\n",
        "'27/11/2026' is not a date",
    ),
    "no-front-matter.md": (b"# Title\n\nBody.\n", "front matter"),
    "unclosed.md": (b"---\ntitle: Fine\ndate: 2026-11-27\nBody.\n", "not closed"),
    "bad-url.md": (
        b"---\ntitle: Fine\ndate: 2026-11-27\nurl: javascript:alert(1)\n---\nBody.\n",
        "http(s) URL",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_ARTICLES))
def test_a_bad_article_is_one_clear_error_and_nothing_is_written(sample: Path, name: str) -> None:
    content, needle = BAD_ARTICLES[name]
    (sample / "articles" / name).write_bytes(content)
    result = run("--date", DATE)
    assert result.exit_code == 2
    (line,) = error_lines(result.stderr)
    assert f"articles/{name}" in line
    assert needle in line
    assert result.stdout == ""
    assert_nothing_written(sample)


@pytest.mark.slow
def test_a_bad_article_through_a_real_process(sample: Path) -> None:
    name, (content, needle) = "invalid-yaml.md", BAD_ARTICLES["invalid-yaml.md"]
    (sample / "articles" / name).write_bytes(content)
    done = run_mailer("digest", "--date", DATE, cwd=sample)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"Error: articles/{name}:4: invalid YAML front matter: mapping values are not allowed here"
    ]
    assert done.stdout == ""
    assert needle in done.stderr
    assert_nothing_written(sample)


def test_a_missing_articles_folder_is_a_clear_error(sample: Path) -> None:
    result = run("--date", DATE, "--articles", "no-such-folder")
    assert result.exit_code == 2
    (line,) = error_lines(result.stderr)
    assert "no-such-folder" in line
    assert_nothing_written(sample)


def test_a_bad_date_flag_is_a_clear_error(sample: Path) -> None:
    result = run("--date", "27-11-2026")
    assert result.exit_code == 2
    assert error_lines(result.stderr) == [
        "Error: --date: '27-11-2026' is not a date (use YYYY-MM-DD)"
    ]
    assert_nothing_written(sample)


# --- selection ------------------------------------------------------------------------------


def test_the_window_is_date_minus_days_exclusive_to_date_inclusive(sample: Path) -> None:
    folder = sample / "window"
    article(folder, "2026-11-20", "Exactly seven days before")
    article(folder, "2026-11-21", "Six days before")
    article(folder, "2026-11-24", "Midweek")
    article(folder, "2026-11-27", "On the issue date")
    article(folder, "2026-11-28", "After the issue date")
    result = run("--date", DATE, "--articles", "window")
    assert result.exit_code == 0, result.output
    assert titles(sample) == ["On the issue date", "Midweek", "Six days before"]
    assert "(3 articles)" in result.stdout


def test_days_moves_the_start_of_the_window(sample: Path) -> None:
    folder = sample / "window"
    article(folder, "2026-11-24", "Three days before")
    article(folder, "2026-11-25", "Two days before")
    article(folder, "2026-11-27", "On the day")
    result = run("--date", DATE, "--articles", "window", "--days", "3")
    assert result.exit_code == 0, result.output
    assert titles(sample) == ["On the day", "Two days before"]


def test_newest_first_and_capped_by_max_articles(sample: Path) -> None:
    result = run("--date", DATE, "--max-articles", "2")
    assert result.exit_code == 0, result.output
    assert titles(sample) == [
        "The river path reopens after two years of flood repairs",
        "Council budget passes 7–4, with libraries spared",
    ]
    (_, msg), *_ = messages(sample)
    assert msg.get_body(preferencelist=("html",)) is not None
    assert text_of(msg, "html").count('class="item-title"') == 2


def test_default_subject_and_subject_override(sample: Path) -> None:
    assert run("--date", DATE).exit_code == 0
    (_, msg), *_ = messages(sample)
    assert msg["Subject"] == "The Sample Weekly: week of November 27, 2026"

    result = run("--date", DATE, "--subject", "Hartley's bakery, and more — this week")
    assert result.exit_code == 0, result.output
    for _, msg in messages(sample):
        assert msg["Subject"] == "Hartley's bakery, and more — this week"


def test_an_empty_window_is_a_clear_error_and_writes_nothing(sample: Path) -> None:
    result = run("--date", "2026-06-01")
    assert result.exit_code == 2
    (line,) = error_lines(result.stderr)
    assert "no articles" in line and "2026-05-25" in line and "2026-06-01" in line
    assert_nothing_written(sample)


def test_selection_without_the_cli(sample: Path) -> None:
    articles = load_articles(Path("articles"))
    issue = dt.date(2026, 11, 27)
    chosen = select_articles(articles, issue_date=issue, days=7, max_articles=None)
    assert [a.date.day for a in chosen] == [27, 26, 25, 24, 22, 21]
    assert select_articles(articles, issue_date=issue, days=1, max_articles=None)[0].date == issue
    assert len(select_articles(articles, issue_date=issue, days=30, max_articles=3)) == 3
    digest = build_digest(articles, newsletter="N", issue_date=dt.date(2026, 1, 5))
    assert digest.articles == ()
    assert (
        digest.subject == default_subject("N", dt.date(2026, 1, 5)) == "N: week of January 5, 2026"
    )


def test_each_item_has_title_summary_link_author_and_date(sample: Path) -> None:
    assert run("--date", DATE).exit_code == 0
    (_, msg), *_ = messages(sample)
    text = text_of(msg, "plain")
    assert "2. Council budget passes 7–4, with libraries spared\n" in text
    assert "   Daniel Brooks · November 26, 2026\n" in text
    assert "   Late amendments moved £400,000 from road resurfacing" in text
    assert "   Read more: https://example.com/news/budget-vote\n" in text
    html = text_of(msg, "html")
    assert 'href="https://example.com/news/budget-vote"' in html
    assert "Priya Nair · November 25, 2026" in html  # the byline of the cluttered .txt


# --- previews -------------------------------------------------------------------------------


def test_previews_parse_back_into_text_then_html(sample: Path) -> None:
    result = run("--date", DATE)
    assert result.exit_code == 0, result.output
    assert "Wrote 5 messages for 'The Sample Weekly: week of November 27, 2026'" in result.stdout
    assert str(FOLDER) in result.stdout
    folder = sample / FOLDER
    assert sorted(p.name for p in folder.iterdir()) == [
        ".mailer-preview",
        "000001-alice_at_example.org.eml",
        "000002-bob_at_example.net.eml",
        "000003-carol_at_example.com.eml",
        "000004-dmitri_at_example.org.eml",
        "000005-zo__at_example.com.eml",
        "digest.html",
        "digest.txt",
        "media",  # the market hall's picture, which digest.html shows
    ]
    parsed = messages(sample)
    assert len(parsed) == 5
    for data, msg in parsed:
        assert msg.get_content_type() == "multipart/alternative"
        parts = list(msg.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        assert [p.get_content_charset() for p in parts] == ["utf-8", "utf-8"]
        html = text_of(msg, "html")
        assert re.search(r'<h1 class="brand" style=[^>]*font-size:30px', html)
        assert html.count(' style="') > 20
        style_blocks = re.findall(r"<style>(.*?)</style>", html, re.DOTALL)
        assert any("@media only screen and (max-width: 620px)" in b for b in style_blocks)
        assert ".brand {" not in "".join(style_blocks).split("@media")[0]  # inlined, not kept
        assert all(len(line) <= 998 for line in data.split(b"\r\n"))
        assert b"\n" not in data.replace(b"\r\n", b"")


def test_list_headers_and_unique_ids_and_tokens(sample: Path) -> None:
    assert run("--date", DATE).exit_code == 0
    ids, urls = set(), set()
    for _, msg in messages(sample):
        to = address(msg)
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg["List-Id"] == "The Sample Weekly <the-sample-weekly.example.com>"
        match = re.fullmatch(
            r"<(https://example\.com/unsubscribe\?token=([\w.-]+))>", msg["List-Unsubscribe"]
        )
        assert match, msg["List-Unsubscribe"]
        url, token = match.groups()
        assert verify_token(SAMPLE_SECRET_KEY, token) == ("example", to.lower())
        assert url in text_of(msg, "plain")  # a visible link in both bodies
        assert f'href="{url}"' in text_of(msg, "html")
        from_domain = msg["From"].addresses[0].domain
        assert msg["Message-ID"].endswith(f"@{from_domain}>")
        ids.add(msg["Message-ID"])
        urls.add(url)
    assert len(ids) == len(urls) == 5


def test_to_carries_the_name_and_falls_back_in_the_bodies(sample: Path) -> None:
    assert run("--date", DATE).exit_code == 0
    by_address = {address(msg): msg for _, msg in messages(sample)}
    assert str(by_address["alice@example.org"]["To"]) == "Alice Martin <alice@example.org>"
    zoe = by_address["zoë@example.com"]["To"].addresses[0]
    assert zoe.display_name == "Zoë Durand"
    carol = by_address["carol@example.com"]
    assert str(carol["To"]) == "carol@example.com"
    assert "Hi reader," in text_of(carol, "plain")
    assert "Hi reader," in text_of(carol, "html")
    assert "Hi Zoë Durand," in text_of(by_address["zoë@example.com"], "html")


def test_long_names_and_long_paragraphs_keep_lines_under_998(sample: Path) -> None:
    # Lists cap names at 256 characters; this one has 245 characters and over 450 octets.
    long_name = ("Александра Константиновна Преображенская " * 6).strip()
    assert len(long_name) > 240 and len(long_name.encode()) > 450
    (sample / "lists" / "long.csv").write_text(
        f"email,name\nlong@example.org,{long_name}\n", encoding="utf-8"
    )
    paragraph = " ".join(["Überlange Zeile ohne Umbruch"] * 180)
    assert len(paragraph) > 5000
    (sample / "articles" / "2026-11-27-long.md").write_text(
        "---\ntitle: A very long story\ndate: 2026-11-27\nurl: https://example.com/long\n"
        f"summary: {paragraph}\n---\n\n{paragraph}\n",
        encoding="utf-8",
    )
    result = run("--date", DATE, "--list", "long")
    assert result.exit_code == 0, result.output
    ((data, msg),) = messages(sample)
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    assert paragraph in text_of(msg, "html")
    raw_to = data.split(b"\r\n\r\n")[0].decode().replace("\r\n ", " ").split("\r\n")[0]
    phrase = raw_to.removeprefix("To: ").rsplit("<", 1)[0]
    decoded = email.header.make_header(email.header.decode_header(phrase))
    assert str(decoded).strip() == long_name


def test_file_names_cannot_escape_the_preview_folder(sample: Path) -> None:
    (sample / "lists" / "odd.csv").write_text(
        "email,name\nx/y@example.org,Slash\n-dash@example.org,Dash\n", encoding="utf-8"
    )
    assert run("--date", DATE, "--list", "odd").exit_code == 0
    names = sorted(p.name for p in (sample / FOLDER).glob("*.eml"))
    assert names == ["000001-x_y_at_example.org.eml", "000002--dash_at_example.org.eml"]


def test_rerunning_replaces_the_issue_folder_whole(sample: Path) -> None:
    assert run("--date", DATE).exit_code == 0
    (sample / FOLDER / "stale.eml").write_text("old", encoding="utf-8")
    assert run("--date", DATE, "--limit", "2").exit_code == 0
    assert len(list((sample / FOLDER).glob("*.eml"))) == 2
    assert not [p for p in (sample / "previews").iterdir() if p.name.startswith(".")]


# --- header injection -----------------------------------------------------------------------


def test_a_subject_hiding_a_newline_is_refused(sample: Path) -> None:
    result = run("--date", DATE, "--subject", "News =?UTF-8?Q?Alice=0ABcc:_x@evil.com?=")
    assert result.exit_code == 2
    (line,) = error_lines(result.stderr)
    assert "Subject" in line
    assert "Bcc:" not in result.output.replace("Bcc:_", "")
    assert_nothing_written(sample)


def test_a_raw_newline_in_the_subject_is_refused(sample: Path) -> None:
    result = run("--date", DATE, "--subject", "News\nBcc: x@evil.com")
    assert result.exit_code == 2
    assert len(error_lines(result.stderr)) == 1
    assert_nothing_written(sample)


@pytest.mark.slow
def test_a_name_hiding_a_newline_never_becomes_a_header(sample: Path) -> None:
    (sample / "lists" / "evil.csv").write_text(
        "email,name\nalice@example.org,=?UTF-8?Q?Alice=0ABcc:_x@evil.com?=\n", encoding="utf-8"
    )
    # A real process with a timeout: a failure here must not hang the whole suite.
    try:
        done = run_mailer("digest", "--date", DATE, "--list", "evil", cwd=sample, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("mailer digest hung after the message stream raised HeaderError")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    # the row is refused as invalid, named by file and line; then nobody is left to mail
    assert "evil.csv:2: name: an encoded word hides a line break" in done.stderr
    (line,) = error_lines(done.stderr)
    assert "no valid recipients" in line
    for path in sample.rglob("*.eml"):
        assert not re.search(rb"^Bcc:", path.read_bytes(), re.MULTILINE | re.IGNORECASE)
    assert_nothing_written(sample)


# --- lists (read path) ----------------------------------------------------------------------


MESSY_LIST = (
    "\ufeffemail , name , city\n"
    "\n"
    "  alice@example.org  ,  Alice Martin ,Northfield\n"
    "not-an-address,Nobody,Nowhere\n"
    "\n"
    "ALICE@Example.org,Alice Again,Elsewhere\n"
    "bob@example.net,Bob Chen,Riverside\n"
    "carol@,Carol,Hartley\n"
    "dmitri@example.org,,Riverside\n"
)


def test_a_messy_list_is_read_with_warnings_naming_file_and_line(sample: Path) -> None:
    (sample / "lists" / "messy.csv").write_text(MESSY_LIST, encoding="utf-8")
    result = run("--date", DATE, "--list", "messy")
    assert result.exit_code == 0, result.output
    warnings = [ln for ln in result.stderr.splitlines() if "warning" in ln.lower()]
    assert len(warnings) == 2
    assert "lists/messy.csv:4" in warnings[0] and "lists/messy.csv:8" in warnings[1]
    parsed = messages(sample)
    assert [str(msg["To"]) for _, msg in parsed] == [
        "Alice Martin <alice@example.org>",  # stripped; the later duplicate is dropped
        "Bob Chen <bob@example.net>",
        "dmitri@example.org",
    ]
    assert "Hi Alice Martin," in text_of(parsed[0][1], "plain")


def test_strict_makes_an_invalid_row_fatal(sample: Path) -> None:
    (sample / "lists" / "messy.csv").write_text(MESSY_LIST, encoding="utf-8")
    result = run("--date", DATE, "--list", "messy", "--strict")
    assert result.exit_code == 2
    (line,) = error_lines(result.stderr)
    assert "lists/messy.csv:4" in line
    assert_nothing_written(sample)


def test_limit_stops_after_n_recipients(sample: Path) -> None:
    result = run("--date", DATE, "--limit", "2")
    assert result.exit_code == 0, result.output
    assert "Wrote 2 messages" in result.stdout
    assert [address(msg) for _, msg in messages(sample)] == [
        "alice@example.org",
        "bob@example.net",
    ]


def test_a_list_given_as_a_path(sample: Path) -> None:
    (sample / "elsewhere").mkdir()
    (sample / "elsewhere" / "few.csv").write_text(
        "name,email\nAnn,ann@example.org\n", encoding="utf-8"
    )
    assert run("--date", DATE, "--list", "elsewhere/few.csv").exit_code == 0
    ((_, msg),) = messages(sample)
    assert str(msg["To"]) == "Ann <ann@example.org>"


# --- no network -----------------------------------------------------------------------------


def test_a_dry_run_opens_no_connection(sample: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise OSError("network use in a dry run")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    templates = sample / "net-templates"
    templates.mkdir()
    base = (REPO / "templates" / "base.html.j2").read_text(encoding="utf-8")
    (templates / "base.html.j2").write_text(
        base.replace(
            "<style>",
            '<link rel="stylesheet" href="http://127.0.0.1:9/x.css">\n'
            '<link rel="stylesheet" href="https://example.invalid/y.css">\n<style>',
        ),
        encoding="utf-8",
    )
    result = run("--date", DATE, env={"MAILER_TEMPLATES_DIR": str(templates)})
    assert result.exit_code == 0, result.output
    assert attempts == []
    (_, msg), *_ = messages(sample)
    assert "http://127.0.0.1:9/x.css" in text_of(msg, "html")  # left alone, never fetched
