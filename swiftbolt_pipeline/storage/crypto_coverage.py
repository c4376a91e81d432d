"""What the archive holds per crypto pair and UTC day, as `core.completeness.SessionState`s.

`bar_sessions` keys stock bars by New York day, which splits a UTC day in two, so crypto days
are counted from `ohlc_bars_v2` directly: one grouped query over the crypto watchlist's window
(a few pairs, 96 m15 bars a day), with the derived buckets the stored m15 bars fill (distinct
hours for h1, distinct 4-hour blocks from 00:00 UTC for h4, the day for d1)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

import psycopg

from swiftbolt_pipeline.core.completeness import SessionState, Stored
from swiftbolt_pipeline.core.crypto_calendar import day_start
from swiftbolt_pipeline.core.models import Timeframe

_TIMEFRAMES = {tf.value: tf for tf in Timeframe}
_STATES_SQL = """
SELECT symbol_id, timeframe, (ts AT TIME ZONE 'UTC')::date AS day, count(*), bool_or(is_intraday),
       min(fetched_at), max(fetched_at),
       count(DISTINCT date_part('hour', ts AT TIME ZONE 'UTC')),
       count(DISTINCT floor(date_part('hour', ts AT TIME ZONE 'UTC') / 4))
  FROM ohlc_bars_v2
 WHERE symbol_id = ANY(%s::int[]) AND ts >= %s AND ts < %s
 GROUP BY 1, 2, 3
"""


def day_states(
    conn: psycopg.Connection, symbol_ids: Sequence[int], days: Sequence[date]
) -> dict[int, dict[date, SessionState]]:
    """Per pair id, the state of each of `days` (UTC days, in order)."""
    ids = list(symbol_ids)
    states: dict[int, dict[date, SessionState]] = {i: {} for i in ids}
    if not ids or not days:
        return states
    lo, hi = day_start(days[0]), day_start(days[-1] + timedelta(days=1))
    rows = conn.execute(_STATES_SQL, (ids, lo, hi)).fetchall()
    raw: dict[tuple[int, date], Stored] = {}
    buckets: dict[tuple[int, date], dict[Timeframe, int]] = {}
    derived: dict[tuple[int, date], dict[Timeframe, Stored]] = {}
    for symbol_id, timeframe, day, n, intraday, first, last, hours, blocks in rows:
        key = (symbol_id, day)
        stored = Stored(n, intraday, first, last)
        if timeframe == Timeframe.M15:
            raw[key] = stored
            buckets[key] = {Timeframe.H1: hours, Timeframe.H4: blocks, Timeframe.D1: 1}
        elif timeframe in _TIMEFRAMES:
            derived.setdefault(key, {})[_TIMEFRAMES[timeframe]] = stored
    confirmed = conn.execute(
        """SELECT symbol_id, day, bars FROM confirmed_sessions
           WHERE symbol_id = ANY(%s::int[]) AND timeframe = 'm15' AND day BETWEEN %s AND %s""",
        (ids, days[0], days[-1]),
    ).fetchall()
    answered = {(symbol_id, day): bars for symbol_id, day, bars in confirmed}
    for symbol_id in ids:
        for day in days:
            key = (symbol_id, day)
            states[symbol_id][day] = SessionState(
                day, raw.get(key, Stored()), buckets.get(key, {}), derived.get(key, {}),
                answered.get(key),
            )  # fmt: skip
    return states
