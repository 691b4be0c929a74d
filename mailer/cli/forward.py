"""``mailer forward``: one article to up to five friends, each their own message."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mailer.cli.common import Command, exit_code, plural, reports_errors
from mailer.errors import EXIT_OK, EXIT_RESUMABLE, InputError

if TYPE_CHECKING:
    # The library loads when a command runs, not for `mailer --help` (start-up time).
    from mailer.forward import Forward, Watch
    from mailer.models import Rendered
    from mailer.settings import Settings
    from mailer.suppression_list import SuppressionList

# mailer.forward's MAX_FRIENDS and MAX_NOTE_CHARS, for the help without importing it (a test
# keeps them equal).
MAX_FRIENDS = 5
MAX_NOTE_CHARS = 500


def register(app: typer.Typer) -> None:
    """Add the ``forward`` command to the main app."""
    app.command("forward", cls=Command)(forward)


@reports_errors
def forward(
    article: Annotated[
        str,
        typer.Argument(metavar="ARTICLE", help="Article file in the articles folder, or its slug."),
    ],
    to: Annotated[
        list[str],
        typer.Option(
            "--to",
            metavar="EMAIL",
            help=f"The friend's address; repeat for up to {MAX_FRIENDS} friends, "
            "each of whom gets their own message.",
        ),
    ],
    sender: Annotated[
        str,
        typer.Option(
            metavar="ADDRESS",
            help="Who shares it: 'Name <address>' or just the address; replies go there.",
        ),
    ],
    note: Annotated[
        str | None,
        typer.Option(
            metavar="TEXT", help=f"A short plain-text note, at most {MAX_NOTE_CHARS} characters."
        ),
    ] = None,
    send: Annotated[
        bool, typer.Option(help="Really send over SMTP (default: write previews).")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="Preview folder: a new one, or an earlier preview, which is replaced "
            "(default: MAILER_PREVIEWS_DIR/forward-SLUG).",
        ),
    ] = None,
) -> None:
    """Send one article to a friend with a short note, from the newsletter on the sharer's
    behalf; writes previews unless --send is given.

    Refused, with nothing sent or written: more than 5 friends, a note over 500 characters,
    control characters or line breaks in the name, note or an address, an address that is
    not exactly one valid address, a friend who cannot receive forwards, an article the
    friend already got, and more than MAILER_FORWARD_DAILY_QUOTA forwards (default 10) by
    one sender in 24 hours. Only messages actually sent count.
    """
    from mailer.forward import prepare_forward, render_forward
    from mailer.ledger.suppression import open_suppression
    from mailer.pipeline import newsletter_context
    from mailer.render import make_environment
    from mailer.settings import load_settings

    if send and out is not None:
        raise InputError("--send sends and --out writes previews; give one of them")
    settings = load_settings()
    if send:
        settings.require_sendable()
    suppression = open_suppression(settings, sending=send)
    request = prepare_forward(
        settings,
        article=article,
        friends=to,
        sender=sender,
        note=note,
        is_suppressed=suppression.is_suppressed,
    )
    env = make_environment(settings.templates_dir)
    rendered = render_forward(request, env=env, newsletter=newsletter_context(settings))
    if send:
        raise typer.Exit(_send(settings, request, rendered, suppression))
    _preview(settings, request, rendered, out or settings.previews_dir / request.preview_name)


def _preview(settings: Settings, request: Forward, rendered: Rendered, folder: Path) -> None:
    """The dry run: the same guards (the ledger read only), nothing recorded."""
    import asyncio

    from mailer.campaign import write_previews
    from mailer.forward import check_forward_limits, forward_composer
    from mailer.ledger import Ledger
    from mailer.models import Recipient
    from mailer.pipeline import preview_media

    ledger = Ledger.open(settings.ledger, readonly=True) if settings.ledger_is_there() else None
    try:
        check_forward_limits(ledger, request, quota=settings.forward_daily_quota)
    finally:
        if ledger is not None:
            ledger.close()
    composers = [forward_composer(settings, request, rendered, f) for f in request.friends]
    html, text = composers[0].preview_documents(Recipient(request.friends[0]), rendered)
    messages = (
        composer.compose(Recipient(email=friend), index)
        for index, (composer, friend) in enumerate(zip(composers, request.friends, strict=True), 1)
    )
    extras: dict[str, str | bytes] = {"forward.html": html, "forward.txt": text}
    if not settings.public_url:  # the HTML shows a local image from media/ beside it
        extras.update(preview_media([request.article], settings.articles_dir))
    written = asyncio.run(write_previews(folder, messages, extras=extras))
    print(
        f"Wrote {plural(written, 'message')} for {rendered.subject!r} "
        f"to {folder}/ (nothing was sent)"
    )
    print(f"Open {folder / 'forward.html'} in a browser, or any .eml file in a mail client.")


def _send(
    settings: Settings, request: Forward, rendered: Rendered, suppression: SuppressionList
) -> int:
    """The library's forward delivery, with progress on screen."""
    from mailer.cli.progress import SendDisplay, print_summary
    from mailer.forward import Watch, deliver_forward
    from mailer.transports.smtp import SMTPTransport

    transport = SMTPTransport(settings.smtp_config())

    def watch(friend: str) -> Watch:
        print(f"Forwarding {rendered.subject!r} to {friend} via {transport.config.where}")
        display = SendDisplay()
        return Watch(display.start, display.result, display.close, print_summary)

    def already_sent(friend: str) -> None:
        print(f"Already sent to {friend}: skipped.")

    delivered = deliver_forward(
        settings,
        request,
        rendered,
        suppression,
        transport=transport,
        watch=watch,
        on_already_sent=already_sent,
    )
    if delivered.stopped:
        return EXIT_RESUMABLE
    return max((exit_code(outcome) for outcome in delivered.outcomes), default=EXIT_OK)
