"""What the archive holds per symbol and session (`core.completeness` judges it), and the
history provider's confirmations of past sessions (`confirmed_sessions`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

import psycopg

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.completeness import SessionState, Stored
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.storage.bars import day_bounds

# Per symbol, timeframe and exchange day: bar count, provisional flag, write times, and for
# m15 the h1/h4/d1 buckets its regular-session bars fall in (buckets start at 09:30 ET; the
# regular session ends at 16:00 or at the early close passed in). The h1 and h4 buckets come
# back as bit sets (bit k: bucket k has a bar), counted in Python. Cost is per row, so the
# shape matters: one time-zone conversion per row, float `date_part` rather than numeric
# `extract`, and bit sets rather than count(DISTINCT ...) made it ~10x faster.
_STATES_SQL = """
WITH bars AS (
    SELECT b.symbol_id, b.timeframe, b.is_intraday, b.fetched_at, local::date AS day,
           (date_part('hour', local) * 60 + date_part('minute', local))::int - 570 AS since_open
      FROM ohlc_bars_v2 b,
           LATERAL (SELECT b.ts AT TIME ZONE 'America/New_York' AS local) AS l
     WHERE b.symbol_id = ANY(%(ids)s) AND b.ts >= %(lo)s AND b.ts < %(hi)s
), judged AS (
    SELECT bars.*, bars.timeframe = 'm15' AND since_open >= 0
           AND since_open < coalesce(e.session_minutes, 390) AS regular
      FROM bars
      LEFT JOIN unnest(%(early_days)s::date[], %(early_minutes)s::int[])
           AS e (day, session_minutes) ON e.day = bars.day
)
SELECT symbol_id, timeframe, day, count(*), bool_or(is_intraday), min(fetched_at),
       max(fetched_at),
       coalesce(bit_or(1 << (since_open / 60)) FILTER (WHERE regular), 0),
       coalesce(bit_or(1 << (since_open / 240)) FILTER (WHERE regular), 0),
       least(1, count(*) FILTER (WHERE regular))
  FROM judged
 GROUP BY symbol_id, timeframe, day
"""


def _states_params(ids: list[int], days: Sequence[date]) -> dict[str, object]:
    early = [s for s in map(calendar.session, days) if s.is_early_close]
    lo, _ = day_bounds(days[0])
    _, hi = day_bounds(days[-1])
    return {
        "ids": ids,
        "lo": lo,
        "hi": hi,
        "early_days": [s.day for s in early],
        "early_minutes": [s.regular_minutes for s in early],
    }


def session_states(
    conn: psycopg.Connection, symbol_ids: Sequence[int], days: Sequence[date]
) -> dict[int, dict[date, SessionState]]:
    """Per symbol id, the state of each of `days` (sessions, in order): one grouped query for
    the whole watchlist, cheap enough for a sensor tick."""
    ids = list(symbol_ids)
    states: dict[int, dict[date, SessionState]] = {i: {} for i in ids}
    if not ids or not days:
        return states
    rows = conn.execute(_STATES_SQL, _states_params(ids, days)).fetchall()
    raw: dict[tuple[int, date], Stored] = {}
    buckets: dict[tuple[int, date], dict[Timeframe, int]] = {}
    derived: dict[tuple[int, date], dict[Timeframe, Stored]] = {}
    for symbol_id, timeframe, day, n, intraday, first, last, h1, h4, d1 in rows:
        stored = Stored(n, intraday, first, last)
        h1, h4 = h1.bit_count(), h4.bit_count()
        key = (symbol_id, day)
        if timeframe == Timeframe.M15:
            raw[key] = stored
            buckets[key] = {Timeframe.H1: h1, Timeframe.H4: h4, Timeframe.D1: d1}
        else:
            derived.setdefault(key, {})[Timeframe(timeframe)] = stored
    confirmed = conn.execute(
        """SELECT symbol_id, day, bars FROM confirmed_sessions
           WHERE symbol_id = ANY(%s) AND timeframe = 'm15' AND day BETWEEN %s AND %s""",
        (ids, days[0], days[-1]),
    ).fetchall()
    answered = {(symbol_id, day): bars for symbol_id, day, bars in confirmed}
    for symbol_id in ids:
        for day in days:
            key = (symbol_id, day)
            states[symbol_id][day] = SessionState(
                day,
                raw.get(key, Stored()),
                buckets.get(key, {}),
                derived.get(key, {}),
                answered.get(key),
            )
    return states


def explain_session_states(
    conn: psycopg.Connection, symbol_ids: Sequence[int], days: Sequence[date]
) -> str:
    """The plan of `session_states`' bar query, executed (EXPLAIN ANALYZE, BUFFERS)."""
    rows = conn.execute(
        "EXPLAIN (ANALYZE, BUFFERS) " + _STATES_SQL, _states_params(list(symbol_ids), days)
    ).fetchall()
    return "\n".join(row[0] for row in rows)


def confirm_sessions(
    conn: psycopg.Connection,
    *,
    symbol_id: int,
    timeframe: Timeframe,
    bars_per_day: Mapping[date, int],
    provider: str,
) -> None:
    """Record what the history provider served for these past sessions (in the caller's
    transaction, with the bars)."""
    if not bars_per_day:
        return
    conn.execute(
        """INSERT INTO confirmed_sessions (symbol_id, timeframe, day, bars, provider)
           SELECT %s, %s, day, bars, %s FROM unnest(%s::date[], %s::int[]) AS t (day, bars)
           ON CONFLICT (symbol_id, timeframe, day) DO UPDATE
           SET bars = EXCLUDED.bars, provider = EXCLUDED.provider, confirmed_at = now()""",
        (
            symbol_id,
            timeframe.value,
            provider,
            list(bars_per_day),
            list(bars_per_day.values()),
        ),
    )


def confirm_empty(
    conn: psycopg.Connection,
    *,
    symbol_id: int,
    timeframe: Timeframe,
    days: Sequence[date],
    provider: str,
) -> list[date]:
    """The history provider served no bar for these past sessions: record them as empty and
    drop the provisional bars they still hold. A session holding final bars keeps them and is
    left unconfirmed (never lose a bar on one empty answer). Returns the days confirmed."""
    if not days:
        return []
    kept = set()
    for day in days:
        lo, hi = day_bounds(day)
        row = conn.execute(
            """SELECT count(*) FILTER (WHERE NOT is_intraday) FROM ohlc_bars_v2
               WHERE symbol_id = %s AND timeframe = %s AND ts >= %s AND ts < %s""",
            (symbol_id, timeframe.value, lo, hi),
        ).fetchone()
        if row and row[0]:
            kept.add(day)
            continue
        conn.execute(
            """DELETE FROM ohlc_bars_v2
               WHERE symbol_id = %s AND timeframe = %s AND ts >= %s AND ts < %s""",
            (symbol_id, timeframe.value, lo, hi),
        )
    empty = [d for d in days if d not in kept]
    confirm_sessions(
        conn,
        symbol_id=symbol_id,
        timeframe=timeframe,
        bars_per_day=dict.fromkeys(empty, 0),
        provider=provider,
    )
    return empty
