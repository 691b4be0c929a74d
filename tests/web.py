"""A real uvicorn serving ``mailer serve``'s app on 127.0.0.1, in a thread of the test."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import uvicorn
from starlette.applications import Starlette

from mailer.settings import Settings
from mailer.web.app import create_app

SECURITY = {
    "content-security-policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@dataclass
class WebServer:
    url: str  # http://127.0.0.1:<port>, no trailing slash
    app: Starlette

    def client(self) -> httpx.Client:
        """A client that never follows redirects (a POST must not be answered with one)."""
        return httpx.Client(base_url=self.url, follow_redirects=False, timeout=30.0)


@contextmanager
def web_server(settings: Settings) -> Iterator[WebServer]:
    """Start uvicorn on a port the system picks, wait until it answers, stop it after."""
    app = create_app(settings)
    config = uvicorn.Config(
        app, access_log=False, log_level="warning", lifespan="on", ws="none", server_header=False
    )
    server = uvicorn.Server(config)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # NODELAY
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    # Outside the main thread, uvicorn leaves the signal handlers alone.
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started:
            assert thread.is_alive(), "uvicorn stopped while starting"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        yield WebServer(f"http://127.0.0.1:{port}", app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop"


def assert_security_headers(response: httpx.Response) -> None:
    for name, value in SECURITY.items():
        assert response.headers.get(name) == value, (response.url, name, response.headers)
