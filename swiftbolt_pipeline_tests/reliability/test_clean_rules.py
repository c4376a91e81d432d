"""`core.clean`: each rule on its own, their order, and the accounting invariant."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.clean import RULES, clean_m15
from swiftbolt_pipeline.core.models import BAR_SCHEMA

pytestmark = pytest.mark.reliability

DAY = date(2025, 11, 28)  # an early close (13:00 ET): 14 bars
SESSION = calendar.session(DAY)
M15 = timedelta(minutes=15)


def bar(i: float, **overrides: Any) -> dict[str, Any]:
    row = {
        "ts": SESSION.open + i * M15,
        "open": 10.0,
        "high": 11.0,
        "low": 9.0,
        "close": 10.5,
        "volume": 100,
        "vwap": 10.2,
        "trade_count": 7,
    }
    return row | overrides


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=BAR_SCHEMA, orient="row")


def full_day() -> list[dict[str, Any]]:
    return [bar(i, close=10.0 + i / 100) for i in range(14)]


def test_a_clean_session_passes_untouched() -> None:
    rows = full_day()
    kept, report = clean_m15(frame(rows[::-1]), [SESSION])
    assert kept.equals(frame(rows))
    assert report.served == report.kept == 14
    assert report.rejected() == {} and not any(report.counts.values())


@pytest.mark.parametrize(
    ("bad", "rule"),
    [
        (bar(3, open=None), "null_fields"),
        (bar(3, high=float("nan")), "null_fields"),
        (bar(3, low=float("-inf")), "null_fields"),
        (bar(3, volume=None), "null_fields"),
        (bar(3, ts=None), "null_fields"),
        (bar(3, ts=SESSION.open + timedelta(days=1)), "outside_sessions"),  # Saturday
        (bar(3, ts=SESSION.open - timedelta(days=1)), "outside_sessions"),  # Thanksgiving
        (bar(-2), "extended_hours"),  # 09:00 ET
        (bar(14), "extended_hours"),  # 13:00 ET: the early close
        (bar(3.5), "off_grid"),
        (bar(3, ts=SESSION.open + 3 * M15 + timedelta(seconds=1)), "off_grid"),
        (bar(3, volume=-1), "negative_volume"),
        (bar(3, low=0.0), "non_positive_price"),  # otherwise consistent: 0 <= open, close
        (bar(3, open=-1.0, low=-2.0, close=-0.5, high=-0.25), "non_positive_price"),
        (bar(3, open=0.0, high=0.0, low=0.0, close=0.0), "non_positive_price"),
        (bar(3, high=8.0, low=12.0), "ohlc_inconsistent"),  # high < low
        (bar(3, close=11.5), "ohlc_inconsistent"),  # high < close
        (bar(3, open=8.5), "ohlc_inconsistent"),  # low > open
    ],
)
def test_each_rule_drops_and_counts_the_bad_bar(bad: dict[str, Any], rule: str) -> None:
    rows = [r for r in full_day() if r["ts"] != SESSION.open + 3 * M15]
    kept, report = clean_m15(frame([*rows, bad]), [SESSION])
    assert kept.equals(frame(rows))
    assert report.counts[rule] == 1
    assert sum(report.counts.values()) == 1
    assert report.rejected() == ({} if rule == "extended_hours" else {rule: 1})


def test_identical_duplicates_collapse_silently() -> None:
    rows = full_day()
    repeated = [*rows[:5], *rows[:5], *rows[5:]]  # a page served twice by a buggy cursor
    kept, report = clean_m15(frame(repeated), [SESSION])
    assert kept.equals(frame(rows))
    assert report.counts["duplicate_identical"] == 5
    assert report.rejected() == {}


def test_conflicting_duplicates_keep_the_last_served_and_are_counted() -> None:
    rows = full_day()
    later = bar(2, close=10.9, volume=999)
    earlier_copy = bar(2)  # differs from rows[2] and from `later`
    kept, report = clean_m15(frame([earlier_copy, *rows, later]), [SESSION])
    assert kept.filter(pl.col("ts") == later["ts"]).row(0, named=True) == later
    assert kept.height == 14
    assert report.counts["duplicate_conflict"] == 2
    assert report.rejected() == {"duplicate_conflict": 2}


def test_an_invalid_later_copy_does_not_replace_a_valid_bar() -> None:
    rows = full_day()
    kept, report = clean_m15(frame([*rows, bar(4, volume=-3)]), [SESSION])
    assert kept.equals(frame(rows))
    assert report.rejected() == {"negative_volume": 1}


def test_a_non_positive_price_is_counted_before_an_inconsistent_one() -> None:
    _, report = clean_m15(frame([bar(3, low=-1.0, high=-2.0)]), [SESSION])
    assert report.rejected() == {"non_positive_price": 1}


def test_a_bar_is_counted_under_the_first_rule_it_breaks() -> None:
    both = bar(3.5, volume=-1, high=1.0)  # off grid, negative volume and inconsistent
    outside = bar(3, ts=datetime(2025, 11, 29, 15, 0, tzinfo=SESSION.open.tzinfo), open=None)
    _, report = clean_m15(frame([both, outside]), [SESSION])
    assert report.rejected() == {"off_grid": 1, "null_fields": 1}


def test_mostly_off_grid_means_another_bar_size() -> None:
    few = [*full_day(), bar(2.5), bar(7.5)]
    assert not clean_m15(frame(few), [SESSION])[1].wrong_interval
    five_minute = [bar(i / 3) for i in range(42)]
    _, report = clean_m15(frame(five_minute), [SESSION])
    assert report.counts["off_grid"] == 28 and report.kept == 14
    assert report.wrong_interval


def test_empty_input() -> None:
    kept, report = clean_m15(pl.DataFrame(schema=BAR_SCHEMA), [SESSION])
    assert kept.is_empty() and kept.schema == pl.Schema(BAR_SCHEMA)
    assert report.served == report.kept == 0


def test_several_sessions_each_on_its_own_grid() -> None:
    """DST week: the open is 14:30 UTC before 2025-11-02 and 14:30/13:30 after; each bar is
    judged against its own session's open."""
    days = calendar.sessions_between(date(2025, 10, 30), date(2025, 11, 4))
    sessions = [calendar.session(d) for d in days]
    rows = [
        {**bar(0), "ts": s.open + i * M15, "close": 10.0 + i / 100}
        for s in sessions
        for i in range(26)
    ]
    kept, report = clean_m15(frame(rows), sessions)
    assert kept.height == 26 * len(days) and report.rejected() == {}
    shifted = [{**r, "ts": r["ts"] + timedelta(hours=1)} for r in rows]
    _, report = clean_m15(frame(shifted), sessions)
    # An hour later stays on the grid; the last 4 bars of each day fall after the close.
    assert report.counts["extended_hours"] == 4 * len(days)
    assert report.kept == 22 * len(days)


_values = st.sampled_from([None, float("nan"), -1.0, 0.0, 9.0, 10.0, 10.5, 11.0, 12.0])


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([-3, -1, 0, 0.5, 1, 2, 2, 3, 13, 14, 40, 100]),
            _values,
            _values,
            _values,
            _values,
            st.sampled_from([None, -5, 0, 100, 101]),
        ),
        max_size=40,
    )
)
def test_accounting_and_guarantees_hold_for_any_input(
    rows: list[tuple[Any, Any, Any, Any, Any, Any]],
) -> None:
    raw = frame([bar(i, open=o, high=h, low=lo, close=c, volume=v) for i, o, h, lo, c, v in rows])
    kept, report = clean_m15(raw, [SESSION])
    assert report.served == raw.height
    assert report.served == report.kept + sum(report.counts.values())
    assert set(report.counts) == set(RULES)
    assert kept.height == report.kept
    assert kept["ts"].is_unique().all() and kept["ts"].is_sorted()
    # Everything kept satisfies the asset checks' guarantees.
    assert kept.filter(
        (pl.col("low") > pl.min_horizontal("open", "close"))
        | (pl.col("high") < pl.max_horizontal("open", "close"))
        | (pl.col("volume") < 0)
        | (pl.min_horizontal("open", "high", "low", "close") <= 0)
        | (pl.col("ts") < SESSION.open)
        | (pl.col("ts") >= SESSION.close)
        | pl.any_horizontal(pl.col(c).is_nan() for c in ("open", "high", "low", "close"))
    ).is_empty()
