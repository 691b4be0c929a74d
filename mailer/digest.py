"""Pure selection of one issue: the articles of its days, newest first, capped."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from mailer.headers import human_date
from mailer.models import Article, Digest


def default_subject(newsletter: str, issue_date: dt.date) -> str:
    """``The Weekly: week of November 27, 2026``."""
    return f"{newsletter}: week of {human_date(issue_date)}"


def window_start(issue_date: dt.date, days: int) -> dt.date | None:
    """The day before the first day an issue covers (``issue_date - days``): the issue holds
    what came after it. ``None`` when that is before 0001-01-01 (no bound)."""
    ordinal = issue_date.toordinal() - days
    return dt.date.fromordinal(ordinal) if 1 <= ordinal <= dt.date.max.toordinal() else None


def select_articles(
    articles: Iterable[Article],
    *,
    issue_date: dt.date,
    days: int,
    max_articles: int | None,
    zone: dt.tzinfo = dt.UTC,
    now: dt.datetime | None = None,
) -> list[Article]:
    """The articles of the ``days`` days ending with ``issue_date`` in ``zone``, newest first.

    An article with a time is in when its instant falls in those days (midnight to midnight
    in ``zone``); one with a date alone (``date_only``) when that date is one of them.
    Neither may be after ``now`` (callers pass the clock, so that this stays pure; ``None``
    cuts nothing). A date alone counts as its day's first instant in ``zone``, the only one
    sure not to be in the future; ties go to articles with a time, then by path and slug.
    Days past 0001-01-01 or 9999-12-31 are clamped there.
    """
    if now is not None:
        if now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")
        # In UTC: two datetimes that share a tzinfo compare by wall clock, DST aside.
        now = _utc(now)
    last = issue_date.toordinal()
    first = last - days + 1
    if first > last:
        return []
    start = _midnight(first, zone)  # None: before 0001-01-01, no lower bound
    end = _midnight(last + 1, zone)  # None: after 9999-12-31, no upper bound
    chosen = []
    for article in articles:
        if article.date_only:
            if not first <= article.date.toordinal() <= last:
                continue
        elif (start is not None and _utc(article.published) < start) or (
            end is not None and _utc(article.published) >= end
        ):
            continue
        if now is not None and _instant(article, zone) > now:
            continue
        chosen.append(article)
    chosen.sort(key=lambda a: (a.date_only, str(a.source), a.slug))
    chosen.sort(key=lambda a: _instant(a, zone), reverse=True)  # stable: ties keep order
    return chosen[:max_articles] if max_articles is not None else chosen


def _midnight(ordinal: int, zone: dt.tzinfo) -> dt.datetime | None:
    """The first instant of day ``ordinal`` in ``zone``; ``None`` past the calendar's ends."""
    if not 1 <= ordinal <= dt.date.max.toordinal():
        return None
    return _utc(dt.datetime.combine(dt.date.fromordinal(ordinal), dt.time(), tzinfo=zone))


def _instant(article: Article, zone: dt.tzinfo) -> dt.datetime:
    """``published``, or for a date alone the first instant of that date in ``zone``."""
    if article.date_only:
        return _utc(dt.datetime.combine(article.date, dt.time(), tzinfo=zone))
    return _utc(article.published)


def _utc(moment: dt.datetime) -> dt.datetime:
    """``moment`` in UTC, or as it is where UTC would overflow (the first and last days)."""
    try:
        return moment.astimezone(dt.UTC)
    except OverflowError:
        return moment


def build_digest(
    articles: Iterable[Article],
    *,
    newsletter: str,
    issue_date: dt.date,
    days: int = 7,
    max_articles: int | None = None,
    subject: str | None = None,
    zone: dt.tzinfo = dt.UTC,
    now: dt.datetime | None = None,
) -> Digest:
    """One issue: see ``select_articles`` for which articles, in which order."""
    chosen = select_articles(
        articles,
        issue_date=issue_date,
        days=days,
        max_articles=max_articles,
        zone=zone,
        now=now,
    )
    return Digest(
        newsletter=newsletter,
        issue_date=issue_date,
        subject=subject or default_subject(newsletter, issue_date),
        articles=tuple(chosen),
    )
