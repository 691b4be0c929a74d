"""The one settings class: ``MAILER_*`` environment, an optional ``.env`` file, flags on top."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import zoneinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from mailer.errors import ConfigError
from mailer.headers import (
    CONTROL_RE,
    MAX_LIST_ID,
    ascii_domain,
    is_web_url,
    list_id_problem,
    slugify,
    split_from,
    unsubscribe_mailto_problem,
    unsubscribe_url_problem,
)
from mailer.models import DeliveryPolicy, SMTPConfig
from mailer.subscribers import LIST_NAME_RULE, is_list_name
from mailer.tokens import MAX_TOKEN_CHARS
from mailer.verp import check_bounce_address

if TYPE_CHECKING:
    from mailer.dkim import Signer

# Documented sample defaults: the bundled sample runs with no settings at all. The sample
# secret key is public, so sending real mail with it is refused (see ``require_real_secret``).
SAMPLE_SECRET_KEY = "sample-secret-key-change-me"
SAMPLE_FROM = "newsletter@example.com"
SAMPLE_UNSUBSCRIBE_URL = "https://example.com/unsubscribe"
SAMPLE_DOMAIN = "example.com"
# HMAC-SHA256 takes keys of any length, but a key shorter than its 32-byte output is easier
# to guess than the MAC it makes.
MIN_SECRET_KEY_BYTES = 32
NEW_KEY = "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
KEY_HINT = f"set MAILER_SECRET_KEY to a long random value, e.g. {NEW_KEY}"

_SECURITY = Literal["starttls", "tls", "none"]
_MAX_SLUG = 63  # of the newsletter name in the default list id: one DNS label's worth


class Settings(BaseSettings):
    """Every setting of mailer. Environment names are ``MAILER_`` plus the field name."""

    model_config = SettingsConfigDict(
        env_prefix="MAILER_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        hide_input_in_errors=True,  # never echo a value (it may be a secret)
        populate_by_name=True,
        validate_default=True,
    )

    newsletter_name: str = "The Sample Weekly"
    from_address: str = Field(
        SAMPLE_FROM, validation_alias=AliasChoices("MAILER_FROM", "from_address")
    )
    reply_to: str | None = Field(None, validation_alias=AliasChoices("MAILER_REPLY_TO", "reply_to"))
    list_id: str | None = None  # defaults to "<newsletter-slug>.<from domain>"
    name_fallback: str = "reader"

    smtp_host: str = "localhost"
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_security: _SECURITY = "starttls"
    smtp_insecure_allow_plaintext: bool = False
    smtp_ca_file: Path | None = None
    smtp_timeout: float = Field(30.0, gt=0)
    smtp_helo_name: str | None = None

    secret_key: SecretStr = SecretStr(SAMPLE_SECRET_KEY)
    # The site `mailer serve` answers at, behind a TLS reverse proxy: one-click unsubscribe
    # at <public_url>/unsubscribe (unless MAILER_UNSUBSCRIBE_URL says otherwise), the archive
    # at <public_url>/issues/, the forward form at <public_url>/forward/<slug>.
    public_url: str | None = None
    unsubscribe_url: str = SAMPLE_UNSUBSCRIBE_URL
    unsubscribe_mailto: str | None = None
    subscribe_url: str | None = None

    articles_dir: Path = Path("articles")
    lists_dir: Path = Path("lists")
    templates_dir: Path | None = None
    previews_dir: Path = Path("previews")
    default_list: str = "example"
    article_base_url: str | None = None
    clutter_patterns: list[str] = Field(default_factory=list)

    # A file (SQLite, the default) or postgresql://… for several senders on several machines.
    ledger: Path | str = Path(".mailer/ledger.sqlite3")
    ledger_lease: float = Field(10.0, ge=1, le=3600)  # PostgreSQL: a silent sender's claims
    concurrency: int = Field(8, ge=1, le=256)
    rate: float | None = Field(None, ge=0.001)  # below, a run would wait for ever
    max_attempts: int = Field(4, ge=1, le=50)
    retry_base_delay: float = Field(1.0, ge=0)
    messages_per_connection: int = Field(1000, ge=1)
    policy_halt_after: int = Field(20, ge=1)

    forward_daily_quota: int = Field(10, ge=1)
    # Web forwards per minute, for the whole site (the form's global brake on abuse).
    forward_rate: int = Field(30, ge=1)
    # Where sent and built issues are kept for the archive pages (no personal data).
    archive_dir: Path = Path(".mailer/archive")
    # Deliverability (docs/deliverability.md): VERP return paths, DKIM, bounces.
    bounce_address: str | None = None
    dkim_selector: str | None = None
    dkim_key_file: Path | None = None
    dkim_ed25519_selector: str | None = None
    dkim_ed25519_key_file: Path | None = None
    dkim_domain: str | None = None  # defaults to the From domain
    soft_bounce_limit: int = Field(3, ge=1, le=100)
    imap_host: str | None = None  # `mailer bounces scan --imap`: the bounce mailbox, over TLS
    imap_port: int = Field(993, ge=1, le=65535)
    imap_username: str | None = None
    imap_password: SecretStr | None = None
    imap_folder: str = "INBOX"
    imap_done_folder: str = "Processed"
    imap_ca_file: Path | None = None

    # The newsletter's time zone: what "today" is, and where an issue's days begin and end.
    timezone: str | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"{value[:64]!r} is not a time zone name (e.g. Europe/London, UTC)"
            ) from None
        return value

    @model_validator(mode="before")
    @classmethod
    def _name_from_from(cls, data: Any) -> Any:
        # MAILER_FROM="Name <address>": the name names the newsletter unless
        # MAILER_NEWSLETTER_NAME is set. What does not split is left to the field's check.
        for key in ("MAILER_FROM", "from_address") if isinstance(data, dict) else ():
            try:
                name, address = split_from(data[key])
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
            data = {**data, key: address}
            if name and "newsletter_name" not in data:
                data["newsletter_name"] = name
        return data

    @field_validator("from_address")
    @classmethod
    def _from(cls, value: str) -> str:
        return _normalise_address(split_from(value)[1])

    @field_validator("reply_to")
    @classmethod
    def _reply_to(cls, value: str | None) -> str | None:
        return _normalise_address(value) if value else None

    @field_validator("bounce_address")
    @classmethod
    def _bounce_address(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        try:
            return check_bounce_address(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None

    @model_validator(mode="after")
    def _dkim_pairs(self) -> Settings:
        for kind in ("", "ED25519_"):
            names = (f"MAILER_DKIM_{kind}SELECTOR", f"MAILER_DKIM_{kind}KEY_FILE")
            selector, key_file = (getattr(self, n.removeprefix("MAILER_").lower()) for n in names)
            if bool(selector) != bool(key_file):
                given, missing = names if selector else names[::-1]
                raise ValueError(f"{given} is set, so {missing} must be set too")
        return self

    @field_validator("ledger", mode="before")
    @classmethod
    def _ledger(cls, value: object) -> Path | str:
        text = str(value)
        if text.startswith(("postgresql://", "postgres://")):
            return text  # a URL, as it is (it may hold a password: never echoed)
        if not text.strip():
            raise ValueError("must be a file path or a postgresql:// URL")
        return Path(text)

    @property
    def data_dir(self) -> Path:
        """Where the files beside the ledger live (the bounce record, DKIM keys): the ledger
        file's folder, or ``.mailer`` when the ledger is a database."""
        return self.ledger.parent if isinstance(self.ledger, Path) else Path(".mailer")

    def ledger_is_there(self) -> bool:
        """Whether a send has recorded anything yet (a database is always there)."""
        return not isinstance(self.ledger, Path) or self.ledger.is_file()

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not is_web_url(value, https=True):
            raise ValueError("must be an https:// URL without spaces or quotes")
        parts = urlsplit(value)
        if not parts.hostname or parts.query or parts.fragment:
            raise ValueError("must be an https:// URL with a host name, and no ? or #")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _unsubscribe_from_public_url(self) -> Settings:
        # MAILER_UNSUBSCRIBE_URL defaults to the one-click endpoint of `mailer serve`.
        if self.public_url and "unsubscribe_url" not in self.model_fields_set:
            url = f"{self.public_url}/unsubscribe"
            problem = unsubscribe_url_problem(url, token_chars=MAX_TOKEN_CHARS)
            if problem is not None:
                raise ValueError(f"public_url: {problem}")
            self.unsubscribe_url = url
        return self

    @field_validator("unsubscribe_url", "subscribe_url")
    @classmethod
    def _https(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not is_web_url(value, https=True):
            raise ValueError("must be an https:// URL without spaces or quotes")
        if not urlsplit(value).hostname:
            raise ValueError("must be an https:// URL with a host name")
        return value

    @field_validator("unsubscribe_url")
    @classmethod
    def _unsubscribe_url(cls, value: str) -> str:
        # The token is appended to it in every List-Unsubscribe header: no fragment, ASCII,
        # and short enough for the longest token to fit in one 998-octet line.
        problem = unsubscribe_url_problem(value, token_chars=MAX_TOKEN_CHARS)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("article_base_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not is_web_url(value):
            raise ValueError("must be an http(s):// URL")
        return value

    @field_validator("unsubscribe_mailto")
    @classmethod
    def _mailto(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        address = _normalise_address(value.removeprefix("mailto:"))
        problem = unsubscribe_mailto_problem(address, token_chars=MAX_TOKEN_CHARS)
        if problem is not None:
            raise ValueError(problem)
        return address

    @field_validator("list_id")
    @classmethod
    def _list_id(cls, value: str | None) -> str | None:
        """An RFC 2919 list-id, kept in its ASCII form (an IDN namespace becomes xn--)."""
        if value is None or value == "":
            return None
        ascii_id = ascii_domain(value)
        problem = list_id_problem(ascii_id)
        if problem is not None:
            raise ValueError(problem)
        return ascii_id

    @field_validator("default_list")
    @classmethod
    def _default_list(cls, value: str) -> str:
        # As for --list: a plain name, or the path of a .csv file (checked when it is read).
        if not is_list_name(value) and not value.lower().endswith(".csv"):
            raise ValueError(f"{LIST_NAME_RULE}, or the path of a .csv file")
        return value

    @field_validator("newsletter_name", "name_fallback", "smtp_host", "smtp_helo_name")
    @classmethod
    def _no_controls(cls, value: str | None) -> str | None:
        if value is not None and CONTROL_RE.search(value):
            raise ValueError("must not contain control characters or line breaks")
        return value

    @field_validator("secret_key")
    @classmethod
    def _secret(cls, value: SecretStr) -> SecretStr:
        # The messages never include the value, nor its length.
        key = value.get_secret_value()
        if not key.strip():
            raise ValueError("must not be empty (it signs the unsubscribe links)")
        if key != SAMPLE_SECRET_KEY and len(key.encode("utf-8")) < MIN_SECRET_KEY_BYTES:
            raise ValueError(
                f"too short: use at least {MIN_SECRET_KEY_BYTES} bytes of random text, e.g. "
                f"from {NEW_KEY}"
            )
        return value

    @field_validator("clutter_patterns")
    @classmethod
    def _regexes(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} is not a valid regex ({exc})") from None
        return value

    # --- derived values -------------------------------------------------------------

    @property
    def from_domain(self) -> str:
        return self.from_address.rpartition("@")[2]

    @property
    def effective_list_id(self) -> str:
        """``MAILER_LIST_ID``, else ``<name-slug>.<From domain>``: valid by construction,
        since the slug is ``[a-z0-9-]`` and the domain passed email-validator."""
        if self.list_id:
            return self.list_id
        namespace = ascii_domain(self.from_domain)
        room = min(_MAX_SLUG, MAX_LIST_ID - 1 - len(namespace))
        slug = slugify(self.newsletter_name, "list")
        return f"{slug[:room].rstrip('-')}.{namespace}"

    @property
    def zone(self) -> dt.tzinfo:
        """``MAILER_TIMEZONE``, else the machine's own zone (``TZ``, ``/etc/localtime``)."""
        return zoneinfo.ZoneInfo(self.timezone) if self.timezone else local_zone()

    def today(self, now: dt.datetime | None = None) -> dt.date:
        """The date in the newsletter's zone at ``now`` (aware; default: the clock)."""
        moment = now if now is not None else dt.datetime.now(dt.UTC)
        return moment.astimezone(self.zone).date()

    def smtp_config(self) -> SMTPConfig:
        """The relay to send through (the password leaves the secret wrapper only here)."""
        password = self.smtp_password.get_secret_value() if self.smtp_password else None
        return SMTPConfig(
            host=self.smtp_host,
            port=self.smtp_port,
            security=self.smtp_security,
            username=self.smtp_username,
            password=password,
            ca_file=self.smtp_ca_file,
            timeout=self.smtp_timeout,
            helo_name=self.smtp_helo_name,
            allow_plaintext=self.smtp_insecure_allow_plaintext,
            loopback=self.smtp_is_loopback(),
        )

    def delivery_policy(self) -> DeliveryPolicy:
        return DeliveryPolicy(
            concurrency=self.concurrency,
            rate=self.rate,
            max_attempts=self.max_attempts,
            retry_base_delay=self.retry_base_delay,
            messages_per_connection=self.messages_per_connection,
            policy_halt_after=self.policy_halt_after,
        )

    def dkim_signer(self) -> Signer | None:
        """The DKIM signer of every message, or ``None`` when no key is set (reads the keys)."""
        keys = [
            (selector, path)
            for selector, path in (
                (self.dkim_selector, self.dkim_key_file),
                (self.dkim_ed25519_selector, self.dkim_ed25519_key_file),
            )
            if selector and path
        ]
        if not keys:
            return None
        from mailer.dkim import Signer  # cryptography: only when signing is set up

        return Signer.from_files(self.dkim_domain or self.from_domain, keys)

    def smtp_is_loopback(self) -> bool:
        if self.smtp_host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.smtp_host).is_loopback
        except ValueError:
            return False

    def require_sendable(self) -> None:
        """Before real mail goes out: no sample key, From address or unsubscribe link."""
        self.require_real_secret()
        if self.from_domain.lower() in (SAMPLE_DOMAIN, "www." + SAMPLE_DOMAIN):
            raise ConfigError(
                f"setting MAILER_FROM: {self.from_address} is the sample address; refusing to send",
                hint="set MAILER_FROM to your own, e.g. MAILER_FROM='The Weekly <news@your.org>'",
            )
        if self.unsubscribe_url == SAMPLE_UNSUBSCRIBE_URL:
            raise ConfigError(
                f"setting MAILER_UNSUBSCRIBE_URL: {SAMPLE_UNSUBSCRIBE_URL} is the sample link; "
                "refusing to send",
                hint="set MAILER_PUBLIC_URL to the https:// address `mailer serve` answers at "
                "(links go to <it>/unsubscribe), or MAILER_UNSUBSCRIBE_URL",
            )

    def require_real_secret(self, why: str = "; refusing to send", hint: str = KEY_HINT) -> None:
        """The public sample key signs nothing that counts: with it anyone could forge
        unsubscribes, forwards and return paths. ``why`` ends the message for each use."""
        if self.secret_key.get_secret_value() == SAMPLE_SECRET_KEY:
            raise ConfigError(
                f"setting MAILER_SECRET_KEY: still the public sample key{why}", hint=hint
            )


def local_zone() -> dt.tzinfo:
    """The machine's time zone with its daylight-saving rules, or UTC if it has none."""
    name = os.environ.get("TZ", "").removeprefix(":")
    if name:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            # Issue dates hang on the zone: never guess past a TZ we cannot read.
            raise ConfigError(
                f"TZ={name[:64]!r} is not a time zone name this machine knows",
                hint="set MAILER_TIMEZONE to one, e.g. Europe/London or UTC",
            ) from None
    try:
        with open("/etc/localtime", "rb") as handle:
            return zoneinfo.ZoneInfo.from_file(handle, key="localtime")
    except (OSError, ValueError):
        return dt.UTC


def _normalise_address(value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"not a valid e-mail address ({exc})") from None


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, ``.env`` and flags (``None`` flags are ignored)."""
    given = {key: value for key, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except SettingsError as exc:
        # A list setting (MAILER_CLUTTER_PATTERNS) that is not JSON; the value is not echoed.
        match = re.search(r'field "(\w+)"', str(exc))
        env = _env_name(match.group(1)) if match else "MAILER_*"
        raise ConfigError(
            f"setting {env}: not a valid JSON list",
            hint=f"""write it as JSON, e.g. {env}='["^Advertisement$", "^Listen now"]'""",
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(".env: not valid UTF-8 text (save the file as UTF-8)") from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming the setting; pydantic's input echo is off, so no secret leaks."""
    errors = exc.errors(include_input=False, include_url=False)
    first = errors[0]
    field = str(first["loc"][0]) if first["loc"] else "?"
    env = _env_name(field)
    message = str(first["msg"]).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"setting {env}: {message}{more}"


def _env_name(field: str) -> str:
    if field in ("MAILER_FROM", "from_address"):
        return "MAILER_FROM"
    if field in ("MAILER_REPLY_TO", "reply_to"):
        return "MAILER_REPLY_TO"
    return field.upper() if field.upper().startswith("MAILER_") else "MAILER_" + field.upper()
