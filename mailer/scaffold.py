"""A new newsletter folder (``mailer init``): example articles, a tiny list and a ``.env``.

Nothing is ever overwritten: every file is planned first, and if any of them exists,
nothing is written at all. Each file is then created with ``O_EXCL``, so a file that
appears meanwhile is not clobbered either (what was written so far is removed again).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mailer.errors import ConfigError, InputError, MailerError
from mailer.headers import is_web_url, normalise_email, split_from
from mailer.render import default_templates_dir

LIST_NAME = "readers"
LOCAL_SERVER = ("localhost", 1025)
_PRIVATE = 0o600  # the .env holds the secret key
_PUBLIC = 0o644


@dataclass(frozen=True)
class Planned:
    """One file to write: where (relative to the folder), what, and its mode."""

    path: Path
    text: str
    mode: int = _PUBLIC


def check_sender(value: str) -> str:
    """``--from``: ``Name <address>`` or an address, as the ``.env`` line will hold it."""
    try:
        name, address = split_from(value)
        address = normalise_email(address)
    except MailerError as exc:
        raise ConfigError(f"--from: {exc.message}") from None
    except ValueError as exc:
        raise ConfigError(f"--from: {exc}") from None
    if "\\" in (name or ""):
        raise ConfigError("--from: the name must not contain a backslash")
    return f"{name} <{address}>" if name else address


def check_public_url(value: str) -> str:
    """``--public-url``: as ``MAILER_PUBLIC_URL`` wants it (https, a host, no ? or #)."""
    parts = urlsplit(value)
    if not is_web_url(value, https=True) or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError("--public-url: must be an https:// URL with a host name, and no ? or #")
    return value.rstrip("/")


def plan(
    *,
    today: dt.date,
    sender: str | None = None,
    public_url: str | None = None,
    templates: bool = False,
    secret_key: str | None = None,
) -> list[Planned]:
    """Every file of a new newsletter folder; ``sender`` and ``public_url`` already checked
    (``check_sender``, ``check_public_url``). The articles are dated ``today``, so that the
    first ``mailer digest`` (whose issue ends today) has them all."""
    key = secret_key or secrets.token_urlsafe(32)
    files = [
        Planned(Path(".env"), _dotenv(key, sender, public_url, templates=templates), _PRIVATE),
        Planned(Path("articles") / f"{today.isoformat()}-welcome.md", _markdown(today)),
        Planned(Path("articles") / f"{today.isoformat()}-scraped-page.txt", _scraped(today)),
        Planned(Path("articles") / f"{today.isoformat()}-saved-page.html", _saved_page(today)),
        Planned(Path("lists") / f"{LIST_NAME}.csv", _LIST),
    ]
    if templates:
        source = default_templates_dir()
        for path in sorted(source.rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                text = path.read_text(encoding="utf-8")
                files.append(Planned(Path("templates") / path.relative_to(source), text))
    return files


def write(folder: Path, files: list[Planned]) -> list[Path]:
    """Write ``files`` into ``folder`` (created if needed), or nothing if any exists.

    ``InputError`` names the first file that exists already.
    """
    for item in files:
        target = folder / item.path
        if target.exists() or target.is_symlink():
            raise InputError(
                f"{target}: already exists; nothing was written",
                hint="`mailer init` never overwrites: run it in a new or empty folder",
            )
    written: list[Path] = []
    try:
        for item in files:
            target = folder / item.path
            target.parent.mkdir(parents=True, exist_ok=True)
            _create(target, item.text, item.mode)
            written.append(target)
    except FileExistsError as exc:
        _remove(written)
        raise InputError(f"{exc.filename}: appeared while writing; nothing was kept") from None
    except OSError as exc:
        _remove(written)
        raise InputError(f"{exc.filename or folder}: cannot write ({exc.strerror})") from None
    return written


def _create(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink()


_LIST = """email,name
you@example.org,You
a.friend@example.org,A Friend
"""


def _dotenv(key: str, sender: str | None, public_url: str | None, *, templates: bool) -> str:
    from_line = (
        f'MAILER_FROM="{sender}"'
        if sender
        else '# MAILER_FROM="Your Newsletter <news@your-domain.org>"'
    )
    url_line = (
        f"MAILER_PUBLIC_URL={public_url}"
        if public_url
        else "# MAILER_PUBLIC_URL=https://news.your-domain.org"
    )
    host, port = LOCAL_SERVER
    templates_lines = (
        "\n# The templates to edit: a file here replaces the default of the same name.\n"
        "MAILER_TEMPLATES_DIR=templates\n"
        if templates
        else ""
    )
    return f"""\
# Settings of this newsletter, read by every `mailer` command run in this folder. MAILER_*
# environment variables win over this file. Keep it private: it holds the secret key.

# Signs the unsubscribe links; new and random. Keep it, and keep it secret: with another
# key, the links in mail already sent stop working.
MAILER_SECRET_KEY={key}

# Who the newsletter is from: "Name <address>" or an address. The name is also the
# newsletter's name (MAILER_NEWSLETTER_NAME sets another). --send refuses the sample
# address newsletter@example.com, the default until this is set.
{from_line}

# The https:// address where `mailer serve` answers, behind a TLS proxy: unsubscribe links
# go to <it>/unsubscribe and the archive to <it>/issues/. --send refuses the sample link
# https://example.com/unsubscribe until this (or MAILER_UNSUBSCRIBE_URL) is set.
{url_line}

# The list `mailer digest` uses without --list (lists/{LIST_NAME}.csv).
MAILER_DEFAULT_LIST={LIST_NAME}

# The SMTP relay: for now a local test server, which keeps what it gets and passes nothing
# on. Start one in another terminal with:
#   pip install aiosmtpd && python -m aiosmtpd -n -l {host}:{port}
MAILER_SMTP_HOST={host}
MAILER_SMTP_PORT={port}
MAILER_SMTP_SECURITY=none

# A real relay instead: its host, port 587 with starttls (or 465 with tls), and a login.
# Try it with `mailer check`, then a first `mailer digest --send --limit 1`.
# MAILER_SMTP_HOST=smtp.your-provider.example
# MAILER_SMTP_PORT=587
# MAILER_SMTP_SECURITY=starttls
# MAILER_SMTP_USERNAME=you@your-domain.org
# MAILER_SMTP_PASSWORD=

# "Today" and the days of an issue are in this time zone (default: this machine's).
# MAILER_TIMEZONE=Europe/London
{templates_lines}"""


def _markdown(today: dt.date) -> str:
    return f"""\
---
title: Welcome to your newsletter
date: {today.isoformat()}
url: https://example.org/news/welcome
author: The Editor
summary: A Markdown article, the kind you write yourself. Edit it, or add your own.
---

Each file in `articles/` is one article. This one is Markdown with a few lines of front
matter at the top: a title, a date, and the link that "Read more" points to.

## What goes in an issue

- Articles dated within the issue's days (`--days`, 7 by default), newest first.
- At most `--max-articles` of them, if you give it.

Write **bold**, *italics* and [links](https://example.org/) as in any Markdown file.
"""


def _scraped(today: dt.date) -> str:
    return f"""\
Title: A page copied from a website
Date: {today.isoformat()}
URL: https://example.org/news/copied-page
Author: A. Writer

This is a plain-text article, as you get it by copying a web page's text: the title, date
and link lines at the top, then the text.

Menus, share buttons and footers that come along with a copied page are left out of the
issue, so you need not tidy them away by hand.

Share this story
"""


def _saved_page(today: dt.date) -> str:
    return f"""\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>A web page saved from a browser</title>
<meta property="og:url" content="https://example.org/news/saved-page">
<meta name="author" content="A. Reporter">
<meta property="article:published_time" content="{today.isoformat()}">
</head>
<body>
<nav><a href="/">Home</a> <a href="/news">News</a></nav>
<article>
<h1>A web page saved from a browser</h1>
<p>This article is a whole web page, saved with the browser's "Save page as". Its title,
date, author and link come from the page itself, and only the article's own text goes
into the issue.</p>
<p>The navigation and the footer around it are left out.</p>
</article>
<footer>Copyright, contact and the like.</footer>
</body>
</html>
"""
