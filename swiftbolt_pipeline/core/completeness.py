"""When is a session of a symbol complete, per timeframe? Pure rules over what is stored.

Raw bars (m15) of a past session are complete once the history provider answered for that
session and every bar it served is still stored and final: the provider's answer is the
truth, so a session it served 25 of 26 intervals for (one without trades) is complete, and a
session it confirmed empty (a halt, before a listing) is complete with no bars. Provisional
(`is_intraday`) bars keep a past session incomplete, so the history provider replaces them.
Today's session is complete with whatever provisional bars it has (the intraday schedule keeps
it fresh).

Derived bars (h1, h4) are complete when there is one per bucket that the stored regular-
session m15 bars fill, derived from those very bars: same provisional flag, written after them.
A derived gap is filled by deriving again from stored m15, which costs no request."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time, timedelta
from types import MappingProxyType
from typing import Any, NamedTuple

from swiftbolt_pipeline.core.calendar import EXCHANGE_TZ
from swiftbolt_pipeline.core.models import DERIVED_TIMEFRAMES, Timeframe

# The finalize schedule fetches a past session at 06:00 ET the next morning. Until a grace
# period after that, the session's provisional bars count as covered, so the gap sensor does
# not fetch what the schedule is about to; afterwards they are a gap (a failed finalize).
FINALIZE_AT = time(6, 0)
FINALIZE_GRACE = timedelta(minutes=45)


def final_required(day: date, now: datetime) -> bool:
    """Must `day` hold the history provider's final bars by `now`?"""
    due = datetime.combine(day + timedelta(days=1), FINALIZE_AT, EXCHANGE_TZ) + FINALIZE_GRACE
    return now >= due


# Named tuples, not dataclasses: a sensor tick builds one per stored symbol x session x
# timeframe (a million for 500 symbols), and a tuple is built several times faster.
class Stored(NamedTuple):
    """One timeframe's bars of one session, as stored."""

    bars: int = 0
    intraday: bool = False
    first_written: datetime | None = None
    last_written: datetime | None = None


NOTHING = Stored()
EMPTY: Mapping[Any, Any] = MappingProxyType({})


class SessionState(NamedTuple):
    """What the archive holds for one symbol's session."""

    day: date
    raw: Stored = NOTHING
    # Per derived timeframe: how many buckets the stored regular-session m15 bars fall in.
    buckets: Mapping[Timeframe, int] = EMPTY
    derived: Mapping[Timeframe, Stored] = EMPTY
    # Bars the history provider served for this session (0: confirmed empty); None: no answer.
    confirmed_bars: int | None = None


# Derived buckets are anchored on the regular session's open: h1 at 09:30, 10:30, ...
REGULAR_BUCKET_MINUTES: Mapping[Timeframe, int] = MappingProxyType(
    {Timeframe.H1: 60, Timeframe.H4: 240}
)


# A coverage read asks for every stored session of every symbol; almost all are full days
# with the same slots, so the counts are computed once per distinct (slots, length) and the
# (read-only) answer is shared.
@functools.lru_cache(maxsize=4096)
def regular_buckets(slots: int, regular_minutes: int) -> Mapping[Timeframe, int]:
    """Per derived timeframe, how many of its buckets hold a regular-session m15 bar, from the
    bit set of 15-minute slots after the open that hold a bar (bit k: 09:30 + 15k minutes) and
    the session's length (an early close ends it after 210 minutes)."""
    regular = [15 * k for k in range(regular_minutes // 15) if slots >> k & 1]
    return MappingProxyType(
        {
            timeframe: len({minute // length for minute in regular})
            for timeframe, length in REGULAR_BUCKET_MINUTES.items()
        }
    )


def raw_complete(state: SessionState, *, final_required: bool) -> bool:
    """`final_required`: the session is past and its history answer is due (see module doc);
    before that, provisional bars will do. A confirmed answer is complete either way."""
    confirmed = (
        state.confirmed_bars is not None
        and state.raw.bars == state.confirmed_bars
        and not (state.raw.bars and state.raw.intraday)
    )
    if confirmed or final_required:
        return confirmed
    return state.raw.bars > 0


def derived_complete(state: SessionState, timeframe: Timeframe) -> bool:
    derived = state.derived.get(timeframe, NOTHING)
    if derived.bars != state.buckets.get(timeframe, 0):
        return False
    if derived.bars == 0:
        return True
    source = state.raw
    return (
        derived.intraday == source.intraday
        and derived.first_written is not None
        and source.last_written is not None
        and derived.first_written >= source.last_written
    )


def complete(state: SessionState, timeframe: Timeframe, *, final_required: bool) -> bool:
    """Complete for `timeframe`: derived bars need their raw session complete too."""
    if not raw_complete(state, final_required=final_required):
        return False
    return timeframe not in DERIVED_TIMEFRAMES or derived_complete(state, timeframe)


def incomplete_timeframes(
    state: SessionState,
    *,
    final_required: bool,
    derived: Iterable[Timeframe],
    raw: Timeframe = Timeframe.M15,
) -> frozenset[Timeframe]:
    """The timeframes of the session that are not complete: `raw` when its bars are not
    (`raw_complete`), each of `derived` needing deriving again (`derived_complete`)."""
    missing = {tf for tf in derived if not derived_complete(state, tf)}
    if not raw_complete(state, final_required=final_required):
        missing.add(raw)
    return frozenset(missing)
