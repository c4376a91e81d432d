"""The gap sensor's judgement in SQL (`incomplete_sessions`) against the rules in Python
(`core.completeness` over `session_states`) and against hand-made expectations, on sessions
built to be tricky: a half day, extended hours, an answered-empty session, provisional bars
before and after their finalize is due, stale derived bars, a missing tail."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

import psycopg
import pytest

from swiftbolt_pipeline.core import completeness
from swiftbolt_pipeline.core.calendar import sessions_between
from swiftbolt_pipeline.core.models import DERIVED_TIMEFRAMES, Timeframe
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline.storage.coverage import (
    confirm_sessions,
    incomplete_sessions,
    session_states,
)
from swiftbolt_pipeline_tests.storage.helpers import et

# Mon 2024-11-25 .. Mon 2024-12-02: Thanksgiving (28th) is no session, Black Friday (29th)
# closes at 13:00 ET.
DAYS = sessions_between(date(2024, 11, 25), date(2024, 12, 2))
MON, TUE, WED, BLACK_FRIDAY, NEXT_MON = DAYS
WRITTEN = datetime(2024, 12, 3, 1, 0, tzinfo=UTC)
M15, H1, H4 = Timeframe.M15, Timeframe.H1, Timeframe.H4


def _insert(
    conn: psycopg.Connection,
    symbol_id: int,
    timeframe: Timeframe,
    starts: list[datetime],
    *,
    intraday: bool = False,
    written: datetime = WRITTEN,
) -> None:
    conn.execute(
        """INSERT INTO ohlc_bars_v2 (symbol_id, timeframe, ts, open, high, low, close, volume,
                                     provider, is_intraday, fetched_at)
           SELECT %s, %s, ts, 1, 1, 1, 1, 1, 'polygon', %s, %s FROM unnest(%s::timestamptz[]) ts""",
        (symbol_id, timeframe.value, intraday, written, starts),
    )


def _m15(day: date, close: tuple[int, int] = (16, 0), extended: bool = False) -> list[datetime]:
    """Every 15-minute bar start of the regular session (and 04:00-20:00 ET if `extended`)."""
    first, last = (et(day, 4), et(day, 20)) if extended else (et(day, 9, 30), et(day, *close))
    return [
        first + timedelta(minutes=15 * k) for k in range((last - first) // timedelta(minutes=15))
    ]


def _buckets(day: date, minutes: int, close: tuple[int, int] = (16, 0)) -> list[datetime]:
    """Starts of the derived buckets of `minutes` anchored on 09:30 ET, up to the close."""
    first, last = et(day, 9, 30), et(day, *close)
    return [
        first + timedelta(minutes=minutes * k)
        for k in range(-(-(last - first) // timedelta(minutes=minutes)))
    ]


def _session(
    conn: psycopg.Connection,
    symbol_id: int,
    day: date,
    *,
    close: tuple[int, int] = (16, 0),
    extended: bool = False,
    intraday: bool = False,
    confirm: bool = True,
    derived_written: datetime = WRITTEN,
    derived_intraday: bool | None = None,
    h1: int | None = None,
) -> None:
    """A session as a fetch and a derive leave it: m15 bars, their confirmation, h1/h4."""
    m15 = _m15(day, close, extended)
    _insert(conn, symbol_id, M15, m15, intraday=intraday)
    if confirm:
        confirm_sessions(
            conn,
            symbol_id=symbol_id,
            timeframe=M15,
            bars_per_day={day: len(m15)},
            provider="polygon",
        )
    derived_intraday = intraday if derived_intraday is None else derived_intraday
    for timeframe, minutes in ((H1, 60), (H4, 240)):
        starts = _buckets(day, minutes, close)
        if timeframe == H1 and h1 is not None:
            starts = starts[:h1]
        _insert(
            conn, symbol_id, timeframe, starts, intraday=derived_intraday, written=derived_written
        )


@pytest.fixture
def archive(conn: psycopg.Connection) -> dict[str, int]:
    """Per symbol, a week of sessions; see the expectations in the test below."""
    ids = watchlist.ensure(conn, ["FULL", "HALF", "EMPTY", "PROV", "STALE", "TAIL"])
    for day in DAYS:  # FULL: every session complete, the half day's shorter session too
        _session(conn, ids["FULL"], day, close=(13, 0) if day == BLACK_FRIDAY else (16, 0))
    # HALF: Black Friday with extended hours (bars until 20:00, the regular session ends at
    # 13:00: h1 has 4 buckets, h4 1); Wednesday's h1 lacks its last bucket.
    _session(conn, ids["HALF"], BLACK_FRIDAY, close=(13, 0), extended=True)
    _session(conn, ids["HALF"], WED, h1=6)
    # EMPTY: Monday answered empty by the provider (a halt); Tuesday has bars nobody confirmed.
    confirm_sessions(
        conn, symbol_id=ids["EMPTY"], timeframe=M15, bars_per_day={MON: 0}, provider="polygon"
    )
    _session(conn, ids["EMPTY"], TUE, confirm=False)
    # PROV: provisional bars on Wednesday and on the last session (today's, as Tradier left it).
    _session(conn, ids["PROV"], WED, intraday=True, confirm=False)
    _session(conn, ids["PROV"], NEXT_MON, intraday=True, confirm=False)
    # STALE: Monday's derived bars written before their m15 (re-fetched since); Tuesday's
    # derived from provisional m15 that is final now; Wednesday lost one confirmed bar.
    _session(conn, ids["STALE"], MON, derived_written=WRITTEN - timedelta(minutes=1))
    _session(conn, ids["STALE"], TUE, derived_intraday=True)
    _session(conn, ids["STALE"], WED)
    conn.execute(
        "DELETE FROM ohlc_bars_v2 WHERE symbol_id = %s AND timeframe = 'm15' AND ts = %s",
        (ids["STALE"], et(WED, 12, 0)),
    )
    # TAIL: complete but for the last two sessions, which hold nothing at all.
    for day in DAYS[:-2]:
        _session(conn, ids["TAIL"], day, close=(13, 0) if day == BLACK_FRIDAY else (16, 0))
    conn.commit()
    return ids


def _final_from(day: date) -> Callable[[date], bool]:
    """Finalize due for the sessions before `day`."""
    return lambda d: d < day


def _python_judgement(
    conn: psycopg.Connection, ids: list[int], final: Callable[[date], bool]
) -> dict[int, dict[date, frozenset[Timeframe]]]:
    """The same question answered by the Python rules, session by session."""
    states = session_states(conn, ids, DAYS)
    return {
        symbol_id: {
            day: missing
            for day, state in per_day.items()
            if (
                missing := completeness.incomplete_timeframes(
                    state, final_required=final(day), derived=DERIVED_TIMEFRAMES
                )
            )
        }
        for symbol_id, per_day in states.items()
    }


def test_sql_judgement_matches_hand_made_expectations(
    conn: psycopg.Connection, archive: dict[str, int]
) -> None:
    # Finalize due for every session but the last (the last one is "today").
    got = incomplete_sessions(conn, list(archive.values()), DAYS, final=_final_from(NEXT_MON))
    by_name = {name: got[symbol_id] for name, symbol_id in archive.items()}
    others = [d for d in DAYS if d not in (WED, BLACK_FRIDAY)]
    assert by_name == {
        "FULL": {},
        "HALF": {**dict.fromkeys(others, frozenset({M15})), WED: frozenset({H1})},
        "EMPTY": {d: frozenset({M15}) for d in DAYS if d != MON},
        # Wednesday's provisional bars are past their finalize; the last session's are fine.
        "PROV": {d: frozenset({M15}) for d in DAYS if d != NEXT_MON},
        "STALE": {
            MON: frozenset({H1, H4}),
            TUE: frozenset({H1, H4}),
            # One regular bar fewer than the provider served; its bucket still has others.
            WED: frozenset({M15}),
            BLACK_FRIDAY: frozenset({M15}),
            NEXT_MON: frozenset({M15}),
        },
        "TAIL": {BLACK_FRIDAY: frozenset({M15}), NEXT_MON: frozenset({M15})},
    }


@pytest.mark.parametrize("final_from", [MON, WED, NEXT_MON, NEXT_MON + timedelta(days=1)])
def test_sql_judgement_equals_the_python_rules(
    conn: psycopg.Connection, archive: dict[str, int], final_from: date
) -> None:
    """For every finality cut-off (none due, some, all), SQL and Python agree everywhere."""
    ids = list(archive.values())
    final = _final_from(final_from)
    assert incomplete_sessions(conn, ids, DAYS, final=final) == _python_judgement(conn, ids, final)


def test_a_symbol_with_nothing_stored_is_incomplete_everywhere(conn: psycopg.Connection) -> None:
    (new,) = watchlist.ensure(conn, ["NEW"]).values()
    conn.commit()
    got = incomplete_sessions(conn, [new], DAYS, final=_final_from(NEXT_MON))
    assert got == {new: dict.fromkeys(DAYS, frozenset({M15}))}
    assert incomplete_sessions(conn, [], DAYS, final=_final_from(MON)) == {}
    assert incomplete_sessions(conn, [new], [], final=_final_from(MON)) == {new: {}}
