"""The SQLite ledger's schema: its versioned migrations, and the checks made before using a file."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Final

from mailer.errors import LedgerError

APPLICATION_ID: Final = 0x6D6C6472  # "mldr": tells a mailer ledger from any SQLite file

# Each entry is one version: the statements that take the schema from the previous
# version to this one. Append, never edit: PRAGMA user_version records how many ran.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        f"PRAGMA application_id = {APPLICATION_ID}",
        """CREATE TABLE campaigns (
            id INTEGER PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            kind TEXT NOT NULL,
            list_path TEXT NOT NULL DEFAULT '',
            subject TEXT NOT NULL DEFAULT '',
            frozen_count INTEGER NOT NULL DEFAULT 0,
            first_row INTEGER NOT NULL DEFAULT 0,
            last_row INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            finished_at TEXT
        )""",
        # Rows are stored in list order (id), so that a send in that order dirties few pages
        # per commit; (campaign_id, email) is the key every state change looks up.
        """CREATE TABLE deliveries (
            id INTEGER PRIMARY KEY,
            campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
            email TEXT NOT NULL,
            address TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            fields TEXT NOT NULL DEFAULT '{}',
            line INTEGER NOT NULL DEFAULT 0,
            position INTEGER NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN
                ('pending', 'sending', 'sent', 'deferred', 'failed', 'unknown')),
            message_id TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_code INTEGER,
            last_reply TEXT,
            hard_bounce INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            sending_at TEXT,
            sent_at TEXT,
            UNIQUE (campaign_id, email)
        )""",
        # Holds only the rows in flight (at most the concurrency): recovery without a scan.
        "CREATE INDEX deliveries_sending ON deliveries (state) WHERE state = 'sending'",
        """CREATE TABLE forwards (
            id INTEGER PRIMARY KEY,
            sender TEXT NOT NULL,
            friend TEXT NOT NULL,
            article TEXT NOT NULL,
            campaign_id INTEGER NOT NULL,
            email TEXT NOT NULL,
            created_at TEXT NOT NULL,
            FOREIGN KEY (campaign_id, email) REFERENCES deliveries (campaign_id, email)
        )""",
        "CREATE INDEX forwards_sender ON forwards (sender)",
        "CREATE INDEX forwards_friend_article ON forwards (friend, article)",
    ),
    # 2: a final 'skipped' state (suppressed during a campaign); what a campaign is (its
    # issue date, cut-off instant, content fingerprint and list columns), so that a resume
    # can tell a different issue or list from the one it started. SQLite cannot alter a
    # CHECK constraint, so the deliveries table is rebuilt (foreign keys are off meanwhile).
    (
        """CREATE TABLE deliveries_v2 (
            id INTEGER PRIMARY KEY,
            campaign_id INTEGER NOT NULL REFERENCES campaigns (id),
            email TEXT NOT NULL,
            address TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            fields TEXT NOT NULL DEFAULT '{}',
            line INTEGER NOT NULL DEFAULT 0,
            position INTEGER NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN
                ('pending', 'sending', 'sent', 'deferred', 'failed', 'unknown', 'skipped')),
            message_id TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            last_code INTEGER,
            last_reply TEXT,
            hard_bounce INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            sending_at TEXT,
            sent_at TEXT,
            UNIQUE (campaign_id, email)
        )""",
        "INSERT INTO deliveries_v2 SELECT * FROM deliveries",
        "DROP TABLE deliveries",
        "ALTER TABLE deliveries_v2 RENAME TO deliveries",
        "CREATE INDEX deliveries_sending ON deliveries (state) WHERE state = 'sending'",
        "ALTER TABLE campaigns ADD COLUMN issue_date TEXT",
        "ALTER TABLE campaigns ADD COLUMN cutoff TEXT",
        "ALTER TABLE campaigns ADD COLUMN fingerprint TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE campaigns ADD COLUMN fields TEXT NOT NULL DEFAULT '[]'",
    ),
    # 3: how many times a row was refused with a 5xx that was held for judgment, so that a
    # campaign gives up on it after enough refusals (not after enough attempts: 4xx retries
    # and refusals about us must not count).
    ("ALTER TABLE deliveries ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0",),
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


def check_identity(conn: sqlite3.Connection, path: Path) -> None:
    """Refuse a SQLite file that is not a mailer ledger, or one from a newer mailer."""
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id not in (0, APPLICATION_ID) or (app_id == 0 and (version or tables)):
        raise LedgerError(f"{path}: not a mailer ledger")
    if version > SCHEMA_VERSION:
        raise LedgerError(
            f"{path}: the ledger has schema version {version}, newer than this mailer's "
            f"{SCHEMA_VERSION}",
            hint="upgrade mailer",
        )


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Run the missing migration steps, each in its own transaction with its version."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version >= SCHEMA_VERSION:
        return
    # A step may rebuild a table that others reference; the foreign keys are checked once
    # the step is done, inside its transaction (the pragma is a no-op inside one).
    conn.execute("PRAGMA foreign_keys = OFF")
    try:
        for number in range(version + 1, SCHEMA_VERSION + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[number - 1]:
                    conn.execute(statement)
                if conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
                    raise LedgerError(f"{path}: migration {number} broke a foreign key")
                conn.execute(f"PRAGMA user_version = {number}")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # an interrupt may land before BEGIN or after COMMIT
                    conn.execute("ROLLBACK")
                raise
    finally:
        conn.execute("PRAGMA foreign_keys = ON")
