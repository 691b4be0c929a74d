"""``mailer serve``: the reader's web side (one-click unsubscribe, archive, forward form)."""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import signal
import socket
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from mailer.cli.common import err, reports_errors
from mailer.errors import ConfigError


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the main app."""
    app.command("serve")(serve)


@reports_errors
def serve(
    host: Annotated[
        str,
        typer.Option(
            metavar="HOST", help="Address to listen on; keep loopback behind a reverse proxy."
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option(metavar="PORT", min=0, max=65535, help="Port (0: any free port)."),
    ] = 8000,
) -> None:
    """Serve the reader's pages over HTTP: one-click unsubscribe at the path of
    MAILER_UNSUBSCRIBE_URL, the forward form at /forward/<slug>, and the archive.

    Run it behind a TLS reverse proxy that answers at MAILER_PUBLIC_URL. It reads the same
    settings, lists, suppression list, ledger and articles as the other commands. Requests
    are not logged (their links carry tokens). Stops cleanly on Ctrl-C or SIGTERM.
    """
    # Imported here, so that every other command starts without loading a web server.
    import uvicorn

    from mailer.settings import load_settings
    from mailer.web.app import create_app

    settings = load_settings()
    app = create_app(settings)
    # The suppression list read above lives as long as the server: keep the collector from
    # walking its objects again and again (a pause per collection on a big list).
    gc.freeze()
    sock = _listen(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    print(f"Serving {settings.newsletter_name!r} on http://{shown}:{bound_port}/", flush=True)
    if not _is_loopback(host):
        err(f"Warning: listening on {host}, not only on this machine; put a TLS proxy in front.")
    config = uvicorn.Config(
        app,
        access_log=False,  # a request line holds its token
        server_header=False,
        log_level="warning",
        lifespan="on",
        ws="none",
    )
    server = uvicorn.Server(config)
    with sock, _graceful_stop(server):
        server.run(sockets=[sock])


def _listen(host: str, port: int) -> socket.socket:
    """Bind before starting, so that a port in use is one clear line, not a log."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP said explicitly: asyncio sets TCP_NODELAY on accepted sockets only
        # then, and without it every response waits ~40 ms on Nagle and a delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    except OSError as exc:
        raise ConfigError(f"--host {host}: {exc.strerror}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        detail = exc.strerror or str(exc)
        raise ConfigError(f"--host {host} --port {port}: cannot listen ({detail})") from None
    return sock


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def _graceful_stop(server: Any) -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP end the server gracefully (requests in flight finish) and
    the command with 0: a service manager's stop is not an interruption of work."""

    def stop(signum: int, frame: object) -> None:
        server.should_exit = True

    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, stop) for sig in stops}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
