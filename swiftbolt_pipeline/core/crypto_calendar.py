"""The 24/7 calendar of crypto pairs (`X:` tickers): every UTC day is a session, no holidays.

A day runs 00:00-24:00 UTC and holds 96 fifteen-minute slots. Derived buckets are anchored on
UTC midnight: h1 on every hour, h4 at 00:00, 04:00, ..., 20:00 (6 per day), d1 = the UTC day
with `ts` 00:00 UTC. Expressed as a `Session` spanning the whole day, the session-anchored
resampling of `core.resample` yields exactly these buckets, so crypto needs no resampler of
its own. Pure: no Dagster, no database."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from swiftbolt_pipeline.core.calendar import DayCalendar, Session
from swiftbolt_pipeline.core.models import Timeframe

ZONE = ZoneInfo("UTC")
DAY_MINUTES = 24 * 60
SLOTS_PER_DAY = DAY_MINUTES // 15
# Crypto's derived timeframes, d1 included: a pair's d1 is always rolled up from its m15 bars
# (there is no exchange's official daily bar for a 24/7 market), whatever stocks do.
DERIVED_TIMEFRAMES = (Timeframe.H1, Timeframe.H4, Timeframe.D1)
# Polygon's `limit` counts base minute aggregates (at most 50,000): a crypto day can trade in
# every one of its 1,440 minutes, so one request covers at most 34 days.
MAX_BASE_MINUTES = 50_000
MAX_DAYS_PER_REQUEST = MAX_BASE_MINUTES // DAY_MINUTES
# A UTC day's bars are final once the day has ended and the provider has had this long to
# settle its aggregates; until then the day's bars are provisional.
FINAL_AFTER = timedelta(minutes=20)


def day_start(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def day_session(day: date) -> Session:
    """The UTC day as a session: 00:00 to the next 00:00 UTC."""
    start = day_start(day)
    return Session(day=day, open=start, close=start + timedelta(days=1))


def days_between(start: date, end: date) -> list[date]:
    """Every day in [start, end], both inclusive, in order (weekends and holidays included)."""
    return [start + timedelta(days=n) for n in range((end - start).days + 1)]


def utc_date(instant: datetime) -> date:
    if instant.tzinfo is None:
        raise ValueError("instant must be timezone-aware")
    return instant.astimezone(UTC).date()


def final_required(day: date, now: datetime) -> bool:
    """Must `day` hold the provider's final bars by `now` (the day is over and settled)?"""
    return now >= day_start(day + timedelta(days=1)) + FINAL_AFTER


def contiguous_runs(days: list[date]) -> list[list[date]]:
    """Distinct days grouped into runs of consecutive calendar days, in order."""
    runs: list[list[date]] = []
    for day in sorted(set(days)):
        if runs and (day - runs[-1][-1]).days == 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return runs


def request_windows(days: list[date]) -> list[list[date]]:
    """Each contiguous run cut into request windows of at most MAX_DAYS_PER_REQUEST days:
    ceil(days / 34) requests per run, plus the pages a server forces."""
    windows: list[list[date]] = []
    for run in contiguous_runs(days):
        count = math.ceil(len(run) / MAX_DAYS_PER_REQUEST)
        size = MAX_DAYS_PER_REQUEST
        windows += [run[i * size : (i + 1) * size] for i in range(count)]
    return windows


def window_days(today: date, window: int, history_start: date) -> list[date]:
    """UTC days from max(today - `window` days, history start) through today, inclusive (the
    stock window's rule, `core.gaps.window_sessions`, on the 24/7 calendar)."""
    return days_between(max(today - timedelta(days=window), history_start), today)


CRYPTO = DayCalendar("24/7 UTC", ZONE, day_session, days_between)
