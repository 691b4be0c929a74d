"""The links a digest carries to the site: "View in browser", List-Archive, per-recipient
forward links, and articles without a ``url:`` (their archive page, or their full text)."""

from __future__ import annotations

import datetime as dt
import os
import re
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from mailer.errors import HeaderError, TokenError
from mailer.headers import page_slug
from mailer.messages import Composer, Envelope
from mailer.models import Recipient, Rendered, Spliced
from mailer.settings import SAMPLE_SECRET_KEY
from mailer.tokens import verify_token
from tests.cli import invoke
from tests.mail import body, parsed

DATE = "2026-11-27"
SITE = "https://news.example.com"
FOLDER = Path("previews") / f"digest-{DATE}"
SLUGS = [
    "2026-11-27-river-path-reopens",
    "2026-11-26-budget-vote",
    "2026-11-25-bakery-apprentices",
    "2026-11-24-school-robotics",
    "2026-11-22-market-hall",
    "2026-11-21-winter-shelter",
]
FORWARD_RE = re.compile(re.escape(SITE) + r"/forward/[^\s\"<>]+")
SCRAPED = (
    "Library opens on Sundays from January\n\n"
    "The central library will open on Sundays from January, the council said on Thursday.\n\n"
    'Opening hours will be eleven to four. "People asked for it for years," said the librarian.\n'
)


def previews(root: Path, *args: str, env: dict[str, str] | None = None) -> list[EmailMessage]:
    result = invoke("digest", "--date", DATE, *args, env=env)
    assert result.exit_code == 0, result.output
    return [parsed(p.read_bytes()) for p in sorted((root / FOLDER).glob("*.eml"))]


def address(msg: EmailMessage) -> str:
    """The To address, with raw UTF-8 (RFC 6532) that the parser keeps as surrogates decoded."""
    spec = str(msg["To"].addresses[0].addr_spec)
    return spec.encode("utf-8", "surrogateescape").decode("utf-8")


def site() -> dict[str, str]:
    return {"MAILER_PUBLIC_URL": SITE}


def forward_links(document: str) -> list[str]:
    return [link.replace("&amp;", "&") for link in FORWARD_RE.findall(document)]


def test_with_a_public_url_each_message_links_to_its_issue_and_the_archive(sample: Path) -> None:
    messages = previews(sample, env=site())
    assert len(messages) == 5
    for msg in messages:
        assert msg["List-Archive"] == f"<{SITE}/issues/>"
        html, text = body(msg, "html"), body(msg, "plain")
        assert f'<a href="{SITE}/issues/{DATE}/"' in html
        assert "View in browser" in html
        assert text.startswith(f"View in browser: {SITE}/issues/{DATE}/\n")
        assert f"{SITE}/issues/" in text
    html_preview = (sample / FOLDER / "digest.html").read_text(encoding="utf-8")
    assert f"{SITE}/issues/{DATE}/" in html_preview


def test_each_recipient_gets_forward_links_signed_for_them_and_for_forwarding_only(
    sample: Path,
) -> None:
    seen_tokens = set()
    for msg in previews(sample, env=site()):
        email = address(msg)
        for kind in ("html", "plain"):
            links = forward_links(body(msg, kind))
            assert [urlsplit(link).path for link in links] == [f"/forward/{s}" for s in SLUGS]
            tokens = {parse_qs(urlsplit(link).query)["token"][0] for link in links}
            (token,) = tokens  # one token per recipient, the same for every article
            assert verify_token(SAMPLE_SECRET_KEY, token, purpose="forward") == ("example", email)
            with pytest.raises(TokenError):
                verify_token(SAMPLE_SECRET_KEY, token, purpose="unsubscribe")
            seen_tokens.add(token)
        # Each forward link's own words name its article (a screen reader's list of links).
        named = re.findall(r">Forward “([^<]+)” to a friend</a>", body(msg, "html"))
        assert len(named) == len(set(named)) == len(SLUGS)
        # The unsubscribe token is another one, which cannot forward.
        found = re.search(r"token=([A-Za-z0-9_.-]+)", str(msg["List-Unsubscribe"]))
        assert found is not None
        token = found.group(1)
        assert token not in seen_tokens
        with pytest.raises(TokenError):
            verify_token(SAMPLE_SECRET_KEY, token, purpose="forward")
    assert len(seen_tokens) == 5


def test_without_a_public_url_there_is_no_site_link_header_or_forward_link(sample: Path) -> None:
    for msg in previews(sample):
        assert msg["List-Archive"] is None
        for kind in ("html", "plain"):
            document = body(msg, kind)
            assert "View in browser" not in document
            assert "Forward to a friend" not in document
            assert "/forward/" not in document
            assert "/issues/" not in document


def write_scraped(sample: Path) -> Path:
    path = sample / "articles" / "library-sundays.txt"
    path.write_text(SCRAPED, encoding="utf-8")
    # No header lines at all: the file's time dates it.
    when = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC).timestamp()
    os.utime(path, (when, when))
    return path


def article_block(text: str, title: str) -> str:
    """The lines of one numbered article in the text part."""
    start = text.index(title)
    following = re.search(r"^\d+\. ", text[start:], re.MULTILINE)
    return text[start : start + following.start()] if following else text[start:]


def test_an_article_without_url_reads_more_on_its_archive_page(sample: Path) -> None:
    write_scraped(sample)
    messages = previews(sample, env=site())
    page = f"{SITE}/articles/library-sundays/"
    for msg in messages:
        html, text = body(msg, "html"), body(msg, "plain")
        assert f'<a href="{page}"' in html
        block = article_block(text, "Library opens on Sundays from January")
        assert f"Read more: {page}" in block
        assert f"{SITE}/forward/library-sundays?token=" in block
        assert "Opening hours will be eleven" not in block  # a summary, not the full text


def test_an_article_without_url_and_no_public_url_carries_its_full_text(sample: Path) -> None:
    write_scraped(sample)
    (msg, *_) = previews(sample)
    html, text = body(msg, "html"), body(msg, "plain")
    block = article_block(text, "Library opens on Sundays from January")
    assert "Read more" not in block
    assert "The central library will open on Sundays" in block
    assert "Opening hours will be eleven to four." in block
    assert "Opening hours will be eleven to four." in html
    title = re.search(r"<h2[^>]*>((?:(?!</h2>).)*Library opens(?:(?!</h2>).)*)</h2>", html, re.S)
    assert title is not None and "<a" not in title.group(1)  # nothing to link to
    # The other articles still link to their own pages.
    assert "Read more: https://example.com/news/budget-vote" in text


def forward_preview(sample: Path, slug: str, env: dict[str, str]) -> tuple[str, str]:
    result = invoke(
        "forward", slug, "--to", "friend@example.net", "--sender", "alice@example.org", env=env
    )
    assert result.exit_code == 0, result.output
    folder = sample / "previews" / f"forward-{slug}"
    return (
        (folder / "forward.html").read_text(encoding="utf-8"),
        (folder / "forward.txt").read_text(encoding="utf-8"),
    )


def test_a_forward_of_an_article_without_url_links_to_its_page_or_to_nothing(
    sample: Path,
) -> None:
    write_scraped(sample)
    html, text = forward_preview(sample, "library-sundays", site())
    page = f"{SITE}/articles/library-sundays/"
    assert f'<a class="read-more" href="{page}"' in html
    assert f"Read the original: {page}" in text
    assert "Opening hours will be eleven to four." in text
    html, text = forward_preview(sample, "library-sundays", {})
    assert "Read the original" not in html and "Read the original" not in text
    assert "Opening hours will be eleven to four." in html
    assert "None" not in text


def test_a_slug_that_is_not_a_path_segment_is_made_one() -> None:
    assert page_slug("2026-11-27-river-path-reopens") == "2026-11-27-river-path-reopens"
    assert page_slug("Release_2.0") == "Release_2.0"
    for hostile in ("../../etc/passwd", "..", ".", ".hidden", "a/b", "a b", "x%2F..", "é"):
        made = page_slug(hostile)
        assert re.fullmatch(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?", made), (hostile, made)
    assert page_slug("../../etc/passwd") == "etc-passwd"
    assert len(page_slug("a " * 500)) <= 200


def rendered() -> Rendered:
    doc = Spliced(literals=("Hi ", ""), slots=("forward_token",))
    return Rendered(subject="S", html=doc, text=doc)


@pytest.mark.parametrize(
    "url",
    [
        "https://news.example.com/issues/\r\nBcc: x@example.net",
        "https://news.example.com/is sues/",
        "javascript:alert(1)",
        "https://news.example.com/" + "x" * 1000,
        "https://nëws.example.com/issues/",
    ],
)
def test_a_bad_list_archive_url_is_refused(url: str) -> None:
    envelope = Envelope("N", "news@example.com", "n.example.com", SITE, archive_url=url)
    with pytest.raises(HeaderError, match="List-Archive"):
        Composer(rendered(), envelope, unsubscribe_token=None, campaign_key="c")


def test_the_forward_token_is_filled_in_per_recipient_only_when_printed() -> None:
    calls: list[str] = []

    def token(r: Recipient) -> str:
        calls.append(r.email)
        return f"tok-{r.email}"

    envelope = Envelope("N", "news@example.com", "n.example.com", SITE)
    composer = Composer(
        rendered(), envelope, unsubscribe_token=None, campaign_key="c", forward_token=token
    )
    message = parsed(composer.compose(Recipient("a@example.org"), 1).data)
    assert body(message, "plain") == "Hi tok-a@example.org"
    plain = Spliced(literals=("Hi",), slots=())
    quiet = Composer(
        Rendered("S", plain, plain),
        envelope,
        unsubscribe_token=None,
        campaign_key="c",
        forward_token=token,
    )
    quiet.compose(Recipient("b@example.org"), 1)
    assert calls == ["a@example.org"]
