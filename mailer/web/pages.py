"""The web pages: templates (overridable file by file), and the answers every route shares."""

from __future__ import annotations

from typing import Any

import jinja2
from starlette.responses import HTMLResponse

from mailer.errors import TemplateError
from mailer.pipeline import newsletter_context
from mailer.render import make_environment
from mailer.settings import Settings
from mailer.web.security import SECURITY_HEADERS

# The plain pages of errors: one heading and one sentence, never a detail that helps an
# attacker (which addresses exist, what a token holds, what broke).
ERRORS: dict[int, tuple[str, str]] = {
    400: ("This link does not work", "The link is incomplete or not valid. Nothing was changed."),
    403: ("For subscribers only", "This link is for subscribers of the newsletter only."),
    404: ("Page not found", "There is no page at this address."),
    405: ("Not allowed", "This page cannot be used that way."),
    413: ("Too much", "The form sent too much data. Nothing was changed."),
    429: (
        "Too many requests",
        "Too many messages were sent from this site just now. Please try again in a minute.",
    ),
    500: ("Something went wrong", "The page could not be shown. Please try again later."),
    503: ("Please try again later", "The newsletter is busy just now. Nothing was sent."),
}
NO_STORE = {"Cache-Control": "no-store"}


def mask_address(address: str) -> str:
    """``a•••@example.com``: enough for its owner to recognise, little for anyone else."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}•••@{domain}"


class Pages:
    """Renders ``templates/web/*.html.j2`` with the newsletter's context."""

    def __init__(self, settings: Settings) -> None:
        self.env = make_environment(settings.templates_dir)
        # Read once: no file checks per page (restart the server after changing a template).
        self.env.auto_reload = False
        self.newsletter = newsletter_context(settings)

    def render(
        self,
        name: str,
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        try:
            html = self.env.get_template(f"web/{name}.html.j2").render(
                newsletter=self.newsletter, **context
            )
        except jinja2.TemplateError as exc:
            where = getattr(exc, "filename", None) or f"web/{name}.html.j2"
            raise TemplateError(f"{where}: {exc}") from exc
        return HTMLResponse(html, status_code=status, headers=headers)

    def error(self, status: int, *, message: str | None = None) -> HTMLResponse:
        """The plain page of an HTTP error (also for token pages: never cached)."""
        heading, default = ERRORS.get(status, ERRORS[500])
        response = self.render(
            "error", status=status, headers=NO_STORE, heading=heading, message=message or default
        )
        # Also set here: the page of an unexpected error is sent outside the middleware.
        for key, value in SECURITY_HEADERS:
            response.headers[key.decode()] = value.decode()
        return response
