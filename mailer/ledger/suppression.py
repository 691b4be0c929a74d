"""The suppression list every command consults, wherever it lives.

With the default SQLite ledger it is ``lists/suppressed.csv`` and its journal
(``mailer.suppression``). With a PostgreSQL ledger it lives in that database, so that
``mailer serve`` on one machine and senders on others see the same unsubscribes: the
``suppressions`` table holds the list and ``suppression_log`` every change in commit order.
Each process keeps the list in memory and reads only the changes it has not seen, at most
every ``RECHECK_EVERY`` seconds during a send (so an unsubscribe made mid-campaign is
honoured by every sender within about a second), and at once when asked.

A local ``lists/suppressed.csv`` is no longer the list once it is shared, but it is never
ignored: its addresses the database does not account for count as suppressed, and a sender
refuses to start while there are any, so that switching ``MAILER_LEDGER`` cannot make anyone
mailable again. ``mailer ledger migrate-suppressions`` moves them in.

The shared list is ``mailer.ledger.postgres_suppression``.
"""

from __future__ import annotations

from mailer.ledger.api import is_url
from mailer.settings import Settings
from mailer.suppression import Suppression, suppression_path
from mailer.suppression_list import SuppressionList


def open_suppression(settings: Settings, *, sending: bool = False) -> SuppressionList:
    """The suppression list of these settings: in the PostgreSQL ledger's database when
    ``MAILER_LEDGER`` is one, else the files in the lists folder. With PostgreSQL, addresses
    of a local ``lists/suppressed.csv`` not yet moved in count as suppressed here, and
    ``sending`` refuses them (``ConfigError``): every sender must see the same list."""
    if is_url(settings.ledger):
        from mailer.ledger.postgres_suppression import SharedSuppression  # psycopg: if used

        return SharedSuppression.open(
            str(settings.ledger), local=suppression_path(settings.lists_dir), refuse=sending
        )
    return Suppression.for_lists_dir(settings.lists_dir)
