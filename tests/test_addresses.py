"""The fast address check against email-validator: same verdict, same normalised form.

``normalise_email`` answers common addresses with a regex and a per-process domain cache
instead of calling email-validator. Every address here goes to both; they must agree: the
same normalised address, or both refuse. The reference is the public
``validate_email(address.strip(), check_deliverability=False)`` (``normalise_email`` strips
surrounding white space first).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import idna
import pytest
from email_validator import EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailer import headers
from mailer.headers import normalise_email


def reference(address: str) -> str | None:
    try:
        return str(validate_email(address.strip(), check_deliverability=False).normalized)
    except EmailNotValidError:
        return None


def ours(address: str) -> str | None:
    try:
        return normalise_email(address)
    except ValueError:
        return None


def assert_agree(address: str) -> None:
    expected = reference(address)
    assert ours(address) == expected, address  # the first call may teach the domain cache
    assert ours(address) == expected, address  # the second takes the fast path if it can


# --- the corpus ---------------------------------------------------------------------------

CJK = idna.encode("中" * 20).decode() + ".com"  # its IDNA form is shorter than its UTF-8 form

DOMAINS = [
    # ordinary, and in other cases
    "example.com",
    "EXAMPLE.Com",
    "mail.sub.example.org",
    "xy.a1",
    "xy.1a",
    "x.y",
    "123.456",
    # internationalised, in Unicode and in xn-- form, and Punycode look-alikes
    "bücher.example",
    "straße.example",
    "例子.广告",
    "пример.рф",
    "xn--bcher-kva.example",
    "XN--bcher-kva.example",
    "xn--zz.com",
    "xn--.com",
    "xn--e1afmkfd.xn--p1ai",
    CJK,
    # Unicode confusables and invisible characters
    "exаmple.com",  # Cyrillic а
    "ex\u200bample.com",  # zero-width space
    "ex\u202eelpmaxe.com",  # right-to-left override
    "example\uff0ecom",  # fullwidth full stop
    "example\u3002com",  # ideographic full stop
    "ｅｘａｍｐｌｅ.com",  # fullwidth letters
    # special-use names (RFC 6761 and friends)
    "localhost",
    "foo.localhost",
    "host.local",
    "x.test",
    "abc.TEST",
    "x.invalid",
    "a.onion",
    "b.ARPA",
    "example",
    # hyphens, underscores, dots and spaces in the wrong places
    "-a.com",
    "a-.com",
    "ab--cd.com",
    "ab--cd.example",
    "exa_mple.com",
    "example.com.",
    ".example.com",
    "example..com",
    "ex ample.com",
    "",
    # IP literals
    "[192.0.2.1]",
    "[IPv6:2001:db8::1]",
    "192.0.2.1",
    # label and domain lengths at their limits
    "a" * 63 + ".com",
    "a" * 64 + ".com",
    ".".join(["b" * 60] * 3) + ".com",
    ".".join(["c" * 63] * 4),
]

LOCALS = [
    "a",
    "A.B",
    "first.last+tag",
    "o'neil",
    "#!$%&'*+-/=?^_`{|}~",
    # consecutive, leading and trailing dots; empty
    "a..b",
    ".a",
    "a.",
    "",
    # overlong
    "x" * 64,
    "x" * 65,
    # RFC 2142 names, which email-validator lower-cases
    "Postmaster",
    "INFO",
    "abuse",
    "Hostmaster",
    "www",
    # quoted, and characters that need quoting
    '"john doe"',
    '"a\\"b"',
    '""',
    'a"b',
    "a b",
    "a@b",
    "a(comment)",
    # internationalised
    "é",
    "用户",
    "пользователь",
    "İstanbul",
    "ǅ",
    # controls and invisible characters
    "a\x00b",
    "a\x85b",
    "a\u2028b",
    "a\u200bb",
    "a\u202eb",
]


def fixed_corpus() -> list[str]:
    addresses = [f"{local}@{domain}" for domain in DOMAINS for local in LOCALS]
    # the 254-octet limit on the whole address, counted on every form of the domain
    for domain in DOMAINS:
        sizes = {len(domain.encode())}
        accepted = reference(f"a@{domain}")
        if accepted is not None:
            sizes.add(len(accepted.partition("@")[2].encode()))
            sizes.add(len(headers.ascii_domain(domain)))
        for size in sizes:
            for local_len in range(253 - size - 2, 253 - size + 3):
                if local_len > 0:
                    addresses.append(f"{'y' * local_len}@{domain}")
    # the RFC 2142 names in any case
    for name in CASE_INSENSITIVE_MAILBOX_NAMES:
        addresses += [f"{name}@example.com", f"{name.upper()}@Example.com"]
        addresses.append(f"{name.title()}.x@example.com")
    addresses += [
        "  padded@example.com ",
        "\tpadded@example.com\n",
        "no-at-sign",
        "@example.com",
        "a@",
        "@",
        "a@b@example.com",
        "tab\t@example.com",
        "a@example.com\r\nBcc: x@evil.example",
        "a@exam\x00ple.com",
        "a＠example.com",  # fullwidth commercial at
    ]
    return addresses


def random_corpus(count: int = 4000) -> Iterator[str]:
    """ASCII shapes near the fast path's edges: Punycode, reserved and hyphenated labels."""
    rng = random.Random(2)

    def label() -> str:
        core = "".join(rng.choices("aZ9bQxm-", k=rng.randint(1, 8)))
        twist = rng.random()
        if twist < 0.1:
            return "xn--" + core
        if twist < 0.15:
            return core[:2] + "--" + core[2:]
        if twist < 0.2:
            return core + rng.choice("_ .")
        return core

    for _ in range(count):
        local = rng.choice(["a", "Ab.c", "x+y", "info", "a..b", "Z9", "'", "", "News", "é"])
        domain = ".".join(label() for _ in range(rng.randint(1, 4))) + rng.choice([".org", ""])
        domain += rng.choice(["", "", "", ".test", ".local", ".Onion", "."])
        yield f"{local}@{domain}"


def realistic_corpus(count: int = 1000) -> Iterator[str]:
    """Addresses as lists hold them (the fast path's daily work), some in odd case."""
    rng = random.Random(3)
    popular = ["gmail.com", "outlook.com", "GMX.de", "proton.me", "web.de", "yahoo.co.uk"]
    for i in range(count):
        first, last = rng.choice(["anna", "Ben", "chloe"]), rng.choice(["martin", "Chen", "ng"])
        domain = rng.choice(popular) if i % 2 else f"mail{i % 300}.example-{i % 97}.org"
        yield f"{first}.{last}{i}@{domain}"


CORPUS = fixed_corpus() + list(random_corpus()) + list(realistic_corpus())


def test_the_corpus_is_varied() -> None:
    verdicts = [reference(address) for address in CORPUS]
    accepted = sum(v is not None for v in verdicts)
    assert len(CORPUS) > 6_000
    assert accepted > 1_500 and len(CORPUS) - accepted > 4_000


def test_fast_path_agrees_with_email_validator_on_the_corpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = 0
    real: Callable[..., object] = headers.validate_email

    def counted(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(headers, "validate_email", counted)
    for address in CORPUS:
        assert_agree(address)
    # The fast path did answer: a second pass over the accepted ASCII addresses, where
    # email-validator's only change is to lower-case the domain, costs no call.
    plain = [a for a in CORPUS if a.isascii() and (n := reference(a)) and _unchanged_local(a, n)]
    assert len(plain) > 1_000
    calls = 0
    for address in plain:
        assert_agree(address)
    assert calls == 0


def _unchanged_local(address: str, normalised: str) -> bool:
    local = address.strip().partition("@")[0]
    return normalised.partition("@")[0] == local and local.lower() not in (
        CASE_INSENSITIVE_MAILBOX_NAMES
    )


def test_the_domain_cache_learns_only_what_email_validator_accepted() -> None:
    assert headers._known_domain("Mail.Example.COM") == ("mail.example.com", 16)
    assert_agree("a@xn--bcher-kva.example")
    assert "xn--bcher-kva.example" in headers._good_domains  # learnt from email-validator
    assert_agree("a@bücher.example")
    assert "bücher.example" not in headers._good_domains  # non-ASCII: always validated
    assert_agree("a@ab--cd.example")
    assert "ab--cd.example" not in headers._good_domains  # refused: never cached


# --- generated addresses --------------------------------------------------------------------

ATEXT = "abcxyzABCXYZ0189!#$%&'*+-/=?^_`{|}~"
ODD = '."\\ @()[],:;<>\t\x00\x7f\x85\u2028\u200b\u202eéßİı中ǅ＠'
LDH = "abzABZ09-"

local_parts = st.one_of(
    st.text(alphabet=ATEXT + ".", max_size=70),
    st.text(alphabet=ATEXT + ODD, max_size=20),
    st.sampled_from(CASE_INSENSITIVE_MAILBOX_NAMES).flatmap(
        lambda name: st.sampled_from([name, name.upper(), name.title()])
    ),
)
labels = st.one_of(
    st.text(alphabet=LDH, min_size=0, max_size=66),
    st.text(alphabet=LDH, min_size=1, max_size=10).map(lambda s: "xn--" + s),
    st.text(alphabet=LDH, min_size=2, max_size=10).map(lambda s: s[:2] + "--" + s[2:]),
    st.text(alphabet=LDH + "_ üß中ー。．\u200b", max_size=10),
    st.sampled_from(["xn--bcher-kva", "XN--bcher-kva", "localhost", "local", "test", "onion"]),
)
domains = st.builds(
    lambda parts, end: ".".join(parts) + end,
    st.lists(labels, min_size=1, max_size=5),
    st.sampled_from(["", "", "", ".", ".com", ".test", ".arpa", ".invalid", ".local"]),
)
addresses = st.one_of(
    st.builds(
        lambda left, local, domain, right: f"{left}{local}@{domain}{right}",
        st.sampled_from(["", "", " ", "\t"]),
        local_parts,
        domains,
        st.sampled_from(["", "", " ", "\n"]),
    ),
    st.text(max_size=40),
)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(addresses)
@example("a@xn--bcher-kva.example")
@example("a" * 64 + "@" + "b" * 63 + ".com")
def test_fast_path_agrees_with_email_validator_on_generated_addresses(address: str) -> None:
    assert_agree(address)
