"""A PostgreSQL URL in messages: where the database is, never its password."""

from __future__ import annotations

import contextlib
import re
import urllib.parse

import psycopg
import psycopg.conninfo


def location_of(url: str) -> str:
    """The database as shown in messages: ``postgresql://user@host:port/name``, never a
    password (nor any part of a URL that does not parse)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:
        return "the PostgreSQL database of MAILER_LEDGER (its URL does not parse)"
    user, host = info.get("user"), str(info.get("host") or "")
    port, name = info.get("port"), info.get("dbname") or ""
    where = f"{user}@" if user else ""
    query = ""
    if host.startswith("/"):  # a Unix socket's folder
        query = f"?host={host}"
    else:
        where += host + (f":{port}" if port else "")
    return redact(f"postgresql://{where}/{name}{query}", url)


def redact(text: str, url: str) -> str:
    """``text`` (an error from the driver, say) without the URL's password, however the URL
    gives it: ``user:password@``, even unescaped, or ``?password=``."""
    secrets_: set[str] = set()
    with contextlib.suppress(psycopg.Error):
        password = psycopg.conninfo.conninfo_to_dict(url).get("password")
        if password:
            secrets_.add(str(password))
    authority = url.partition("://")[2]
    userinfo = authority.rpartition("@")[0] if "@" in authority else ""
    if ":" in userinfo:
        raw = userinfo.partition(":")[2]
        secrets_.update({raw, urllib.parse.unquote(raw)})
    for found in re.findall(r"password=([^&\s]*)", url):
        secrets_.update({found, urllib.parse.unquote(found)})
    for secret in sorted((s for s in secrets_ if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text
