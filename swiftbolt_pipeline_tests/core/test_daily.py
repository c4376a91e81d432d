"""Daily rules: w1/mo1 roll-ups, their periods, and the daily depth setting."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core.daily import official_vs_m15, period_sessions, rollup
from swiftbolt_pipeline.core.models import BAR_SCHEMA, InvalidInput, Timeframe
from swiftbolt_pipeline.defs.partitions import year_partitions

NOW = "2026-03-20T12:00:00-04:00"


def _d1(rows: list[tuple[datetime, float, float, float, float, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        [(ts, o, h, low, c, v, (h + low) / 2, v // 100) for ts, o, h, low, c, v in rows],
        schema=BAR_SCHEMA,
        orient="row",
    )


def _open(day: str, hour: int = 13) -> datetime:
    return datetime.fromisoformat(f"{day}T{hour}:30:00+00:00")


def test_a_holiday_week_rolls_up_its_four_sessions_from_the_monday_open() -> None:
    # Week of 2025-07-04 (Friday holiday): Monday..Thursday; then Monday 2025-07-07.
    rows = [
        (_open("2025-06-30"), 10.0, 11.0, 9.5, 10.5, 100),
        (_open("2025-07-01"), 10.5, 12.0, 10.0, 11.5, 200),
        (_open("2025-07-02"), 11.5, 11.8, 8.0, 9.0, 300),
        (_open("2025-07-03"), 9.0, 9.5, 8.5, 9.2, 400),
        (_open("2025-07-07"), 9.2, 9.9, 9.1, 9.8, 500),
    ]
    weeks = rollup(_d1(rows), Timeframe.W1)
    first_vwap = sum((h + low) / 2 * v for _, _, h, low, _, v in rows[:4]) / 1000
    assert weeks.rows() == [
        (_open("2025-06-30"), 10.0, 12.0, 8.0, 9.2, 1000, pytest.approx(first_vwap), 10),
        (_open("2025-07-07"), 9.2, 9.9, 9.1, 9.8, 500, pytest.approx(9.5), 5),
    ]


def test_a_period_whose_first_session_has_no_d1_bar_is_left_out() -> None:
    # 2025-03 starts on Monday 03-03; only the 2nd week is stored: no March bar, one week bar.
    rows = [
        (_open("2025-03-10"), 1.0, 2.0, 0.5, 1.5, 10),
        (_open("2025-03-11"), 1.5, 2.5, 1.0, 2.0, 20),
    ]
    assert rollup(_d1(rows), Timeframe.MO1).is_empty()
    assert rollup(_d1(rows), Timeframe.W1)["ts"].to_list() == [_open("2025-03-10")]


def test_a_week_straddling_new_year_reads_both_years() -> None:
    sessions = period_sessions([date(2026, 1, 2)], Timeframe.W1)
    assert sessions == [
        date(2025, 12, 29),
        date(2025, 12, 30),
        date(2025, 12, 31),
        date(2026, 1, 2),
    ]
    assert period_sessions([date(2026, 2, 27)], Timeframe.MO1)[0] == date(2026, 2, 2)


def test_official_vs_m15_flags_only_real_disagreements() -> None:
    derived = _d1([(_open("2025-07-01"), 10.0, 11.0, 9.0, 10.0, 100)])
    fine = _d1([(_open("2025-07-01"), 10.0, 11.2, 8.9, 10.5, 150)])  # post-market: +5%
    assert official_vs_m15(fine, derived).is_empty()
    for bad in (
        _d1([(_open("2025-07-01"), 10.0, 11.2, 8.9, 10.7, 150)]),  # close +7%
        _d1([(_open("2025-07-01"), 10.0, 10.9, 8.9, 10.0, 150)]),  # high below
        _d1([(_open("2025-07-01"), 10.0, 11.2, 9.1, 10.0, 150)]),  # low above
        _d1([(_open("2025-07-01"), 10.0, 11.2, 8.9, 10.0, 99)]),  # less volume
        _d1([]),  # missing
    ):
        assert official_vs_m15(bad, derived)["ts"].to_list() == [_open("2025-07-01")]


def test_daily_depth_setting() -> None:
    settings = Settings.from_env({"SWIFTBOLT_NOW": NOW, "SWIFTBOLT_HISTORY_START": "2025-01-02"})
    assert settings.daily_years == 5 and settings.daily_start == date(2021, 3, 20)
    assert settings.history_start == date(2025, 1, 2)  # independent of the intraday window
    assert year_partitions(settings).get_partition_keys() == [str(y) for y in range(2021, 2027)]
    deep = Settings.from_env({"SWIFTBOLT_NOW": NOW, "SWIFTBOLT_DAILY_YEARS": "20"})
    assert deep.daily_start == date(2006, 3, 20)
    assert len(year_partitions(deep).get_partition_keys()) == 21
    for bad in ("0", "21", "five", "-3", "2.5"):
        with pytest.raises(InvalidInput) as error:
            Settings.from_env({"SWIFTBOLT_DAILY_YEARS": bad})
        assert error.value.code == "INVALID_CONFIG"
        assert "SWIFTBOLT_DAILY_YEARS" in error.value.message and "1 to 20" in error.value.message


def test_daily_range_check_uses_the_daily_depth() -> None:
    settings = Settings.from_env({"SWIFTBOLT_NOW": NOW})
    settings.check_daily_range(date(2021, 3, 20), date(2026, 3, 19))
    with pytest.raises(InvalidInput, match="daily history"):
        settings.check_daily_range(date(2021, 3, 19), date(2026, 3, 19))
