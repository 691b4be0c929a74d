"""The command line: one module per command group; each command parses, calls the library,
and reports. Nothing imports it but the ``mailer`` script and ``python -m mailer``.

Start-up matters (``mailer --help`` should answer at once): the command modules declare
their options at module level and import the library inside the commands.
"""

from __future__ import annotations

from typing import Annotated

import typer

from mailer import __version__
from mailer.cli import (
    archive,
    bounces,
    digest,
    forward,
    importer,
    init,
    ledger,
    lists,
    serve,
    status,
)

app = typer.Typer(
    name="mailer",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"mailer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Weekly digests and send-to-a-friend mail from article files.

    Start with `mailer init` in a new folder. Exit codes: 0 nothing failed (also when --limit
    left recipients for later, or a question was answered no), 1 some recipients failed,
    were deferred or are unknown, 2 usage, configuration or input error (including a --send
    refused for sample settings or without --yes), 3 the run stopped (authentication, TLS,
    unreachable server, relay refusing us), 75 interrupted and resumable.
    """


init.register(app)
digest.register(app)
lists.register(app)
status.register(app)
forward.register(app)
importer.register(app)
serve.register(app)
archive.register(app)
bounces.register(app)
ledger.register(app)


def main() -> None:
    app()


__all__ = ["app", "main"]
