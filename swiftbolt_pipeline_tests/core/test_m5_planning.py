"""Planning and cleaning of the opt-in 5-minute bars (pure)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.clean import clean_m15
from swiftbolt_pipeline.core.planning import (
    ALPACA_PAGE_BARS,
    POLYGON_BASE_MINUTE_LIMIT,
    plan_requests,
    worst_case_bars,
)

TWO_YEARS = calendar.sessions_between(date(2024, 3, 20), date(2026, 3, 19))


def test_two_years_are_501_sessions() -> None:
    assert len(TWO_YEARS) == 501


def test_a_full_session_is_192_five_minute_or_64_fifteen_minute_bars_at_worst() -> None:
    (window,) = plan_requests([date(2025, 6, 2)])
    # 04:00-20:00 ET: 16 hours of 12 five-minute or 4 fifteen-minute bars.
    assert worst_case_bars(window, 5) == 16 * 12
    assert worst_case_bars(window, 15) == 16 * 4


def test_every_m5_window_of_two_years_is_one_polygon_request_and_one_alpaca_page() -> None:
    windows = plan_requests(TWO_YEARS)
    assert [d for w in windows for d in w.sessions] == TWO_YEARS
    for window in windows:
        assert window.max_base_minutes <= POLYGON_BASE_MINUTE_LIMIT
        # One symbol's 5-minute bars of a window fit one Alpaca page (limit 10,000 bars)...
        assert worst_case_bars(window, 5) <= ALPACA_PAGE_BARS
        # ...because a window holds at most 50,000 // 960 = 52 sessions of 960 minutes.
        assert len(window.sessions) <= 52
    # 501 sessions need ceil(501 / 52) = 10 windows at least (early closes shorten a few).
    assert len(windows) == 10


def _bar(ts: datetime) -> dict[str, object]:
    return {"ts": ts, "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5, "volume": 100,
            "vwap": 10.2, "trade_count": 5}  # fmt: skip


def _frame(times: list[datetime]) -> pl.DataFrame:
    return pl.DataFrame([_bar(t) for t in times], schema={
        "ts": pl.Datetime("us", "UTC"), "open": pl.Float64, "high": pl.Float64,
        "low": pl.Float64, "close": pl.Float64, "volume": pl.Int64, "vwap": pl.Float64,
        "trade_count": pl.Int64,
    })  # fmt: skip


def test_cleaning_on_the_five_minute_grid() -> None:
    session = calendar.session(date(2025, 6, 2))
    opened = session.open.astimezone(UTC)
    on_grid = [opened + timedelta(minutes=5 * k) for k in range(78)]
    off = opened + timedelta(minutes=7)
    bars, report = clean_m15(_frame([*on_grid, off]), [session], bar_minutes=5)
    assert bars.height == 78 and report.counts["off_grid"] == 1 and not report.wrong_interval
    # The same bars judged as m15 are mostly off its grid: another bar size was served.
    _, as_m15 = clean_m15(_frame(on_grid), [session])
    assert as_m15.kept == 26 and as_m15.counts["off_grid"] == 52 and as_m15.wrong_interval
