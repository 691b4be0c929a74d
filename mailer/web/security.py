"""What every response carries (CSP, nosniff, no referrer), and the cap on request bodies."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY = 8 * 1024  # bytes: a forward form with the longest note fits several times over

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    # The policy, plus: article images on the archive pages (https only), no
    # framing of any page (default-src does not cover frame-ancestors), no <base> tricks.
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'unsafe-inline'; img-src https: 'self'; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]
_OURS = frozenset(name for name, _ in SECURITY_HEADERS)
_TOO_LARGE = b"Request body too large\n"


class Guard:
    """ASGI middleware: adds the security headers to every response (errors included),
    ``Cache-Control: no-store`` to any answer to a request carrying a query (tokens ride in
    it), and refuses a body over ``max_body`` bytes with 413 before the app reads any of it.
    The body is read here, then handed to the app whole."""

    def __init__(self, app: ASGIApp, *, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        no_store = bool(scope.get("query_string"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _OURS]
                if no_store and not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                headers += SECURITY_HEADERS
                message = {**message, "headers": headers}
            await send(message)

        if scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send_with_headers)
            return
        body = await self._read_body(scope, receive)
        if body is None:
            await send_with_headers(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [
                        (b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", str(len(_TOO_LARGE)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": _TOO_LARGE})
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # then only http.disconnect

        await self.app(scope, replay, send_with_headers)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or ``None`` if it is (or says it will be) over the cap."""
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    if int(value) > self.max_body:
                        return None
                except ValueError:
                    return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)
