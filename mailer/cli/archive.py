"""`mailer archive build`: the issue archive as pages, served or written as static files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mailer.cli.common import err, parse_issue_date, plural, reports_errors, skipped_article
from mailer.errors import InputError

archive_app = typer.Typer(
    name="archive",
    help="The archive of sent issues: web pages without personal data, and an Atom feed.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``archive`` command group to ``app``."""
    app.add_typer(archive_app)


@archive_app.command("build")
@reports_errors
def build(
    date: Annotated[
        str | None,
        typer.Option(
            metavar="DATE", help="Issue date, YYYY-MM-DD (default: today in MAILER_TIMEZONE)."
        ),
    ] = None,
    days: Annotated[
        int,
        typer.Option(metavar="N", min=1, max=3660, help="Days the issue covers, ending on --date."),
    ] = 7,
    max_articles: Annotated[
        int | None,
        typer.Option(metavar="N", min=1, help="At most this many articles, newest first."),
    ] = None,
    subject: Annotated[
        str | None,
        typer.Option(metavar="TEXT", help="Subject line (default: 'NEWSLETTER: week of DATE')."),
    ] = None,
    articles: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="Folder of article files [MAILER_ARTICLES_DIR]."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Also write every archive page as static files into this folder "
            "(issues/, articles/, feed.xml, and media/ for images kept with the articles); "
            "other files there are left alone.",
        ),
    ] = None,
    pages_only: Annotated[
        bool,
        typer.Option(
            "--pages-only",
            help="With --out: write the pages of the issues already archived, without "
            "archiving one.",
        ),
    ] = False,
) -> None:
    """Archive an issue (what `digest --send` of that date carries) in MAILER_ARCHIVE_DIR.

    A sent issue is archived by the send itself; this keeps one that was not (or builds it
    again from the articles as they are now). With --out, every page of the archive is
    written as static files too.
    """
    from mailer.archive import Pages, Store, issue_of, write_site
    from mailer.pipeline import DigestOptions, newsletter_context, select_issue
    from mailer.render import make_environment
    from mailer.settings import load_settings

    settings = load_settings(articles_dir=articles)
    if pages_only and out is None:
        raise InputError("--pages-only: give --out DIR, the folder to write the pages into")
    store = Store(settings.archive_dir)
    if not pages_only:
        issue_date = parse_issue_date(date) if date is not None else settings.today()
        options = DigestOptions(
            issue_date=issue_date, days=days, max_articles=max_articles, subject=subject
        )
        digest = select_issue(settings, options, on_skip=skipped_article)
        path = store.save(issue_of(digest))
        print(f"Archived {digest.subject!r} ({plural(len(digest.articles), 'article')}) in {path}")
    if out is None:
        return
    pages = Pages(store, make_environment(settings.templates_dir), newsletter_context(settings))

    def left_out(image: str, reason: str) -> None:
        err(f"warning: {settings.articles_dir}: image {reason}; its pages show its alt text")

    written = write_site(pages, out, articles_dir=settings.articles_dir, on_skip=left_out)
    issues = len(store.dates())
    images = sum(1 for rel in written if rel.startswith("media/"))
    print(
        f"Wrote {plural(len(written), 'file')} ({plural(issues, 'issue')}) to {out}/: "
        "issues/index.html, one page per issue and per article, and feed.xml"
        + (f"; {plural(images, 'image')} in media/." if images else ".")
    )
    if not settings.public_url:
        print("Set MAILER_PUBLIC_URL to give the feed absolute links.")
