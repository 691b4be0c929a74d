"""The PostgreSQL ledger's schema: its versioned migrations, run under an advisory lock."""

from __future__ import annotations

from typing import Final

import psycopg

from mailer.errors import LedgerError

APPLICATION_ID: Final = 0x6D6C6472  # "mldr": the advisory lock that serialises migrations
SUPPRESSION_LOCK: Final = 0x6D6C7370  # "mlsp": held by each change to the suppression list

# Each entry is one version: the statements that take the schema from the previous version
# to this one. Append, never edit: mailer_schema.version records how many ran. Timestamps
# the ledger writes are its fixed-width UTC text, as in SQLite, so both read alike; leases
# and worker liveness use the server's clock (timestamptz), one clock for every machine.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE campaigns (
            id BIGSERIAL PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            list_path TEXT NOT NULL DEFAULT '',
            subject TEXT NOT NULL DEFAULT '',
            frozen_count INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            finished_at TEXT,
            issue_date TEXT,
            cutoff TEXT,
            fingerprint TEXT NOT NULL DEFAULT '',
            fields TEXT NOT NULL DEFAULT '[]'
        )""",
        # One row per campaign and recipient, ids in list order. ``worker`` is the sender
        # that claimed the row last; ``lease_until`` is set while it holds a claim on a row
        # it has not finished with.
        """CREATE TABLE deliveries (
            id BIGSERIAL PRIMARY KEY,
            campaign_id BIGINT NOT NULL REFERENCES campaigns (id),
            email TEXT NOT NULL,
            address TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            fields TEXT NOT NULL DEFAULT '{}',
            line INTEGER NOT NULL DEFAULT 0,
            position INTEGER NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sending',
                'sent', 'deferred', 'failed', 'unknown', 'skipped')),
            message_id TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_code INTEGER,
            last_reply TEXT,
            hard_bounce INTEGER NOT NULL DEFAULT 0,
            refusals INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            sending_at TEXT,
            sent_at TEXT,
            worker TEXT,
            lease_until TIMESTAMPTZ,
            UNIQUE (campaign_id, email)
        )""",
        # A campaign's rows in list order: claims and pages read it from where they left off.
        "CREATE INDEX deliveries_in_order ON deliveries (campaign_id, id)",
        # Rows in flight and rows claimed: at most a few hundred per sender.
        "CREATE INDEX deliveries_sending ON deliveries (worker) WHERE state = 'sending'",
        "CREATE INDEX deliveries_claimed ON deliveries (worker) WHERE lease_until IS NOT NULL",
        # A sender is alive while its expiry is in the future; it renews it every few
        # seconds. Rows it left 'sending' once it is not become 'unknown'.
        """CREATE TABLE workers (
            id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            expires_at TIMESTAMPTZ NOT NULL,
            stopped_at TIMESTAMPTZ
        )""",
        """CREATE TABLE forwards (
            id BIGSERIAL PRIMARY KEY,
            sender TEXT NOT NULL,
            friend TEXT NOT NULL,
            article TEXT NOT NULL,
            campaign_id BIGINT NOT NULL,
            email TEXT NOT NULL,
            created_at TEXT NOT NULL,
            FOREIGN KEY (campaign_id, email) REFERENCES deliveries (campaign_id, email)
        )""",
        "CREATE INDEX forwards_sender ON forwards (sender)",
        "CREATE INDEX forwards_friend_article ON forwards (friend, article)",
    ),
    (
        # The suppression list, shared by every sender and `mailer serve` (see
        # mailer.ledger.suppression): one row per address key, as in lists/suppressed.csv.
        """CREATE TABLE suppressions (
            key TEXT PRIMARY KEY,
            email TEXT NOT NULL,
            reason TEXT NOT NULL CHECK (reason IN ('unsubscribed', 'bounced', 'complaint',
                'manual')),
            day DATE
        )""",
        # Every change, in the order it was committed (writers take SUPPRESSION_LOCK, so a
        # larger seq is a later commit): readers follow it from the last seq they read.
        """CREATE TABLE suppression_log (
            seq BIGSERIAL PRIMARY KEY,
            at TIMESTAMPTZ NOT NULL DEFAULT now(),
            action TEXT NOT NULL CHECK (action IN ('suppress', 'resubscribe')),
            key TEXT NOT NULL,
            email TEXT NOT NULL,
            reason TEXT NOT NULL,
            day DATE,
            note TEXT NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX suppression_log_key ON suppression_log (key)",
    ),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def version(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """The schema version of the database (0: none yet); refuses other databases' tables."""
    row = conn.execute(
        "SELECT to_regclass('mailer_schema') IS NOT NULL, to_regclass('deliveries') IS NOT NULL"
    ).fetchone()
    assert row is not None
    ours, tables = row
    if not ours:
        if tables:
            raise LedgerError("this database has a deliveries table that is not a mailer ledger's")
        return 0
    found = conn.execute("SELECT version FROM mailer_schema").fetchone()
    return int(str(found[0])) if found else 0


def migrate(conn: psycopg.Connection[tuple[object, ...]], location: str) -> None:
    """Run the missing steps, each in its own transaction with its version; concurrent
    senders starting at once wait for each other on the advisory lock."""
    for number in range(1, SCHEMA_VERSION + 1):
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (APPLICATION_ID,))
            current = version(conn)
            if current > SCHEMA_VERSION:
                raise LedgerError(
                    f"{location}: the ledger has schema version {current}, newer than this "
                    f"mailer's {SCHEMA_VERSION}",
                    hint="upgrade mailer",
                )
            if current >= number:
                continue
            if current == 0:
                conn.execute("CREATE TABLE mailer_schema (version INTEGER NOT NULL)")
                conn.execute("INSERT INTO mailer_schema VALUES (0)")
            for statement in MIGRATIONS[number - 1]:
                conn.execute(statement)
            conn.execute("UPDATE mailer_schema SET version = %s", (number,))
