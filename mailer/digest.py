"""Pure selection of one issue: the articles in ``(date - days, date]``, newest first, capped."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from mailer.models import Article, Digest

_MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def human_date(day: dt.date) -> str:
    """``November 29, 2026`` regardless of the machine's locale."""
    return f"{_MONTHS[day.month - 1]} {day.day}, {day.year}"


def default_subject(newsletter: str, issue_date: dt.date) -> str:
    return f"{newsletter}: week of {human_date(issue_date)}"


def select_articles(
    articles: Iterable[Article], *, issue_date: dt.date, days: int, max_articles: int | None
) -> list[Article]:
    """Articles dated after ``issue_date - days`` and on or before ``issue_date``."""
    start = issue_date - dt.timedelta(days=days)
    chosen = [a for a in articles if start < a.date <= issue_date]
    chosen.sort(key=lambda a: (a.date, a.title), reverse=True)
    return chosen[:max_articles] if max_articles is not None else chosen


def build_digest(
    articles: Iterable[Article],
    *,
    newsletter: str,
    issue_date: dt.date,
    days: int = 7,
    max_articles: int | None = None,
    subject: str | None = None,
) -> Digest:
    chosen = select_articles(articles, issue_date=issue_date, days=days, max_articles=max_articles)
    return Digest(
        newsletter=newsletter,
        issue_date=issue_date,
        subject=subject or default_subject(newsletter, issue_date),
        articles=tuple(chosen),
    )
