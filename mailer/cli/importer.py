"""`mailer import`: articles from a feed or a web page, written as article files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mailer.cli.common import Command, plural, reports_errors

if TYPE_CHECKING:
    from mailer.importer import Report


def register(app: typer.Typer) -> None:
    app.command("import", cls=Command)(import_)


@reports_errors
def import_(
    url: Annotated[
        str,
        typer.Argument(metavar="URL", help="An RSS or Atom feed, or a web page (http or https)."),
    ],
    since: Annotated[
        str | None,
        typer.Option(
            metavar="DATE",
            help="Skip items older than this: YYYY-MM-DD (in MAILER_TIMEZONE), or a date and time.",
        ),
    ] = None,
    articles: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Folder to write article files to [MAILER_ARTICLES_DIR]."),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(metavar="SECONDS", min=0.1, max=600, help="Seconds the whole fetch may take."),
    ] = 30.0,
) -> None:
    """Write each new item of a feed, or one web page, as an article file (.md).

    Never overwrites a file, and a second run writes nothing new: an item is known by the
    `source:` (or `url:`) line of the files already there, whatever they are called. Safe to
    run from cron. Exit codes: 0 done, 2 bad input (not a feed or page, bad --since),
    3 the fetch failed (refused, timed out, HTTP error, too large).
    """
    from mailer.importer import MAX_FEED_ITEMS, FetchPolicy, import_url, parse_since
    from mailer.settings import load_settings

    settings = load_settings(articles_dir=articles)
    zone = settings.zone
    since_at = parse_since(since, zone) if since is not None else None
    folder = settings.articles_dir
    result = import_url(
        url,
        folder,
        since=since_at,
        zone=zone,
        policy=FetchPolicy(timeout=timeout),
        on_report=_print_report,
    )
    if result.beyond_cap:
        print(
            f"skipped {plural(result.beyond_cap, 'more item')} "
            f"(a feed is read to its first {MAX_FEED_ITEMS:,} items)"
        )
    if not result.reports:
        print("the feed has no items")


def _print_report(report: Report) -> None:
    if report.path is not None:
        print(f"wrote {report.path}", flush=True)
    else:
        print(f"skipped ({report.outcome}) {report.label}", flush=True)
