"""Coverage gaps and the coverage window."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from swiftbolt_pipeline.core.calendar import sessions_between
from swiftbolt_pipeline.core.gaps import Gap, find_gaps, window_sessions

NOV = sessions_between(date(2025, 11, 17), date(2025, 12, 12))


def test_holiday_and_weekend_inside_a_gap_do_not_split_it():
    missing = {date(2025, 11, 26), date(2025, 11, 28), date(2025, 12, 1)}  # 27th: Thanksgiving
    present = [d for d in NOV if d not in missing]
    assert find_gaps(NOV, present) == [Gap(date(2025, 11, 26), date(2025, 12, 1), 3)]


def test_a_present_session_splits_gaps():
    missing = {date(2025, 11, 18), date(2025, 11, 19), date(2025, 11, 21), date(2025, 12, 12)}
    present = {d for d in NOV if d not in missing}
    assert find_gaps(NOV, present) == [
        Gap(date(2025, 11, 18), date(2025, 11, 19), 2),
        Gap(date(2025, 11, 21), date(2025, 11, 21), 1),
        Gap(date(2025, 12, 12), date(2025, 12, 12), 1),
    ]


def test_empty_all_present_and_nothing_present():
    assert find_gaps([], set()) == []
    assert find_gaps([], {date(2025, 11, 17)}) == []
    assert find_gaps(NOV, set(NOV)) == []
    assert find_gaps(NOV, set()) == [Gap(NOV[0], NOV[-1], len(NOV))]


def test_present_days_outside_expected_are_ignored():
    expected = NOV[:3]
    assert find_gaps(expected, {*NOV[1:]}) == [Gap(NOV[0], NOV[0], 1)]


def test_to_json():
    gap = Gap(date(2025, 11, 26), date(2025, 12, 1), 3)
    assert gap.to_json() == {"start": "2025-11-26", "end": "2025-12-01", "sessions": 3}


@settings(max_examples=80, deadline=None)
@given(present_mask=st.lists(st.booleans(), min_size=len(NOV), max_size=len(NOV)))
def test_gaps_are_exactly_the_missing_runs(present_mask: list[bool]):
    present = {d for d, keep in zip(NOV, present_mask, strict=True) if keep}
    gaps = find_gaps(NOV, present)
    missing = [d for d in NOV if d not in present]
    assert sum(g.sessions for g in gaps) == len(missing)
    covered = [d for g in gaps for d in NOV if g.start <= d <= g.end]
    assert covered == missing, "each gap holds only missing sessions, all of them, in order"
    for g in gaps:
        assert len(sessions_between(g.start, g.end)) == g.sessions
    for a, b in itertools.pairwise(gaps):
        assert any(a.end < d < b.start for d in present), "a present session separates gaps"


def test_window_sessions():
    friday = date(2025, 11, 28)
    assert window_sessions(friday, 7, None) == [
        date(2025, 11, 21),
        date(2025, 11, 24),
        date(2025, 11, 25),
        date(2025, 11, 26),
        date(2025, 11, 28),
    ]
    assert window_sessions(friday, 7, date(2025, 11, 25)) == [
        date(2025, 11, 25),
        date(2025, 11, 26),
        date(2025, 11, 28),
    ]
    assert window_sessions(friday, 7, date(2024, 1, 1)) == window_sessions(friday, 7, None)
    assert window_sessions(friday, 0, None) == [friday]
    assert window_sessions(date(2025, 11, 29), 1, None) == [friday]  # Saturday: today no session
    assert window_sessions(friday, 7, date(2025, 12, 1)) == []


def test_window_sessions_two_years():
    today = date(2026, 3, 12)
    days = window_sessions(today, 730, None)
    assert days[0] == date(2024, 3, 12)
    assert days[-1] == today
    assert len(days) == len(sessions_between(today - timedelta(days=730), today))
    with pytest.raises(ValueError, match="window_days"):
        window_sessions(today, -1, None)
