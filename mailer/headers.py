"""Values bound for mail headers, checked and shaped once: the bottom layer.

Controls and line breaks (also inside RFC 2047 encoded words), addresses, internationalised
domains, RFC 2919 list ids, List-Unsubscribe targets, web URLs and slugs. Every module that
takes such a value from outside (articles, lists, settings, forwards) checks it here, and
``messages`` builds the headers from what passed.
"""

from __future__ import annotations

import binascii
import datetime as dt
import re
import unicodedata
from email.header import decode_header
from urllib.parse import parse_qsl, quote, urlsplit

import idna
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from email_validator.rfc_constants import (
    CASE_INSENSITIVE_MAILBOX_NAMES,
    DOMAIN_MAX_LENGTH,
    DOT_ATOM_TEXT,
    EMAIL_MAX_LENGTH,
)

from mailer.errors import HeaderError, ValueRefused

MAX_LINE = 998  # octets in a header line, CRLF excluded (RFC 5322)
MAX_LIST_ID = 255

# Characters no line of text may hold: C0 controls but tab and line feed, DEL, C1 controls,
# and the Unicode line and paragraph separators. A header value holds no tab or line feed
# either (CONTROLS). Both are regex character-class bodies.
TEXT_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029"
CONTROLS = "\t\n" + TEXT_CONTROLS
CONTROL_RE = re.compile(f"[{CONTROLS}]")
ENCODED_WORD_RE = re.compile(r"=\?[^?\s]+\?[QqBb]\?[^?\s]*\?=")
# An http(s) URL without spaces, quotes, angle brackets or controls: safe in an href and a
# header. Further rules (a host, no fragment) are the caller's.
_WEB_URL_RE = re.compile(rf"(https?)://[^\s<>\"'{CONTROLS}]+")
# Refused in what a stranger writes (forwards), besides controls: every format character
# (Cf: zero-width spaces and joiners, soft hyphens, byte-order marks, and the bidirectional
# marks, overrides and isolates that make text read other than it is), and lone surrogates
# (Cs), left by undecodable bytes in an argument.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})
# RFC 2919: list-id = list-label "." list-id-namespace, both dot-atom-text (RFC 5322 atext).
_ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+"
_LIST_ID_RE = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})+")
# Characters RFC 6068 lets stand in the address of a mailto URI besides unreserved ones.
_MAILTO_SAFE = "!$'()*+,;:"
MAX_PAGE_SLUG = 200
_PAGE_SLUG_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,198}[A-Za-z0-9])?")
_ISSUE_DATE_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MONTHS = (
    *("January", "February", "March", "April", "May", "June"),
    *("July", "August", "September", "October", "November", "December"),
)


# --- text -----------------------------------------------------------------------------


def check_header_value(field: str, value: str) -> str:
    """Refuse CR, LF, NUL and other controls, also when hidden in an RFC 2047 encoded word.

    This Python predates the fix for CVE-2024-6923 (newlines in headers), so every value
    that reaches a header is checked here first.
    """
    if CONTROL_RE.search(value):
        raise HeaderError(f"{field}: contains a line break or control character")
    for word in ENCODED_WORD_RE.findall(value):
        try:
            decoded = "".join(
                part.decode(charset or "ascii", "replace") if isinstance(part, bytes) else part
                for part, charset in decode_header(word)
            )
        except (LookupError, ValueError, binascii.Error):
            raise HeaderError(f"{field}: contains a malformed encoded word") from None
        if CONTROL_RE.search(decoded):
            raise HeaderError(f"{field}: an encoded word hides a line break or control character")
    return value


def check_visible(field: str, value: str) -> str:
    """``check_header_value``, and no invisible character either (format characters, lone
    surrogates): for text a stranger writes under the newsletter's name."""
    check_header_value(field, value)
    for char in value:
        if char.isascii() and char.isprintable():
            continue
        if unicodedata.category(char) in _INVISIBLE_CATEGORIES:
            raise HeaderError(
                f"{field}: contains an invisible control or formatting character "
                f"(U+{ord(char):04X})"
            )
    return value


def is_web_url(value: str, *, https: bool = False) -> bool:
    """An ``http(s)://`` URL (only ``https://`` with ``https``) with nothing unsafe in it."""
    match = _WEB_URL_RE.fullmatch(value)
    return match is not None and (not https or match.group(1) == "https")


def slugify(text: str, fallback: str) -> str:
    """Lower-case ASCII letters and digits joined by hyphens (a URL path, a DNS label)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or fallback


def page_slug(slug: str) -> str:
    """An article's slug as one segment of a web path and a folder name (``/articles/<slug>/``,
    ``/forward/<slug>``): the slug itself when it is ASCII letters, digits, ``.``, ``_`` and
    ``-`` that begin and end with a letter or digit (so never ``.``, ``..`` or a hidden
    name), else its ``slugify`` form. Nothing it returns can leave a folder."""
    if _PAGE_SLUG_RE.fullmatch(slug):
        return slug
    return slugify(slug, "article")[:MAX_PAGE_SLUG].rstrip("-") or "article"


def issue_date_from_text(text: str) -> dt.date | None:
    """``YYYY-MM-DD`` (exactly) as a date, else ``None``: a path segment or a file name."""
    if not _ISSUE_DATE_RE.fullmatch(text):
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None


def human_date(day: dt.date) -> str:
    """``November 29, 2026`` whatever the machine's locale (default subjects, templates)."""
    return f"{_MONTHS[day.month - 1]} {day.day}, {day.year}"


# --- domains and list ids -------------------------------------------------------------


def ascii_domain(domain: str) -> str:
    """IDNA 2008 with UTS 46 mapping, as email-validator uses: Python's own ``idna`` codec is
    IDNA 2003, which would turn ``straße.example`` into another domain, ``strasse.example``."""
    if domain.isascii():
        return domain
    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return domain


def ascii_domain_address(address: str) -> str:
    """``news@bücher.example`` → ``news@xn--bcher-kva.example``, so headers stay ASCII
    whenever the local part is."""
    local, at, domain = address.rpartition("@")
    return f"{local}{at}{ascii_domain(domain)}"


def list_id_problem(value: str) -> str | None:
    """Why ``value`` (in its ASCII form) is not an RFC 2919 list-id, or ``None``."""
    if not _LIST_ID_RE.fullmatch(value):
        return (
            "must be an RFC 2919 list id such as weekly.example.com: letters, digits and "
            "!#$%&'*+-/=?^_`{|}~ in at least two parts joined by single dots (no <>, spaces, "
            "or dots at either end)"
        )
    if len(value) > MAX_LIST_ID:
        return f"must be at most {MAX_LIST_ID} characters long"
    return None


def check_list_id(value: str) -> str:
    """The ASCII (IDNA) form of an RFC 2919 list-id; ``HeaderError`` if it is not one."""
    ascii_id = ascii_domain(value)
    problem = list_id_problem(ascii_id)
    if problem is not None:
        raise HeaderError(f"List-Id: {problem}")
    return ascii_id


# --- List-Unsubscribe -----------------------------------------------------------------


def unsubscribe_prefix(url: str) -> str:
    """``url`` ready for the token to be appended as its ``token`` query parameter."""
    if "?" not in url:
        return url + "?token="
    return url + ("token=" if url.endswith(("?", "&")) else "&token=")


def mailto_uri(address: str) -> str:
    """``mailto:`` plus the address, percent-encoded as RFC 6068 asks, its domain in ASCII."""
    local, _, domain = address.rpartition("@")
    return f"mailto:{quote(local, safe=_MAILTO_SAFE)}@{ascii_domain(domain)}"


def list_unsubscribe(prefix: str, token: str, mailto: str | None) -> str:
    """The List-Unsubscribe field (RFC 2369, 8058), each target on its own line: no line of
    it is longer than its longest target, which settings keep under 998 octets."""
    targets = [f"<{prefix}{token}>"]
    if mailto:
        targets.append(f"<{mailto}?subject=unsubscribe%20{token}>")
    return "List-Unsubscribe: " + ",\r\n ".join(targets)


def list_archive(url: str) -> str:
    """The RFC 2369 List-Archive field: ``<url>``, an http(s) URL with nothing unsafe in it,
    on one line."""
    check_header_value("List-Archive", url)
    if not is_web_url(url) or not url.isascii():
        raise HeaderError("List-Archive: must be an ASCII http(s) URL without spaces or quotes")
    field = f"List-Archive: <{url}>"
    if len(field) > MAX_LINE:
        raise HeaderError("List-Archive: the URL would not fit in one header line (998 octets)")
    return field


def unsubscribe_url_problem(url: str, *, token_chars: int) -> str | None:
    """Why ``url`` cannot be the base of unsubscribe links carrying a ``token_chars`` token."""
    if "#" in url:
        return (
            "must not have a #fragment: the token would be appended to the fragment, "
            "which browsers never send"
        )
    if not url.isascii():
        return (
            "must be ASCII (percent-encode other characters, and give the domain in its "
            "xn-- form): it goes into the List-Unsubscribe header"
        )
    if any(key == "token" for key, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)):
        return "must not have a token= parameter already: ?token=<token> is appended to it"
    prefix = unsubscribe_prefix(url)
    first = list_unsubscribe(prefix, "x" * token_chars, "mailto:x").split("\r\n")[0]
    if len(first) > MAX_LINE:
        limit = len(url) - (len(first) - MAX_LINE)
        return (
            f"is {len(url)} characters long; with the longest unsubscribe token appended it "
            f"would not fit in one header line (998 octets), so it may have at most {limit} "
            "characters"
        )
    return None


def unsubscribe_mailto_problem(address: str, *, token_chars: int) -> str | None:
    """Why ``address`` cannot be the mailto target of List-Unsubscribe, or ``None``."""
    target = mailto_uri(address)
    line = list_unsubscribe("", "x" * token_chars, target).split("\r\n")[1]
    if len(line.encode()) > MAX_LINE:
        return (
            "is too long for the List-Unsubscribe header: with the longest unsubscribe token "
            "its mailto line would be longer than 998 octets"
        )
    return None


# --- addresses ------------------------------------------------------------------------

# The fast path accepts only what email-validator accepts, and returns what it returns
# (tests/test_addresses.py holds both to the same corpus):
# - a plain ASCII dot-atom local part (email-validator's own regex; it returns such a part
#   unchanged), except the RFC 2142 names that it lower-cases;
# - a domain that it already accepted in this process (its verdict on a domain does not
#   depend on the local part), or a plain letters-digits-hyphens name passing its checks:
#   labels of 1-63 characters that neither start nor end with a hyphen, no "xx--" label
#   (Punycode and reserved), at least one dot, a top-level domain ending in a letter, not a
#   special-use name; it lower-cases such a name;
# - the 254-octet limit on the whole address, counted on every form of the domain.
# Anything else goes to email-validator itself.
_LABEL = r"(?!..--)[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?"
_LAST_LABEL = r"(?!..--)(?:[a-zA-Z0-9][a-zA-Z0-9-]{0,61})?[a-zA-Z]"
_LDH_DOMAIN_RE = re.compile(rf"(?:{_LABEL}\.)+{_LAST_LABEL}")
_SPECIAL_USE = tuple(SPECIAL_USE_DOMAIN_NAMES)
_DOMAIN_CACHE_SIZE = 10_000  # only domains the rules above cannot judge (Punycode)
# raw ASCII domain -> (normalised domain, longest of its raw/normalised/IDNA forms in octets)
_good_domains: dict[str, tuple[str, int]] = {}


def _known_domain(domain: str) -> tuple[str, int] | None:
    known = _good_domains.get(domain)
    if known is None and len(domain) <= DOMAIN_MAX_LENGTH and _LDH_DOMAIN_RE.fullmatch(domain):
        lower = domain.lower()
        if not any(lower == name or lower.endswith("." + name) for name in _SPECIAL_USE):
            known = (lower, len(domain))
    return known


def normalise_email(value: str) -> str:
    """Syntax-check an address (no DNS) and return its normalised form (``ValueRefused``).

    email-validator's verdict and normalised form; common addresses take a fast path that
    costs a regex match instead of a full validation.
    """
    address = value.strip()
    local, at, domain = address.partition("@")
    plain = bool(at) and DOT_ATOM_TEXT.match(local) is not None
    if plain and local.lower() not in CASE_INSENSITIVE_MAILBOX_NAMES:
        known = _known_domain(domain)
        if known is not None and len(local) + 1 + known[1] <= EMAIL_MAX_LENGTH:
            return f"{local}@{known[0]}"
    if not address:
        raise ValueRefused("empty e-mail address")
    if CONTROL_RE.search(address):
        raise ValueRefused("e-mail address contains a control character")
    try:
        result = validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueRefused(f"invalid e-mail address {address!r}: {exc}") from None
    if (
        plain
        and domain.isascii()
        and result.local_part == local
        and len(_good_domains) < _DOMAIN_CACHE_SIZE
    ):
        forms = (domain, result.domain, result.ascii_domain)
        _good_domains[domain] = (result.domain, max(len(f.encode()) for f in forms))
    return str(result.normalized)


def address_key(email: str) -> str:
    """The case-insensitive identity of a normalised address (duplicates, suppression)."""
    return email.lower()


def split_from(value: str) -> tuple[str | None, str]:
    """``Name <address>``, ``"Name" <address>`` or an address, as (name, address). The name
    goes into the From header: a line break, a control or invisible character, or an RFC 2047
    encoded word (which could hide anything from the check) is a ``ValueError``."""
    text = value.strip()
    start = text.rfind("<")
    if (start >= 0) != text.endswith(">"):
        raise ValueError("write it as an address, or as Name <address>")
    if start < 0:
        return None, text
    address, name = text[start + 1 : -1].strip(), text[:start].strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        name = re.sub(r"\\(.)", r"\1", name[1:-1]).strip()
    if any(char in name for char in '<>"'):
        raise ValueError("the name must not contain <, > or quotes")
    if ENCODED_WORD_RE.search(name):
        raise ValueError("the name must be plain text, not an encoded word (=?...?=)")
    try:
        check_visible("the name", name)
    except HeaderError as exc:
        raise ValueError(exc.message) from None
    return name or None, address
