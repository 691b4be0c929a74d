"""The deliverability commands: ``mailer bounces scan`` and ``mailer dkim keygen``."""

from __future__ import annotations

import contextlib
import enum
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mailer.cli.common import reports_errors
from mailer.errors import ConfigError, MailerError

if TYPE_CHECKING:
    from mailer.bounces import Resolver
    from mailer.settings import Settings

RECORD_FILE = "bounces.sqlite3"
KEY_DIR = "dkim"

bounces_app = typer.Typer(
    name="bounces",
    help="Read bounce mail and suppress the addresses that bounce.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
dkim_app = typer.Typer(
    name="dkim",
    help="DKIM keys for signing every message.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


class KeyKind(enum.StrEnum):
    rsa = "rsa"
    ed25519 = "ed25519"


def register(app: typer.Typer) -> None:
    """Add the ``bounces`` and ``dkim`` groups to the main app."""
    app.add_typer(bounces_app, name="bounces")
    app.add_typer(dkim_app, name="dkim")


@contextlib.contextmanager
def _resolver(settings: Settings) -> Iterator[Resolver]:
    """The ledger, read-only, to match bounces by Message-ID and short VERP tags."""
    from mailer.bounces import LedgerResolver, NoResolver
    from mailer.ledger import Ledger

    if not settings.ledger_is_there():
        yield NoResolver()
        return
    ledger = Ledger.open(settings.ledger, readonly=True)
    try:
        yield LedgerResolver(ledger)
    finally:
        ledger.close()


@bounces_app.command("scan")
@reports_errors
def scan_command(
    maildir: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Read this Maildir (read-only: nothing is moved)."),
    ] = None,
    mbox: Annotated[
        Path | None, typer.Option(metavar="FILE", help="Read this mbox file (never written).")
    ] = None,
    imap: Annotated[
        bool,
        typer.Option(
            "--imap",
            help="Read MAILER_IMAP_FOLDER over TLS (MAILER_IMAP_HOST, _USERNAME, _PASSWORD); "
            "read messages are moved to MAILER_IMAP_DONE_FOLDER, never deleted.",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    soft_limit: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            min=1,
            help="Suppress an address after soft bounces from this many campaigns "
            "[MAILER_SOFT_BOUNCE_LIMIT, 3].",
            show_default=False,
        ),
    ] = None,
    record: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help=f"Where scans remember what they read [next to the ledger: {RECORD_FILE}].",
            show_default=False,
        ),
    ] = None,
    ledger_file: Annotated[
        str | None,  # not a Path: a postgresql:// URL must reach the settings as it is
        typer.Option(
            "--ledger",
            metavar="FILE",
            help="Ledger file or postgresql:// URL [MAILER_LEDGER].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Read bounce mail: suppress hard bounces at once, soft ones after --soft-limit campaigns.

    Bounces are matched to what was sent by their VERP tag, else by the returned
    Message-ID in the ledger; auto-replies are ignored; a message read before is skipped,
    so running it again (from cron) changes nothing.
    """
    from mailer.bounces import BounceReader, SqliteStore, scan
    from mailer.ledger.suppression import open_suppression
    from mailer.settings import load_settings

    if [maildir is not None, mbox is not None, imap].count(True) != 1:
        raise MailerError("give exactly one of --maildir DIR, --mbox FILE and --imap")
    settings = load_settings(ledger=ledger_file)
    messages = _messages(settings, maildir, mbox)
    suppression = open_suppression(settings)
    secret = settings.secret_key.get_secret_value()
    settings.require_real_secret(
        "; anyone could forge return-path tags with it, so bounces are not read",
        hint="set MAILER_SECRET_KEY to the long random value your mail was sent with",
    )
    with (
        _resolver(settings) as resolver,
        SqliteStore(record or settings.data_dir / RECORD_FILE) as store,
    ):
        reader = BounceReader(secret, resolver)
        limit = soft_limit if soft_limit is not None else settings.soft_bounce_limit
        summary = scan(messages, reader, store, suppression, soft_limit=limit)
    if as_json:
        print(json.dumps(summary.as_dict(), indent=2))
    else:
        print(summary.line())


def _messages(settings: Settings, maildir: Path | None, mbox: Path | None) -> Iterator[bytes]:
    """The bounce mail to read: a Maildir, an mbox file, or the IMAP folder of the settings
    (connected to lazily, when the first message is asked for)."""
    from mailer.bounces import read_imap, read_maildir, read_mbox

    if maildir is not None:
        return read_maildir(maildir)
    if mbox is not None:
        return read_mbox(mbox)
    for name, value in (
        ("MAILER_IMAP_HOST", settings.imap_host),
        ("MAILER_IMAP_USERNAME", settings.imap_username),
        ("MAILER_IMAP_PASSWORD", settings.imap_password),
    ):
        if not value:
            raise ConfigError(f"setting {name}: not set (--imap reads that mailbox)")
    assert settings.imap_host and settings.imap_username and settings.imap_password
    return read_imap(
        settings.imap_host,
        settings.imap_port,
        settings.imap_username,
        settings.imap_password.get_secret_value(),
        folder=settings.imap_folder,
        done_folder=settings.imap_done_folder,
        ca_file=settings.imap_ca_file,
    )


@dkim_app.command("keygen")
@reports_errors
def keygen_command(
    selector: Annotated[
        str, typer.Option(metavar="NAME", help="The DKIM selector, e.g. mail2026.")
    ],
    kind: Annotated[
        KeyKind, typer.Option(metavar="KIND", help="Key type: rsa or ed25519.")
    ] = KeyKind.rsa,
    domain: Annotated[
        str | None,
        typer.Option(
            metavar="DOMAIN",
            help="Signing domain [the domain of MAILER_FROM].",
            show_default=False,
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help=f"Folder for the key [next to the ledger: {KEY_DIR}/].",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write a new DKIM private key (mode 0600, never over an existing file) and print the
    DNS TXT record to publish for it."""
    from mailer.dkim import keygen
    from mailer.settings import load_settings

    settings = load_settings()
    signing_domain = domain or settings.from_address.rpartition("@")[2]
    made = keygen(selector, kind.value, out_dir or settings.data_dir / KEY_DIR, signing_domain)
    print(f"Wrote {made.path} (readable by you only). Publish this DNS record:")
    print()
    print(made.record)
    print()
    print(f"Then set MAILER_DKIM_SELECTOR={made.key.selector} and MAILER_DKIM_KEY_FILE={made.path}")
