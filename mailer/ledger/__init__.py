"""The crash-safe ledger: who got which message of which campaign, and in what state.

The package, one job a module: ``api`` (the public ``Ledger``), ``model`` (states, campaigns
and rows as values), ``store`` (the seam a backend fills), ``writer`` (group commits on a
thread); SQLite, the embedded default: ``sqlite``, ``sqlite_apply``, ``schema`` (its versioned
migrations), ``lock`` (one sender per file); PostgreSQL, for several senders on several
machines: ``postgres``, ``postgres_apply``, ``postgres_schema``. docs/ledger.md tells how.
"""

from mailer.errors import EmptyAudience, LedgerBusy, LedgerError
from mailer.ledger.api import Ledger, is_url
from mailer.ledger.model import OPEN_STATES, Campaign, DeliveryRow, State, WorkerProgress
from mailer.ledger.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from mailer.ledger.writer import Durable

__all__ = [
    "APPLICATION_ID",
    "MIGRATIONS",
    "OPEN_STATES",
    "SCHEMA_VERSION",
    "Campaign",
    "DeliveryRow",
    "Durable",
    "EmptyAudience",
    "Ledger",
    "LedgerBusy",
    "LedgerError",
    "State",
    "WorkerProgress",
    "is_url",
]
