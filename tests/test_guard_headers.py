"""Header edges from settings: List-Unsubscribe length and URL shape, List-Id, From domain.

Every message here is composed for real and parsed back; every setting goes through the
real CLI, which must refuse a bad value with one ``Error:`` line naming it and exit 2.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from typer.testing import Result

from mailer.errors import ConfigError, HeaderError
from mailer.headers import MAX_LINE, check_header_value
from mailer.messages import Composer, Envelope
from mailer.models import Recipient, Rendered, Spliced
from mailer.settings import Settings, load_settings
from mailer.tokens import MAX_LIST_NAME_OCTETS, MAX_TOKEN_CHARS, make_token, verify_token
from tests.cli import invoke
from tests.mail import body, decoded_display_name, long_lines, parsed, raw_header

KEY = "a-real-secret-key-for-the-header-tests-0123"
PREFIX = "List-Unsubscribe: <"
# A longest address whose lower-case form is longer still: 64 "İ" (2 octets each, 3 once
# lower-cased) before the @, and a 125-octet domain: 254 octets.
LONGEST = "İ" * 64 + "@" + "a" * 60 + "." + "b" * 60 + ".com"


def rendered() -> Rendered:
    """A minimal issue, with the personal fields the real templates use."""
    return Rendered(
        subject="The Weekly: week of November 27, 2026",
        html=Spliced(
            ("<p>Hi ", '</p><p><a href="', '">Unsubscribe</a></p>'), ("name", "unsubscribe_url")
        ),
        text=Spliced(("Hi ", "\nUnsubscribe: ", "\n"), ("name", "unsubscribe_url")),
    )


def composer(settings: Settings, list_name: str = "example") -> Composer:
    secret = settings.secret_key.get_secret_value()
    return Composer(
        rendered(),
        Envelope(
            from_name=settings.newsletter_name,
            from_address=settings.from_address,
            list_id=settings.effective_list_id,
            unsubscribe_url=settings.unsubscribe_url,
            reply_to=settings.reply_to,
            unsubscribe_mailto=settings.unsubscribe_mailto,
        ),
        unsubscribe_token=lambda r: make_token(secret, list_name, r.email),
        campaign_key="The Weekly 2026-11-27",
        name_fallback=settings.name_fallback,
    )


def settings_error(name: str, value: str, tmp_path: Path) -> str:
    """The one Error: line the real CLI gives for one bad setting (exit code 2)."""
    result: Result = invoke("lists", env={name: value, "MAILER_LISTS_DIR": str(tmp_path)})
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.output
    assert lines[0].startswith(f"Error: setting {name}: "), lines[0]
    return lines[0]


def unsubscribe_targets(data: bytes) -> list[str]:
    value = str(parsed(data)["List-Unsubscribe"])
    return [target.strip().strip("<>") for target in value.split(",")]


def token_of(url: str) -> str:
    (token,) = parse_qs(urlsplit(url).query)["token"]
    return token


# --- List-Unsubscribe: length ------------------------------------------------------------------


def test_the_longest_real_token_is_within_the_bound() -> None:
    token = make_token(KEY, "x" * MAX_LIST_NAME_OCTETS, LONGEST)
    assert len(LONGEST.encode()) == 254
    assert len(token) <= MAX_TOKEN_CHARS
    assert verify_token(KEY, token) == ("x" * MAX_LIST_NAME_OCTETS, LONGEST.lower())


def test_a_2000_character_unsubscribe_url_is_refused_at_load(tmp_path: Path) -> None:
    url = "https://example.com/unsubscribe/" + "a" * 2000
    line = settings_error("MAILER_UNSUBSCRIBE_URL", url, tmp_path)
    assert "998" in line and "a" * 50 not in line


def test_the_longest_accepted_url_with_the_longest_token_fits_in_998_octets(
    tmp_path: Path,
) -> None:
    base = "https://example.com/u?campaign=weekly&x="
    with pytest.raises(ConfigError) as caught:
        load_settings(unsubscribe_url=base + "a" * 1000, secret_key=KEY)
    found = re.search(r"may have at most (\d+) characters", caught.value.message)
    assert found is not None
    longest_url = base + "a" * (int(found.group(1)) - len(base))
    load_settings(unsubscribe_url=longest_url, secret_key=KEY)  # fits
    line = settings_error("MAILER_UNSUBSCRIBE_URL", longest_url + "a", tmp_path)
    assert f"at most {len(longest_url)} characters" in line

    settings = load_settings(
        unsubscribe_url=longest_url, unsubscribe_mailto="unsubscribe@example.com", secret_key=KEY
    )
    # A token as long as tokens can be fills the line exactly: the check is not off by one.
    c = composer(settings)
    longest = Composer(
        rendered(), c.envelope, unsubscribe_token=lambda r: "A" * MAX_TOKEN_CHARS, campaign_key="c"
    )
    out = longest.compose(Recipient("ann@example.org"), 1)
    head = out.data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    first = next(line for line in head if line.startswith(PREFIX.encode()))
    assert len(first) == MAX_LINE
    assert long_lines(out.data) == []
    # And a real one, for the longest list name and address, parses back and verifies.
    out = composer(settings, "x" * MAX_LIST_NAME_OCTETS).compose(Recipient(LONGEST, "Ann"), 1)
    assert long_lines(out.data) == []
    url, mailto = unsubscribe_targets(out.data)
    assert url.startswith(longest_url + "&token=")
    assert verify_token(KEY, token_of(url)) == ("x" * MAX_LIST_NAME_OCTETS, LONGEST.lower())
    assert mailto.startswith("mailto:unsubscribe@example.com?subject=unsubscribe%20")


def test_an_unsubscribe_mailto_too_long_for_its_line_is_refused(tmp_path: Path) -> None:
    # 64 "#" before the @ are legal, but each is %23 in a mailto URI: 3 octets apiece.
    address = "#" * 64 + "@" + "a" * 61 + "." + "b" * 61 + "." + "c" * 30 + ".com"
    line = settings_error("MAILER_UNSUBSCRIBE_MAILTO", address, tmp_path)
    assert "998" in line


def test_the_mailto_target_is_a_percent_encoded_ascii_uri() -> None:
    settings = load_settings(unsubscribe_mailto="un#sub?x@bücher.example", secret_key=KEY)
    out = composer(settings).compose(Recipient("ann@example.org", "Ann"), 1)
    _, mailto = unsubscribe_targets(out.data)
    assert mailto.isascii()
    assert mailto.startswith("mailto:un%23sub%3Fx@xn--bcher-kva.example?subject=unsubscribe%20")
    assert long_lines(out.data) == []


# --- List-Unsubscribe: URL shape --------------------------------------------------------------


def test_a_fragment_in_the_unsubscribe_url_is_refused(tmp_path: Path) -> None:
    line = settings_error("MAILER_UNSUBSCRIBE_URL", "https://example.com/u#top", tmp_path)
    assert "#fragment" in line


def test_a_fragment_in_the_subscribe_url_is_fine() -> None:
    # Nothing is appended to the subscribe link, so its fragment stays where it belongs.
    settings = load_settings(subscribe_url="https://example.com/news#subscribe")
    assert settings.subscribe_url == "https://example.com/news#subscribe"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/u", "https://example.com/u?token="),
        ("https://example.com/u?list=weekly", "https://example.com/u?list=weekly&token="),
        ("https://example.com/u?", "https://example.com/u?token="),
        ("https://example.com/u?list=weekly&", "https://example.com/u?list=weekly&token="),
    ],
)
def test_the_token_is_one_more_query_parameter(url: str, expected: str) -> None:
    settings = load_settings(unsubscribe_url=url, secret_key=KEY)
    out = composer(settings).compose(Recipient("ann@example.org", "Ann"), 1)
    (link,) = unsubscribe_targets(out.data)
    assert link.startswith(expected)
    assert verify_token(KEY, token_of(link)) == ("example", "ann@example.org")
    assert f"Unsubscribe: {link}\n" in body(parsed(out.data), "plain")


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("https://example.com/u?token=fixed", "token="),
        ("https://example.com/désabonner", "ASCII"),
        ("https:///no-host", "host"),
        ("https://example.com/u\x85", "https://"),
    ],
)
def test_other_unusable_unsubscribe_urls_are_refused(tmp_path: Path, url: str, words: str) -> None:
    assert words in settings_error("MAILER_UNSUBSCRIBE_URL", url, tmp_path)


def test_a_composer_given_a_bad_url_directly_refuses_it() -> None:
    envelope = Envelope("N", "news@example.com", "n.example.com", "https://example.com/u#x")
    with pytest.raises(HeaderError, match=r"List-Unsubscribe: .*#fragment"):
        Composer(rendered(), envelope, unsubscribe_token=lambda r: "t", campaign_key="c")


# --- List-Id -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "evil> <x",
        "<weekly.example.com>",
        "weekly",  # no namespace
        ".weekly.example.com",
        "weekly.example.com.",
        "weekly..example.com",
        "weekly example.com",
        "weekly.exam(ple).com",
        "weekly.example.com\x01",
        "a" * 250 + ".example",
    ],
)
def test_a_list_id_that_is_not_rfc_2919_is_refused(tmp_path: Path, value: str) -> None:
    line = settings_error("MAILER_LIST_ID", value, tmp_path)
    assert "RFC 2919 list id" in line or "at most 255" in line


@pytest.mark.parametrize(
    ("value", "header"),
    [
        ("weekly.example.com", "weekly.example.com"),
        ("the_weekly+news.lists.example.org", "the_weekly+news.lists.example.org"),
        ("weekly.bücher.example", "weekly.xn--bcher-kva.example"),
        ("x" * 240 + ".example.org", "x" * 240 + ".example.org"),  # 252 octets
    ],
)
def test_a_valid_list_id_is_the_list_id_header(value: str, header: str) -> None:
    settings = load_settings(list_id=value, secret_key=KEY)
    out = composer(settings).compose(Recipient("ann@example.org"), 1)
    list_id = parsed(out.data)["List-Id"]
    assert str(list_id).endswith(f"<{header}>")
    assert long_lines(out.data) == []


@pytest.mark.parametrize(
    ("name", "from_address", "expected"),
    [
        ("The Sample Weekly", "news@example.com", "the-sample-weekly.example.com"),
        ("Zoë's ~ Weekly!!", "news@example.com", "zo-s-weekly.example.com"),
        ("新闻周刊", "news@example.com", "list.example.com"),
        ("Die Woche", "news@straße.example", "die-woche.xn--strae-oqa.example"),
        ("A" * 300, "news@example.com", "a" * 63 + ".example.com"),
        # The longest domain an address may have leaves the slug two characters.
        (
            "The Weekly",
            "n@" + "d" * 62 + "." + "e" * 62 + "." + "f" * 62 + "." + "g" * 63,
            "th." + "d" * 62 + "." + "e" * 62 + "." + "f" * 62 + "." + "g" * 63,
        ),
        ("Weekly - - -", "news@example.com", "weekly.example.com"),
    ],
)
def test_the_default_list_id_is_always_valid(name: str, from_address: str, expected: str) -> None:
    settings = load_settings(newsletter_name=name, from_address=from_address, secret_key=KEY)
    assert settings.effective_list_id == expected
    assert len(expected) <= 255
    out = composer(settings).compose(Recipient("ann@example.org"), 1)
    assert str(parsed(out.data)["List-Id"]).endswith(f"<{expected}>")
    assert long_lines(out.data) == []


def test_a_composer_given_a_bad_list_id_directly_refuses_it() -> None:
    envelope = Envelope("N", "news@example.com", "evil> <x", "https://example.com/u")
    with pytest.raises(HeaderError, match="List-Id: "):
        Composer(rendered(), envelope, unsubscribe_token=None, campaign_key="c")


# --- From, Reply-To and subject from settings ----------------------------------------------------


def test_an_idn_from_domain_keeps_its_idna_2008_form() -> None:
    # Python's own "idna" codec is IDNA 2003, which maps ß to ss: another domain.
    settings = load_settings(
        from_address="news@straße.example", reply_to="desk@straße.example", secret_key=KEY
    )
    msg = parsed(composer(settings).compose(Recipient("ann@example.org"), 1).data)
    assert msg["From"].addresses[0].domain == "xn--strae-oqa.example"
    assert msg["Reply-To"].addresses[0].domain == "xn--strae-oqa.example"
    assert str(msg["Message-ID"]).endswith("@xn--strae-oqa.example>")


def test_a_very_long_newsletter_name_keeps_every_line_under_998() -> None:
    for name in ("W" * 3000, ("Wöchentlich " * 300).strip(), "Weekly, " + "x" * 990):
        settings = load_settings(newsletter_name=name, secret_key=KEY)
        issue = Rendered(
            subject=f"{name}: week of November 27", html=rendered().html, text=rendered().text
        )
        envelope = composer(settings).envelope
        c = Composer(issue, envelope, unsubscribe_token=lambda r: "t", campaign_key="c")
        out = c.compose(Recipient("a" * 64 + "@" + "b" * 60 + ".example.com", name), 1)
        assert long_lines(out.data) == [], name[:20]
        assert decoded_display_name(raw_header(out.data, "From")) == name
        assert str(parsed(out.data)["Subject"]) == f"{name}: week of November 27"


@pytest.mark.parametrize("char", ["\x80", "\x9b", "\x9f"])
def test_c1_controls_are_refused_in_header_values_and_settings(tmp_path: Path, char: str) -> None:
    with pytest.raises(HeaderError):
        check_header_value("Subject", f"Weekly{char}news")
    settings_error("MAILER_NEWSLETTER_NAME", f"The{char}Weekly", tmp_path)


@pytest.mark.parametrize("value", ["../evil", "a/b", ".hidden", "x" * 65])
def test_a_default_list_that_is_not_a_plain_name_names_the_setting(
    tmp_path: Path, value: str
) -> None:
    assert "letters, digits" in settings_error("MAILER_DEFAULT_LIST", value, tmp_path)
