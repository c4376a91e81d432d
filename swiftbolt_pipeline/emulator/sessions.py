"""Exchange calendar and clock helpers for the emulator (XNYS sessions, the emulator's "now").

Extended hours run 04:00-20:00 America/New_York on every XNYS session; on an early-close day
(regular close 13:00) the extended session ends at 17:00 instead.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

NY = ZoneInfo("America/New_York")
MINUTE_MS = 60_000
NOW_ENV = "SWIFTBOLT_NOW"

_lock = threading.Lock()
_sessions: dict[date, Session] | None = None
_session_dates: np.ndarray | None = None  # sorted datetime64[D]


@dataclass(frozen=True)
class Session:
    """One XNYS session: regular open/close and extended window, all epoch ms UTC."""

    day: date
    open_ms: int
    close_ms: int
    ext_start_ms: int
    ext_end_ms: int

    @property
    def early_close(self) -> bool:
        return self.close_ms - self.open_ms < 6 * 3600 * 1000


def _load() -> tuple[dict[date, Session], np.ndarray]:
    global _sessions, _session_dates
    with _lock:
        if _sessions is None or _session_dates is None:
            import exchange_calendars as xc

            with warnings.catch_warnings():  # exchange_calendars trips pandas deprecations
                warnings.simplefilter("ignore")
                sched = xc.get_calendar("XNYS").schedule
            opens = (
                sched["open"]
                .dt.tz_localize(None)
                .to_numpy()
                .astype("datetime64[ms]")
                .astype(np.int64)
            )
            closes = (
                sched["close"]
                .dt.tz_localize(None)
                .to_numpy()
                .astype("datetime64[ms]")
                .astype(np.int64)
            )
            days = [ts.date() for ts in sched.index]
            out: dict[date, Session] = {}
            for d, o, c in zip(days, opens, closes, strict=True):
                ext_start = local_ms(d, 4, 0)
                early = int(c) - int(o) < 6 * 3600 * 1000
                ext_end = local_ms(d, 17 if early else 20, 0)
                out[d] = Session(d, int(o), int(c), ext_start, ext_end)
            _sessions = out
            _session_dates = np.array(days, dtype="datetime64[D]")
        return _sessions, _session_dates


def local_ms(d: date, hour: int, minute: int) -> int:
    """Epoch ms of the wall-clock time ``d hour:minute`` in America/New_York."""
    dt = datetime(d.year, d.month, d.day, hour, minute, tzinfo=NY)
    return int(dt.timestamp() * 1000)


def day_start_ms(d: date) -> int:
    """Epoch ms of local midnight (America/New_York) starting day ``d``."""
    return local_ms(d, 0, 0)


def session(d: date) -> Session | None:
    """The XNYS session on ``d``, or None on weekends/holidays/outside the calendar."""
    return _load()[0].get(d)


def sessions_between(start_ms: int, end_ms: int) -> list[Session]:
    """Sessions whose extended window [04:00, ext end) intersects [start_ms, end_ms)."""
    sessions, dates = _load()
    if end_ms <= start_ms:
        return []
    first = (datetime.fromtimestamp(start_ms / 1000, NY) - timedelta(days=1)).date()
    last = datetime.fromtimestamp(end_ms / 1000, NY).date()
    lo = int(np.searchsorted(dates, np.datetime64(first, "D"), side="left"))
    hi = int(np.searchsorted(dates, np.datetime64(last, "D"), side="right"))
    found = (sessions[d.astype(object)] for d in dates[lo:hi])
    return [s for s in found if s.ext_end_ms > start_ms and s.ext_start_ms < end_ms]


def now_ms(pinned: str | None = None) -> int:
    """The emulator's clock: `pinned` (its runtime config), else ``SWIFTBOLT_NOW`` (ISO-8601,
    offset; naive = UTC), else real time.

    Read on every call so tests can change it with ``monkeypatch.setenv``.
    """
    raw = pinned or os.environ.get(NOW_ENV, "").strip()
    if not raw:
        return int(time.time() * 1000)
    dt = datetime.fromisoformat(raw)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1000)


@lru_cache(maxsize=1)
def calendar_bounds() -> tuple[date, date]:
    _, dates = _load()
    return dates[0].astype(object), dates[-1].astype(object)
