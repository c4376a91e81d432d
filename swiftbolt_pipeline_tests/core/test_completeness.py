"""When a session counts as complete, per timeframe (pure rules, hand-made states)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from swiftbolt_pipeline.core.completeness import (
    SessionState,
    Stored,
    complete,
    derived_complete,
    final_required,
    raw_complete,
)
from swiftbolt_pipeline.core.models import Timeframe

DAY = date(2026, 3, 4)
T0 = datetime(2026, 3, 5, 1, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)
FULL = {Timeframe.H1: 7, Timeframe.H4: 2}


def _derived(intraday: bool = False, written: datetime = LATER) -> dict[Timeframe, Stored]:
    return {tf: Stored(n, intraday, written, written) for tf, n in FULL.items()}


def _state(
    bars: int = 26, intraday: bool = False, confirmed: int | None = 26, **kwargs: object
) -> SessionState:
    return SessionState(
        DAY,
        Stored(bars, intraday, T0, T0),
        dict(FULL) if bars else {},
        kwargs.get("derived", _derived(intraday)) if bars else {},  # type: ignore[arg-type]
        confirmed,
    )


@pytest.mark.parametrize(
    ("state", "final", "expected"),
    [
        (_state(), True, True),  # the provider's answer, all of it stored
        (_state(bars=25, confirmed=26), True, False),  # a bar deleted since
        (_state(bars=25, confirmed=25), True, True),  # an interval without trades
        (_state(intraday=True, confirmed=None), True, False),  # provisional, finalize overdue
        (_state(intraday=True, confirmed=None), False, True),  # provisional, finalize not due
        (_state(bars=0, confirmed=0), True, True),  # confirmed empty (a halt)
        (_state(bars=0, confirmed=0), False, True),  # ...before the finalize is due too
        (_state(bars=0, confirmed=None), False, False),  # nothing at all
        (_state(bars=26, confirmed=None), True, False),  # bars nobody confirmed
    ],
)
def test_raw_completeness(state: SessionState, final: bool, expected: bool) -> None:
    assert raw_complete(state, final_required=final) is expected


def test_derived_bars_need_one_per_filled_bucket_written_after_their_source() -> None:
    assert derived_complete(_state(), Timeframe.H1)
    missing_h4 = _derived()
    missing_h4[Timeframe.H4] = Stored(1, False, LATER, LATER)
    assert not derived_complete(_state(derived=missing_h4), Timeframe.H4)
    assert derived_complete(_state(derived=missing_h4), Timeframe.H1)
    stale = _derived(written=T0 - timedelta(minutes=1))  # m15 re-fetched after deriving
    assert not derived_complete(_state(derived=stale), Timeframe.H4)
    mixed = _derived(intraday=True)  # derived from provisional m15 that is final now
    assert not derived_complete(_state(derived=mixed), Timeframe.H1)
    assert derived_complete(_state(bars=0, confirmed=0), Timeframe.H1)  # nothing to derive


def test_a_derived_timeframe_is_complete_only_with_its_raw_session() -> None:
    provisional = _state(intraday=True, confirmed=None)
    assert complete(provisional, Timeframe.H1, final_required=False)
    assert not complete(provisional, Timeframe.H1, final_required=True)


@pytest.mark.parametrize(
    ("now_et", "due"),
    [
        ("2026-03-05T06:44:00-05:00", False),
        ("2026-03-05T06:45:00-05:00", True),  # 06:00 finalize + 45 min grace
        ("2026-03-04T23:00:00-05:00", False),
    ],
)
def test_the_final_answer_is_due_after_the_next_mornings_finalize(now_et: str, due: bool) -> None:
    assert final_required(DAY, datetime.fromisoformat(now_et)) is due
