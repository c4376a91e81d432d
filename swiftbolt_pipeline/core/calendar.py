"""NYSE (XNYS) sessions from `exchange_calendars`.

Every date in the product is an exchange session date; every instant is UTC. This module is
the only place that knows about holidays, early closes and DST.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import pandas as pd

EXCHANGE_TZ = ZoneInfo("America/New_York")
# Polygon and Tradier serve 04:00-20:00 ET around every session (17:00 after an early close).
PRE_MARKET_MINUTES = 5 * 60 + 30
POST_MARKET_MINUTES = 4 * 60


@dataclass(frozen=True, slots=True)
class Session:
    """One trading session: its date and regular-hours bounds in UTC."""

    day: date
    open: datetime
    close: datetime

    @property
    def is_early_close(self) -> bool:
        return self.close - self.open < timedelta(hours=6, minutes=30)

    @property
    def regular_minutes(self) -> int:
        return int((self.close - self.open).total_seconds() // 60)

    @property
    def extended_open(self) -> datetime:
        return self.open - timedelta(minutes=PRE_MARKET_MINUTES)

    @property
    def extended_close(self) -> datetime:
        return self.close + timedelta(minutes=POST_MARKET_MINUTES)

    @property
    def extended_minutes(self) -> int:
        return self.regular_minutes + PRE_MARKET_MINUTES + POST_MARKET_MINUTES


@functools.cache
def _xnys() -> xcals.ExchangeCalendar:
    with warnings.catch_warnings():
        # exchange_calendars reads `Series.values` on a tz-aware column while building the
        # calendar; recent pandas warns about it. Harmless: the values are UTC either way.
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        return xcals.get_calendar("XNYS", start="2000-01-03")


def _label(day: date) -> pd.Timestamp:
    label = pd.Timestamp(day.year, day.month, day.day)
    assert isinstance(label, pd.Timestamp)  # never NaT for a real date
    return label


def is_session(day: date) -> bool:
    return bool(_xnys().is_session(_label(day)))


# Cached: exchange_calendars answers in ~0.1 ms per day, and a coverage query of two years
# asks for ~500 days (Session is immutable, the calendar fixed for the process).
@functools.lru_cache(maxsize=16_384)
def session(day: date) -> Session:
    """The session on `day`; raises ValueError when the exchange is closed that day."""
    if not is_session(day):
        raise ValueError(f"{day.isoformat()} is not an NYSE trading session")
    cal = _xnys()
    label = _label(day)
    return Session(
        day=day,
        open=cal.session_open(label).to_pydatetime(),
        close=cal.session_close(label).to_pydatetime(),
    )


def sessions_between(start: date, end: date) -> list[date]:
    """Session dates in [start, end], both inclusive, in order."""
    return list(_sessions_between(start, end))


# Cached like `session`: a sensor tick asks for the same windows once per symbol.
@functools.lru_cache(maxsize=4096)
def _sessions_between(start: date, end: date) -> tuple[date, ...]:
    if end < start:
        return ()
    cal = _xnys()
    first = max(_label(start), cal.first_session)
    last = min(_label(end), cal.last_session)
    if last < first:
        return ()
    return tuple(ts.date() for ts in cal.sessions_in_range(first, last))


def closed_weekdays_between(start: date, end: date) -> list[date]:
    """Weekdays in [start, end] with no session: holidays and ad-hoc closures."""
    open_days = set(sessions_between(start, end))
    days = (start + timedelta(days=n) for n in range((end - start).days + 1))
    return [d for d in days if d.weekday() < 5 and d not in open_days]


def exchange_date(instant: datetime) -> date:
    """The calendar date on the exchange's wall clock at `instant`."""
    return instant.astimezone(EXCHANGE_TZ).date()


def session_on_or_before(day: date) -> date:
    cal = _xnys()
    return cal.date_to_session(_label(day), direction="previous").date()


def previous_session(day: date) -> date:
    """The last session strictly before `day`."""
    return session_on_or_before(day - timedelta(days=1))


def to_utc(day: date, hour: int, minute: int = 0) -> datetime:
    """An exchange wall-clock time on `day`, as UTC."""
    local = datetime(day.year, day.month, day.day, hour, minute, tzinfo=EXCHANGE_TZ)
    return local.astimezone(UTC)


@dataclass(frozen=True)
class DayCalendar:
    """What the bar pipeline asks of a market's calendar: the zone whose calendar date is a
    partition's day, the session (bounds in UTC) of a day, and the days with a session. NYSE
    below; the 24/7 crypto calendar in `core.crypto_calendar`."""

    name: str
    zone: ZoneInfo
    session: Callable[[date], Session]
    days_between: Callable[[date, date], list[date]]


NYSE = DayCalendar("XNYS", EXCHANGE_TZ, session, sessions_between)
