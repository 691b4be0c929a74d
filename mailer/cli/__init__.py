"""The command line: one module per command group; each command parses, calls the library,
and reports. Nothing imports it but the ``mailer`` script and ``python -m mailer``."""

from __future__ import annotations

import typer

from mailer.cli import digest, forward, lists, status

app = typer.Typer(
    name="mailer",
    help="Weekly digests and send-to-a-friend mail from article files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """Weekly digests and send-to-a-friend mail from article files.

    Exit codes: 0 all sent, 1 some recipients failed, were deferred or are unknown, 2 usage,
    configuration or input error, 3 the run stopped (authentication, TLS, unreachable
    server, relay refusing us), 75 interrupted and resumable.
    """


digest.register(app)
lists.register(app)
status.register(app)
forward.register(app)


def main() -> None:
    app()


__all__ = ["app", "main"]
