"""Asset-check rules on hand-made frames: each rule passes good data and catches its defect."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.models import BAR_SCHEMA, Timeframe
from swiftbolt_pipeline.core.quality import (
    check_counts,
    derived_mismatches,
    duplicate_timestamps,
    expected_bars,
    ohlc_violations,
)
from swiftbolt_pipeline.core.resample import resample

FULL = calendar.session(date(2025, 11, 26))
EARLY = calendar.session(date(2025, 11, 28))


def bars(starts: list[datetime], **overrides: float) -> pl.DataFrame:
    rows = [
        {
            "ts": ts,
            "open": overrides.get("open", 10.0),
            "high": overrides.get("high", 11.0),
            "low": overrides.get("low", 9.0),
            "close": overrides.get("close", 10.5),
            "volume": int(overrides.get("volume", 100)),
            "vwap": 10.2,
            "trade_count": 3,
        }
        for ts in starts
    ]
    return pl.DataFrame(rows, schema=BAR_SCHEMA)


def slots(session: calendar.Session, minutes: int = 15) -> list[datetime]:
    count = session.regular_minutes // minutes
    return [session.open + timedelta(minutes=minutes * i) for i in range(count)]


def test_expected_bars_follow_the_calendar() -> None:
    session_timeframes = (Timeframe.M15, Timeframe.H1, Timeframe.H4, Timeframe.D1)
    assert [expected_bars(FULL, tf) for tf in session_timeframes] == [26, 7, 2, 1]
    assert [expected_bars(EARLY, tf) for tf in session_timeframes] == [14, 4, 1, 1]


def test_counts_report_empty_intervals_without_failing() -> None:
    frame = bars(slots(FULL)[:-3] + slots(EARLY))
    report = check_counts(frame, [FULL, EARLY], Timeframe.M15)
    assert report.passed
    assert (report.expected, report.stored) == (40, 37)
    assert report.short_days == {FULL.day: 3}


def test_counts_fail_on_off_grid_or_extra_bars() -> None:
    off = bars([*slots(FULL)[:-1], FULL.open + timedelta(minutes=7)])
    report = check_counts(off, [FULL], Timeframe.M15)
    assert not report.passed and report.off_grid == 1
    extra = bars(slots(FULL, 60)).vstack(bars([FULL.open + timedelta(hours=7)]))
    report = check_counts(extra, [FULL], Timeframe.H1)
    # 16:30 ET is past the close: it is not in the session, so it counts as extra or off-grid.
    assert not report.passed


def test_ohlc_and_duplicates() -> None:
    good = bars(slots(FULL))
    assert ohlc_violations(good).is_empty()
    assert ohlc_violations(bars(slots(FULL)[:2], open=12.0)).height == 2
    assert ohlc_violations(bars(slots(FULL)[:1], volume=-1)).height == 1
    assert duplicate_timestamps(good) == 0
    assert duplicate_timestamps(bars(slots(FULL)[:3] + slots(FULL)[:1])) == 1


def test_derived_mismatches_find_a_tampered_bucket() -> None:
    m15 = bars(slots(FULL))
    h1 = resample(m15, Timeframe.H1, [FULL])
    assert derived_mismatches(m15, h1, Timeframe.H1, [FULL]).is_empty()
    tampered = h1.with_columns(
        pl.when(pl.col("ts") == FULL.open).then(pl.col("volume") + 1).otherwise("volume")
    )
    assert derived_mismatches(m15, tampered, Timeframe.H1, [FULL]).height == 1
    assert derived_mismatches(m15, h1.slice(1), Timeframe.H1, [FULL]).height == 1
