"""``mailer init``: a new newsletter folder, ready for a first preview."""

from __future__ import annotations

import datetime as dt
import os
import shlex
from pathlib import Path
from typing import Annotated

import typer

from mailer.cli.common import Command, reports_errors
from mailer.errors import ConfigError


def register(app: typer.Typer) -> None:
    """Add the ``init`` command to the main app."""
    app.command("init", cls=Command)(init)


@reports_errors
def init(
    folder: Annotated[
        Path,
        typer.Argument(metavar="DIR", help="The newsletter's folder (default: this one)."),
    ] = Path("."),
    templates: Annotated[
        bool,
        typer.Option(
            "--templates",
            help="Also copy the default templates into DIR/templates to edit.",
        ),
    ] = False,
    sender: Annotated[
        str | None,
        typer.Option(
            "--from",
            metavar="ADDRESS",
            help="Who the newsletter is from: 'Name <address>' or just the address "
            "(MAILER_FROM; left as a comment to fill in if not given).",
        ),
    ] = None,
    public_url: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="The https:// address `mailer serve` will answer at (MAILER_PUBLIC_URL; "
            "the unsubscribe links go there).",
        ),
    ] = None,
) -> None:
    """Start a newsletter in DIR: example articles, a small list and a .env.

    The articles (.md, .txt and .html, one of each) are dated today; the list has two
    example addresses; the .env holds a new secret key and points at a local test server.

    Nothing is overwritten: if any of the files exists, nothing is written. `mailer digest`
    then works at once in DIR; --send needs MAILER_FROM and MAILER_PUBLIC_URL (--from and
    --public-url here, or in .env later).
    """
    from mailer import scaffold

    checked_sender = scaffold.check_sender(sender) if sender is not None else None
    checked_url = scaffold.check_public_url(public_url) if public_url is not None else None
    files = scaffold.plan(
        today=_today(),
        sender=checked_sender,
        public_url=checked_url,
        templates=templates,
    )
    written = scaffold.write(folder, files)
    shown = "this folder" if folder == Path(".") else f"{folder}/"
    print(f"Started a newsletter in {shown}:")
    described = [(str(item.path), _describe(item.path)) for item in files]
    described = [(path, note) for path, note in described if note]
    width = max(len(path) for path, _ in described)
    for path, note in described:
        print(f"  {path:<{width}}  {note}")
    if templates:
        count = sum(1 for path in written if "templates" in path.relative_to(folder).parts[:1])
        print(f"  {'templates/':<{width}}  {count} template files to edit (MAILER_TEMPLATES_DIR)")
    print()
    print("Next:")
    if folder != Path("."):
        print(f"  cd {shlex.quote(str(folder))}")
    print("  mailer digest            previews of this week's issue in previews/ (nothing is sent)")
    if checked_sender is None or checked_url is None:
        print("  edit .env                set MAILER_FROM and MAILER_PUBLIC_URL (needed to send)")
    host, port = scaffold.LOCAL_SERVER
    print(f"  pip install aiosmtpd && python -m aiosmtpd -n -l {host}:{port}")
    print("                           a local test server (it prints what it gets), in another")
    print("                           terminal; the .env already points at it")
    print("  mailer digest --send     send the issue to it")


def _describe(path: Path) -> str:
    """What a written file is for (nothing for each of the copied templates)."""
    if path.parts[0] == "templates":
        return ""
    if path.name == ".env":
        return "settings, with a new MAILER_SECRET_KEY (readable by you only)"
    if path.parts[0] == "lists":
        return "a list of two example addresses (MAILER_DEFAULT_LIST)"
    kinds = {".md": "in Markdown", ".txt": "as copied text", ".html": "as a saved web page"}
    return f"an example article {kinds.get(path.suffix, '')}, dated today"


def _today() -> dt.date:
    """Today in MAILER_TIMEZONE, else in this machine's zone (as `mailer digest` sees it)."""
    import zoneinfo

    from mailer.settings import local_zone

    name = os.environ.get("MAILER_TIMEZONE", "")
    try:
        zone = zoneinfo.ZoneInfo(name) if name else local_zone()
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"setting MAILER_TIMEZONE: {name[:64]!r} is not a time zone name",
            hint="e.g. Europe/London or UTC",
        ) from None
    return dt.datetime.now(dt.UTC).astimezone(zone).date()
