"""Article times are instants: compared in UTC against the issue's days in the newsletter's zone."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from mailer.articles import load_article, load_articles
from mailer.digest import build_digest, select_articles, window_start
from mailer.models import Article

UTC = dt.UTC
KIRITIMATI = ZoneInfo("Pacific/Kiritimati")  # UTC+14
LOS_ANGELES = ZoneInfo("America/Los_Angeles")  # DST ends 2026-11-01, starts 2026-03-08
MINUS_12 = ZoneInfo("Etc/GMT+12")  # UTC-12 (the sign of Etc/ names is POSIX's)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=UTC)


def write(folder: Path, name: str, when: str | None, title: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    date = f"date: {when}\n" if when is not None else ""
    path.write_text(
        f"---\ntitle: {title or path.stem}\n{date}url: https://example.com/{path.stem}\n---\n\nx\n",
        encoding="utf-8",
    )
    return path


def titles(articles: list[Article] | tuple[Article, ...]) -> list[str]:
    return [a.title for a in articles]


@pytest.mark.parametrize(
    ("written", "zone", "published", "day", "date_only"),
    [
        ("2026-11-28T00:15:00+14:00", UTC, utc(2026, 11, 27, 10, 15), dt.date(2026, 11, 27), False),
        ("2026-11-27T23:30:00-12:00", UTC, utc(2026, 11, 28, 11, 30), dt.date(2026, 11, 28), False),
        (
            "2026-11-27T10:15:00Z",
            KIRITIMATI,
            utc(2026, 11, 27, 10, 15),
            dt.date(2026, 11, 28),
            False,
        ),
        ("2026-11-27T10:15:00Z", MINUS_12, utc(2026, 11, 27, 10, 15), dt.date(2026, 11, 26), False),
        ("2026-11-27 10:15:00 +01:00", UTC, utc(2026, 11, 27, 9, 15), dt.date(2026, 11, 27), False),
        (
            "2026-11-27T10:15:00.5-05:00",
            UTC,
            utc(2026, 11, 27, 15, 15) + dt.timedelta(seconds=0.5),
            dt.date(2026, 11, 27),
            False,
        ),
        # Naive: local time in the newsletter's zone, with its DST rules.
        (
            "2026-11-27T10:15:00",
            KIRITIMATI,
            utc(2026, 11, 26, 20, 15),
            dt.date(2026, 11, 27),
            False,
        ),
        ("2026-03-07T12:00:00", LOS_ANGELES, utc(2026, 3, 7, 20), dt.date(2026, 3, 7), False),
        ("2026-03-08T12:00:00", LOS_ANGELES, utc(2026, 3, 8, 19), dt.date(2026, 3, 8), False),
        ("2026-11-01T01:30:00", LOS_ANGELES, utc(2026, 11, 1, 8, 30), dt.date(2026, 11, 1), False),
        # A date alone: that day in the newsletter's zone, from its first instant.
        ("2026-11-28", UTC, utc(2026, 11, 28), dt.date(2026, 11, 28), True),
        ("2026-11-28", KIRITIMATI, utc(2026, 11, 27, 10), dt.date(2026, 11, 28), True),
        ("2026-11-28", MINUS_12, utc(2026, 11, 28, 12), dt.date(2026, 11, 28), True),
        ("2026-11-01", LOS_ANGELES, utc(2026, 11, 1, 7), dt.date(2026, 11, 1), True),
        ("2026-11-02", LOS_ANGELES, utc(2026, 11, 2, 8), dt.date(2026, 11, 2), True),
    ],
)
def test_an_article_time_is_an_instant_and_its_date_is_the_day_in_the_zone(
    tmp_path: Path,
    written: str,
    zone: dt.tzinfo,
    published: dt.datetime,
    day: dt.date,
    date_only: bool,
) -> None:
    article = load_article(write(tmp_path, "a.md", written), zone=zone)
    assert article.published == published and article.published.utcoffset() == dt.timedelta(0)
    assert (article.date, article.date_only, article.date_from_mtime) == (day, date_only, False)


def test_a_txt_header_time_is_an_instant_too(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_text(
        "Title: Harbour\nDate: 2026-11-28T00:15:00+14:00\nURL: https://e.com/h\n\nStory.\n",
        encoding="utf-8",
    )
    article = load_article(path, zone=LOS_ANGELES)
    assert article.published == utc(2026, 11, 27, 10, 15)
    assert article.date == dt.date(2026, 11, 27) and not article.date_only


def test_without_a_date_the_modification_time_is_the_instant(tmp_path: Path) -> None:
    path = write(tmp_path, "a.md", None)
    when = utc(2026, 11, 27, 12)
    os.utime(path, (when.timestamp(), when.timestamp()))
    article = load_article(path, zone=KIRITIMATI)
    assert (article.published, article.date) == (when, dt.date(2026, 11, 28))
    assert article.date_from_mtime and not article.date_only


def test_newest_instant_first_not_the_date_in_its_own_offset(tmp_path: Path) -> None:
    # Reported: an article from 10:15Z on the 27th, written with +14:00, came before three
    # from the 28th.
    write(tmp_path, "a.md", "2026-11-28T00:15:00+14:00", "Aardvark, 27th 10:15Z")
    write(tmp_path, "b.md", "2026-11-28T08:00:00Z", "Badger, 28th 08:00Z")
    write(tmp_path, "c.md", "2026-11-28T06:00:00-05:00", "Crane, 28th 11:00Z")
    write(tmp_path, "d.md", "2026-11-28", "Dormouse, the 28th")
    articles = load_articles(tmp_path, zone=UTC)
    digest = build_digest(articles, newsletter="N", issue_date=dt.date(2026, 11, 28), zone=UTC)
    assert titles(digest.articles) == [
        "Crane, 28th 11:00Z",
        "Badger, 28th 08:00Z",
        "Dormouse, the 28th",  # a date alone: the first instant of its day
        "Aardvark, 27th 10:15Z",
    ]


def test_an_article_from_the_future_is_not_in_the_issue(tmp_path: Path) -> None:
    # Reported: an article dated 08:00Z on the 29th was in an issue built 22 hours earlier.
    write(tmp_path, "later.md", "2026-11-29T08:00:00Z", "Later")
    write(tmp_path, "earlier.md", "2026-11-28T09:00:00Z", "Earlier")
    articles = load_articles(tmp_path, zone=KIRITIMATI)
    built = utc(2026, 11, 28, 10)  # the 29th, 00:00 in Kiritimati
    issue = dt.date(2026, 11, 29)
    early = build_digest(articles, newsletter="N", issue_date=issue, zone=KIRITIMATI, now=built)
    assert titles(early.articles) == ["Earlier"]
    on_time = build_digest(
        articles, newsletter="N", issue_date=issue, zone=KIRITIMATI, now=utc(2026, 11, 29, 8)
    )
    assert titles(on_time.articles) == ["Later", "Earlier"]


def test_articles_hours_old_are_in_this_issue_not_the_next(tmp_path: Path) -> None:
    # Reported: articles 1.5 and 25 hours old were pushed to the next week, being dated in
    # their own offsets a day after the issue's date in the newsletter's zone (UTC-12).
    now = utc(2026, 11, 27, 11)  # the 26th, 23:00 in the newsletter's zone
    write(tmp_path, "fresh.md", "2026-11-27T09:30:00Z", "Fresh")  # 1.5 hours old
    write(tmp_path, "day-old.md", "2026-11-27T00:00:00+14:00", "Day old")  # 25 hours old
    articles = load_articles(tmp_path, zone=MINUS_12)
    issue = dt.date(2026, 11, 26)  # Settings.today(now) in UTC-12
    digest = build_digest(articles, newsletter="N", issue_date=issue, zone=MINUS_12, now=now)
    assert titles(digest.articles) == ["Fresh", "Day old"]
    following = build_digest(
        articles,
        newsletter="N",
        issue_date=issue + dt.timedelta(days=7),
        zone=MINUS_12,
        now=now + dt.timedelta(days=7),
    )
    assert following.articles == ()


def test_the_days_of_an_issue_follow_the_zone_across_a_dst_change(tmp_path: Path) -> None:
    # 2026-11-01 in Los Angeles is 25 hours long: 07:00Z to 08:00Z the next day.
    write(tmp_path, "before.md", "2026-11-01T06:59:59Z", "Before")  # Oct 31, 23:59:59 PDT
    write(tmp_path, "first.md", "2026-11-01T07:00:00Z", "First")  # Nov 1, 00:00 PDT
    write(tmp_path, "last.md", "2026-11-02T07:59:59Z", "Last")  # Nov 1, 23:59:59 PST
    write(tmp_path, "after.md", "2026-11-02T08:00:00Z", "After")  # Nov 2, 00:00 PST
    write(tmp_path, "day.md", "2026-11-01", "Day")
    articles = load_articles(tmp_path, zone=LOS_ANGELES)
    chosen = select_articles(
        articles, issue_date=dt.date(2026, 11, 1), days=1, max_articles=None, zone=LOS_ANGELES
    )
    assert titles(chosen) == ["Last", "First", "Day"]  # equal instants: with a time first
    assert [a.date for a in chosen] == [dt.date(2026, 11, 1)] * 3

    # And in UTC the same articles fall on other days.
    in_utc = select_articles(
        load_articles(tmp_path, zone=UTC),
        issue_date=dt.date(2026, 11, 1),
        days=1,
        max_articles=None,
        zone=UTC,
    )
    assert titles(in_utc) == ["First", "Before", "Day"]


def test_a_week_in_kiritimati_starts_at_its_midnight(tmp_path: Path) -> None:
    write(tmp_path, "edge.md", "2026-11-21T10:00:00Z", "Edge")  # Nov 22, 00:00 +14
    write(tmp_path, "out.md", "2026-11-21T09:59:59Z", "Out")  # Nov 21, 23:59:59 +14
    write(tmp_path, "end.md", "2026-11-28T09:59:59Z", "End")  # Nov 28, 23:59:59 +14
    write(tmp_path, "next.md", "2026-11-28T10:00:00Z", "Next")  # Nov 29, 00:00 +14
    articles = load_articles(tmp_path, zone=KIRITIMATI)
    digest = build_digest(
        articles, newsletter="N", issue_date=dt.date(2026, 11, 28), zone=KIRITIMATI
    )
    assert titles(digest.articles) == ["End", "Edge"]
    assert window_start(dt.date(2026, 11, 28), 7) == dt.date(2026, 11, 21)


def test_future_articles_are_never_included(tmp_path: Path) -> None:
    now = dt.datetime(2026, 11, 27, 9, 30, tzinfo=LOS_ANGELES)
    write(tmp_path, "past.md", "2026-11-27T09:30:00-08:00", "At now")
    write(tmp_path, "soon.md", "2026-11-27T09:30:01-08:00", "A second later")
    write(tmp_path, "today.md", "2026-11-27", "Today")
    write(tmp_path, "tomorrow.md", "2026-11-28", "Tomorrow")
    articles = load_articles(tmp_path, zone=LOS_ANGELES)
    issue = dt.date(2026, 11, 28)  # an issue dated ahead still stops at now
    digest = build_digest(articles, newsletter="N", issue_date=issue, zone=LOS_ANGELES, now=now)
    assert titles(digest.articles) == ["At now", "Today"]
    unbounded = build_digest(articles, newsletter="N", issue_date=issue, zone=LOS_ANGELES)
    assert titles(unbounded.articles) == ["Tomorrow", "A second later", "At now", "Today"]
    with pytest.raises(ValueError, match="aware"):
        build_digest(articles, newsletter="N", issue_date=issue, now=dt.datetime(2026, 11, 27))


def test_equal_instants_are_not_ordered_by_title(tmp_path: Path) -> None:
    write(tmp_path, "1-zebra.md", "2026-11-27T12:00:00Z", "Zebra")
    write(tmp_path, "2-aardvark.md", "2026-11-27T13:00:00+01:00", "Aardvark")
    write(tmp_path, "0-midnight.md", "2026-11-27", "Midnight, a date alone")
    write(tmp_path, "3-midnight.md", "2026-11-27T00:00:00Z", "Midnight, with a time")
    articles = load_articles(tmp_path, zone=UTC)
    for order in (articles, articles[::-1]):
        chosen = select_articles(
            order, issue_date=dt.date(2026, 11, 27), days=1, max_articles=None, zone=UTC
        )
        assert titles(chosen) == [
            "Zebra",
            "Aardvark",
            "Midnight, with a time",
            "Midnight, a date alone",
        ]


@pytest.mark.parametrize(
    ("issue_date", "days"),
    [
        (dt.date(1, 1, 3), 999_999_999),
        (dt.date(1, 1, 3), 10**30),
        (dt.date(1, 1, 1), 1),
        (dt.date.max, 1),
        (dt.date.max, 0),
        (dt.date.max, -5),
        (dt.date.min, -(10**30)),
    ],
)
@pytest.mark.parametrize("zone", [UTC, KIRITIMATI, MINUS_12])
def test_issue_dates_at_the_calendar_ends_do_not_overflow(
    tmp_path: Path, issue_date: dt.date, days: int, zone: dt.tzinfo
) -> None:
    write(tmp_path, "first.md", "0001-01-01", "First day")
    write(tmp_path, "last.md", "9999-12-31", "Last day")
    write(tmp_path, "now.md", "2026-11-27T10:00:00Z", "Now")
    articles = load_articles(tmp_path, zone=UTC)
    now = utc(2026, 11, 27, 12)
    for when in (now, None):
        digest = build_digest(
            articles, newsletter="N", issue_date=issue_date, days=days, zone=zone, now=when
        )
        for article in digest.articles:
            assert 0 <= issue_date.toordinal() - article.date.toordinal() < days
    window_start(issue_date, days)  # no OverflowError either


def test_the_calendar_ends_are_in_reach_of_a_long_window(tmp_path: Path) -> None:
    write(tmp_path, "first.md", "0001-01-01", "First day")
    write(tmp_path, "now.md", "2026-11-27T10:00:00Z", "Now")
    articles = load_articles(tmp_path, zone=UTC)
    digest = build_digest(
        articles, newsletter="N", issue_date=dt.date(2026, 11, 27), days=10**9, zone=UTC
    )
    assert titles(digest.articles) == ["Now", "First day"]
    assert window_start(dt.date(2026, 11, 27), 10**9) is None
    assert window_start(dt.date(1, 1, 3), 2) == dt.date(1, 1, 1)
