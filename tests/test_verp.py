"""VERP return paths: signed tags that name campaign and recipient and survive case changes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailer.errors import ConfigError
from mailer.verp import (
    MAC_BITS,
    MAX_LOCAL_PART,
    Tag,
    check_bounce_address,
    macs,
    parse,
    resolve,
    return_path,
)

SECRET = "test-secret-for-verp-tags-0123456789"
BOUNCES = "bounces@news.example.org"


def local_part(address: str) -> str:
    return address.rpartition("@")[0]


def test_a_short_address_is_named_in_the_tag_and_read_back() -> None:
    path = return_path(BOUNCES, SECRET, 42, "Alice.Smith@Example.com")
    assert path.startswith("bounces+42-") and path.endswith(
        "-alice.smith=example.com@news.example.org"
    )
    assert len(local_part(path)) <= MAX_LOCAL_PART
    assert parse(path, SECRET) == Tag(42, "alice.smith@example.com", path.split("-")[1])
    assert parse(f"<{path}>", SECRET) is not None


def test_a_relay_that_changes_case_changes_nothing() -> None:
    path = return_path(BOUNCES, SECRET, 7, "bob+news@example.net")
    assert parse(path.lower(), SECRET) == parse(path, SECRET)
    assert parse(path.upper(), SECRET) == parse(path, SECRET)
    tag = parse(path.upper(), SECRET)
    assert tag is not None and tag.email == "bob+news@example.net"


@pytest.mark.parametrize(
    "email",
    [
        "firstname.middlename.lastname@department.example-university.ac.uk",
        "jörg@bücher.example",
        '"john smith"@example.com',
    ],
)
def test_an_address_that_does_not_fit_gets_the_short_tag_resolved_against_the_campaign(
    email: str,
) -> None:
    path = return_path(BOUNCES, SECRET, 9, email)
    assert path.isascii() and len(local_part(path)) <= MAX_LOCAL_PART
    tag = parse(path.lower(), SECRET)
    assert tag is not None and tag.campaign_id == 9 and tag.email is None
    others = [f"reader{i}@example.com" for i in range(500)]
    assert resolve(tag, SECRET, [*others, email.upper() if email.isascii() else email, "z@x.org"])
    assert resolve(tag, SECRET, others) is None
    assert resolve(tag, "another-secret", [email]) is None


def test_forged_altered_truncated_and_foreign_tags_are_refused() -> None:
    path = return_path(BOUNCES, SECRET, 42, "alice@example.com")
    local, domain = path.split("@")
    mac = local.split("-")[1]
    flipped = mac[:-1] + ("a" if mac[-1] != "a" else "b")
    assert parse(path, "another-secret") is None
    assert parse(path.replace(mac, flipped), SECRET) is None
    assert parse(path.replace("alice=", "mallory="), SECRET) is None  # moved to another address
    assert parse(path.replace("+42-", "+43-"), SECRET) is None  # moved to another campaign
    assert parse(path.replace(mac, mac[:-2]), SECRET) is None  # truncated MAC
    assert parse(local[:30] + "@" + domain, SECRET) is None  # truncated tag
    for junk in ("bounces@news.example.org", "bounces+@x", "bounces+x-y-z@x", "", "@", "+"):
        assert parse(junk, SECRET) is None


def test_the_mac_bits_and_the_short_tag() -> None:
    path = return_path(BOUNCES, SECRET, 123456, "x" * 60 + "@example.com")
    tag = local_part(path).partition("+")[2]
    assert tag == f"123456-{tag.split('-')[1]}" and len(tag.split("-")[1]) * 5 == MAC_BITS


def test_a_collision_of_truncated_macs_resolves_to_nobody() -> None:
    index = macs(SECRET, 1, ["a@example.com", "A@example.com"])
    assert list(index.values()) == ["a@example.com"]  # the same address in two spellings
    tag = Tag(1, None, "aaaaaaaaaa")
    assert resolve(tag, SECRET, []) is None


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("bounces+x@news.example.org", "without"),
        ("nobody", "e-mail address"),
        ("bö@news.example.org", "ASCII"),
        ("b" * 50 + "@news.example.org", "at most"),
    ],
)
def test_a_bad_bounce_address_is_refused(address: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        check_bounce_address(address)


def test_no_secret_no_tag() -> None:
    with pytest.raises(ConfigError, match="MAILER_SECRET_KEY"):
        return_path(BOUNCES, "", 1, "a@example.com")


@given(
    st.integers(min_value=0, max_value=10**12 - 1),
    st.from_regex(r"[a-zA-Z0-9._%+-]{1,40}", fullmatch=True),
    st.sampled_from(["example.com", "mail.example.co.uk", "x.org"]),
)
def test_every_tag_fits_and_round_trips(campaign: int, local: str, domain: str) -> None:
    email = f"{local}@{domain}"
    path = return_path(BOUNCES, SECRET, campaign, email)
    assert len(local_part(path)) <= MAX_LOCAL_PART
    tag = parse(path.lower(), SECRET)
    assert tag is not None and tag.campaign_id == campaign
    assert resolve(tag, SECRET, [email]) == email.lower() or tag.email is None
    assert resolve(tag, SECRET, ["other@example.com", email]) in (email, email.lower())
