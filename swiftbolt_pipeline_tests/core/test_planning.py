"""Request planning: contiguous runs and 50,000-base-minute windows."""

from __future__ import annotations

import itertools
import math
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swiftbolt_pipeline.core.calendar import session, sessions_between
from swiftbolt_pipeline.core.planning import (
    RequestWindow,
    base_minute_floor,
    contiguous_runs,
    expected_cost,
    plan_requests,
    symbol_batches,
    symbol_span,
)

TWO_YEARS = sessions_between(date(2024, 11, 25), date(2026, 11, 24))
RANGE = sessions_between(date(2024, 6, 3), date(2026, 2, 27))
MINUTES = {d: session(d).extended_minutes for d in RANGE}


def _minutes(days: list[date] | tuple[date, ...]) -> int:
    return sum(session(d).extended_minutes for d in days)


def test_extended_minutes_full_and_early_close():
    assert session(date(2025, 11, 26)).extended_minutes == 960  # 04:00-20:00 ET
    assert session(date(2025, 11, 28)).extended_minutes == 780  # 04:00-17:00 ET


def test_four_weeks_is_one_request():
    days = sessions_between(date(2025, 6, 2), date(2025, 6, 27))  # Juneteenth inside
    assert len(days) == 19
    windows = plan_requests(days)
    assert windows == [RequestWindow(days[0], days[-1], tuple(days), _minutes(days))]
    assert expected_cost(days) == 1


def test_two_years_is_ten_requests():
    assert len(TWO_YEARS) == 501
    windows = plan_requests(TWO_YEARS)
    assert len(windows) == 10 == base_minute_floor(TWO_YEARS) == expected_cost(TWO_YEARS)
    assert [d for w in windows for d in w.sessions] == TWO_YEARS
    assert all(w.max_base_minutes <= 50_000 for w in windows)
    assert windows[0].first == date(2024, 11, 25)
    assert windows[-1].last == date(2026, 11, 24)


def test_holidays_and_weekends_do_not_break_a_run_but_a_missing_session_does():
    thanksgiving = sessions_between(date(2025, 11, 24), date(2025, 12, 2))
    assert date(2025, 11, 27) not in thanksgiving
    assert contiguous_runs(thanksgiving) == [thanksgiving]
    without = [d for d in thanksgiving if d != date(2025, 11, 28)]
    assert contiguous_runs(without) == [
        [date(2025, 11, 24), date(2025, 11, 25), date(2025, 11, 26)],
        [date(2025, 12, 1), date(2025, 12, 2)],
    ]
    assert [(w.first, w.last) for w in plan_requests(without)] == [
        (date(2025, 11, 24), date(2025, 11, 26)),
        (date(2025, 12, 1), date(2025, 12, 2)),
    ]


def test_unplanned_closure_is_not_a_gap():
    # 2025-01-09 (national day of mourning) had no session: the 8th and 10th are neighbours.
    assert contiguous_runs([date(2025, 1, 10), date(2025, 1, 8)]) == [
        [date(2025, 1, 8), date(2025, 1, 10)]
    ]


def test_order_and_duplicates_do_not_matter():
    days = sessions_between(date(2025, 3, 3), date(2025, 3, 14))
    assert contiguous_runs([*reversed(days), *days]) == [days]
    assert plan_requests([*reversed(days), days[3]]) == plan_requests(days)


def test_empty_input():
    assert contiguous_runs([]) == []
    assert plan_requests([]) == []
    assert expected_cost([]) == 0
    assert base_minute_floor([]) == 0


def test_non_session_dates_are_refused():
    with pytest.raises(ValueError, match="2025-11-27"):
        contiguous_runs([date(2025, 11, 26), date(2025, 11, 27)])
    with pytest.raises(ValueError, match="2025-03-08"):
        plan_requests([date(2025, 3, 8)])


def test_budget_below_one_session_is_refused():
    with pytest.raises(ValueError, match="base minutes"):
        plan_requests([date(2025, 6, 2)], max_base_minutes=959)
    assert len(plan_requests([date(2025, 6, 2)], max_base_minutes=960)) == 1


def test_a_window_may_fill_the_budget_exactly():
    days = [date(2025, 6, 2), date(2025, 6, 3), date(2025, 6, 4)]
    assert [w.sessions for w in plan_requests(days, max_base_minutes=1920)] == [
        (date(2025, 6, 2), date(2025, 6, 3)),
        (date(2025, 6, 4),),
    ]


def test_base_minute_floor_counts_early_closes():
    days = sessions_between(date(2025, 11, 24), date(2025, 11, 28))  # 3 full + 1 early close
    assert base_minute_floor(days) == 1
    assert _minutes(days) == 3 * 960 + 780
    assert base_minute_floor(TWO_YEARS[:53]) == 2  # 53 x 960 > 50,000
    assert base_minute_floor(TWO_YEARS[:52]) == 1


@st.composite
def session_subsets(draw: st.DrawFn) -> list[date]:
    start = draw(st.integers(0, len(RANGE) - 1))
    length = draw(st.integers(0, 300))
    span = RANGE[start : start + length]
    keep = draw(st.lists(st.booleans(), min_size=len(span), max_size=len(span)))
    return [d for d, k in zip(span, keep, strict=True) if k or draw(st.booleans())]


def _fewest_windows(run: list[date], budget: int) -> int:
    """Exhaustive dynamic programme: the fewest in-order windows within `budget` for a run."""
    prefix = [0, *itertools.accumulate(MINUTES[d] for d in run)]
    best = [0] + [len(run) + 1] * len(run)
    for end in range(1, len(run) + 1):
        for start in range(end):
            if prefix[end] - prefix[start] <= budget:
                best[end] = min(best[end], best[start] + 1)
    return best[-1]


def _neighbours(a: date, b: date) -> bool:
    """No session strictly between a and b."""
    return not sessions_between(a + timedelta(days=1), b - timedelta(days=1))


@settings(max_examples=80, deadline=None)
@given(days=session_subsets())
def test_runs_partition_the_input_at_missing_sessions(days: list[date]):
    runs = contiguous_runs(days)
    assert [d for run in runs for d in run] == sorted(set(days))
    for run in runs:
        assert all(_neighbours(a, b) for a, b in itertools.pairwise(run))
    for left, right in itertools.pairwise(runs):
        assert not _neighbours(left[-1], right[0])


@settings(max_examples=80, deadline=None)
@given(days=session_subsets(), budget=st.integers(960, 60_000))
def test_windows_cover_once_respect_budget_and_are_greedy(days: list[date], budget: int):
    windows = plan_requests(days, budget)
    assert [d for w in windows for d in w.sessions] == sorted(set(days))
    runs = contiguous_runs(days)
    run_of = {d: i for i, run in enumerate(runs) for d in run}
    for w in windows:
        assert (w.first, w.last) == (w.sessions[0], w.sessions[-1])
        assert w.max_base_minutes == sum(MINUTES[d] for d in w.sessions) <= budget
        assert len({run_of[d] for d in w.sessions}) == 1, "a window never spans a gap"
    for w, nxt in itertools.pairwise(windows):
        if run_of[w.last] == run_of[nxt.first]:
            assert w.max_base_minutes + MINUTES[nxt.first] > budget
    assert len(windows) == sum(_fewest_windows(run, budget) for run in runs)
    assert len(windows) >= sum(math.ceil(sum(MINUTES[d] for d in run) / budget) for run in runs)
    assert expected_cost(days, budget) == len(windows)


@settings(max_examples=200, deadline=None)
@given(
    order=st.lists(st.text("ABCDEFGH", min_size=1, max_size=3), unique=True, max_size=40),
    picks=st.lists(st.booleans(), min_size=40, max_size=40),
    strangers=st.lists(st.sampled_from(["ZZ1", "ZZ2"]), max_size=2),
    size=st.integers(1, 7),
)
def test_symbol_batches_are_slices_of_the_order_covering_exactly_the_wanted(
    order: list[str], picks: list[bool], strangers: list[str], size: int
) -> None:
    wanted = [s for s, pick in zip(order, picks, strict=False) if pick]
    batches = symbol_batches(order, [*reversed(wanted), *strangers], size)
    # Each batch is a slice of the order (a run's rectangle covers exactly it), in order.
    for batch in batches:
        start = order.index(batch[0])
        assert order[start : start + len(batch)] == batch
        assert 1 <= len(batch) <= size
    assert [s for batch in batches for s in batch] == wanted  # each once, strangers left out
    # As few as possible: every maximal stretch of wanted neighbours, cut every `size`.
    stretches = [len(list(g)) for pick, g in itertools.groupby(picks[: len(order)]) if pick]
    assert len(batches) == sum(math.ceil(n / size) for n in stretches)


def test_symbol_span_follows_the_order_not_the_alphabet() -> None:
    assert symbol_span(["SPY", "QQQ", "AAPL", "MSFT"], ["AAPL", "SPY", "NEW"]) == ("SPY", "AAPL")
    assert symbol_span(["SPY", "QQQ"], ["QQQ"]) == ("QQQ", "QQQ")
    with pytest.raises(ValueError, match="none of the symbols"):
        symbol_span(["SPY"], ["NEW"])
