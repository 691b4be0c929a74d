"""The archive's routes: /issues/, /issues/<date>/, /articles/<slug>/ and /feed.xml."""

from __future__ import annotations

from starlette.routing import BaseRoute

from mailer.settings import Settings


def routes(settings: Settings) -> list[BaseRoute]:
    """The archive's routes for the app (filled in by the archive change)."""
    return []
