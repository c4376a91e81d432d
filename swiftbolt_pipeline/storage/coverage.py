"""What the archive holds per symbol and session (`core.completeness` judges it), and the
history provider's confirmations of past sessions (`confirmed_sessions`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date
from zoneinfo import ZoneInfo

import psycopg

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.completeness import (
    EMPTY,
    NOTHING,
    REGULAR_BUCKET_MINUTES,
    SessionState,
    Stored,
    regular_buckets,
)
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.storage.bars import day_bounds

# Per symbol, timeframe and exchange day (one row of `bar_sessions`, which triggers keep in
# step with `ohlc_bars_v2`): bar count, provisional flag, write times and the 15-minute slots
# of the regular session holding a bar.
_TIMEFRAMES = {tf.value: tf for tf in Timeframe}  # Timeframe(value) is slow for 100,000s of rows
_STATES_SQL = """
SELECT symbol_id, timeframe, day, bars, intraday, first_written, last_written, slots
  FROM bar_sessions
 WHERE symbol_id = ANY(%(ids)s::int[]) AND day BETWEEN %(first)s AND %(last)s
"""


def session_states(
    conn: psycopg.Connection, symbol_ids: Sequence[int], days: Sequence[date]
) -> dict[int, dict[date, SessionState]]:
    """Per symbol id, the state of each of `days` (sessions, in order): one query for the
    whole watchlist, cheap enough for a sensor tick."""
    ids = list(symbol_ids)
    states: dict[int, dict[date, SessionState]] = {i: {} for i in ids}
    if not ids or not days:
        return states
    rows = conn.execute(_STATES_SQL, {"ids": ids, "first": days[0], "last": days[-1]}).fetchall()
    raw: dict[tuple[int, date], Stored] = {}
    buckets: dict[tuple[int, date], Mapping[Timeframe, int]] = {}
    derived: dict[tuple[int, date], dict[Timeframe, Stored]] = {}
    minutes = {day: calendar.session(day).regular_minutes for day in days}
    m15 = Timeframe.M15.value
    for symbol_id, timeframe, day, n, intraday, first, last, slots in rows:
        if day not in minutes:
            continue
        key = (symbol_id, day)
        if timeframe == m15:
            raw[key] = Stored(n, intraday, first, last)
            buckets[key] = regular_buckets(slots, minutes[day])
        elif key in derived:
            derived[key][_TIMEFRAMES[timeframe]] = Stored(n, intraday, first, last)
        else:
            derived[key] = {_TIMEFRAMES[timeframe]: Stored(n, intraday, first, last)}
    confirmed = conn.execute(
        """SELECT symbol_id, day, bars FROM confirmed_sessions
           WHERE symbol_id = ANY(%s::int[]) AND timeframe = 'm15' AND day BETWEEN %s AND %s""",
        (ids, days[0], days[-1]),
    ).fetchall()
    answered = {(symbol_id, day): bars for symbol_id, day, bars in confirmed}
    for symbol_id in ids:
        per_day = states[symbol_id]
        for day in days:
            key = (symbol_id, day)
            per_day[day] = SessionState(
                day,
                raw.get(key, NOTHING),
                buckets.get(key, EMPTY),
                derived.get(key, EMPTY),
                answered.get(key),
            )
    return states


# The gap sensor's judgement, in the database: per symbol x session of the window, which
# timeframes are incomplete by `core.completeness`'s rules, returning only those, so a tick's
# Python work follows the gaps, not symbols x sessions. Must stay equal to `raw_complete` and
# `derived_complete` (the tests compare them on tricky sessions).
_INCOMPLETE_SQL = """
WITH day AS (
    SELECT d.day, d.final, (1::bigint << (d.regular_minutes / 15)) - 1 AS regular
      FROM unnest(%(days)s::date[], %(final)s::boolean[], %(regular_minutes)s::int[])
           AS d (day, final, regular_minutes)
), derived_tf AS (
    SELECT * FROM unnest(%(derived)s::text[], %(bucket_minutes)s::int[]) AS t (timeframe, minutes)
), raw AS MATERIALIZED (
    SELECT s.symbol_id, d.day, coalesce(r.bars, 0) AS bars, coalesce(r.intraday, false) AS intraday,
           r.last_written, coalesce(r.slots, 0) & d.regular AS slots,
           CASE WHEN c.bars IS NOT NULL AND coalesce(r.bars, 0) = c.bars
                     AND NOT (coalesce(r.bars, 0) > 0 AND r.intraday) THEN true
                WHEN d.final THEN false
                ELSE coalesce(r.bars, 0) > 0 END AS complete
      FROM unnest(%(ids)s::int[]) AS s (symbol_id)
     CROSS JOIN day d
      LEFT JOIN bar_sessions r
             ON r.symbol_id = s.symbol_id AND r.timeframe = %(raw)s AND r.day = d.day
      LEFT JOIN confirmed_sessions c
             ON c.symbol_id = s.symbol_id AND c.timeframe = %(raw)s AND c.day = d.day
), buckets AS (
    -- Per distinct slot set (a handful: full days, half days, partial ones), the buckets of
    -- each derived timeframe its regular-session bars fall in (bit k: 15k minutes after open).
    SELECT shape.slots, t.timeframe, count(DISTINCT 15 * k / t.minutes)::int AS n
      FROM (SELECT DISTINCT slots FROM raw) AS shape
     CROSS JOIN derived_tf t
     CROSS JOIN generate_series(0, 62) AS k
     WHERE (shape.slots >> k) & 1 = 1
     GROUP BY shape.slots, t.timeframe
), derived AS (
    SELECT x.symbol_id, x.timeframe, x.day, x.bars, x.intraday, x.first_written
      FROM bar_sessions x
     WHERE x.timeframe = ANY(%(derived)s)
       AND x.day BETWEEN %(first)s AND %(last)s
)
SELECT symbol_id, day, %(raw)s AS timeframe FROM raw WHERE NOT complete
UNION ALL
SELECT r.symbol_id, r.day, t.timeframe
  FROM raw r
 CROSS JOIN derived_tf t
  LEFT JOIN buckets b ON b.slots = r.slots AND b.timeframe = t.timeframe
  LEFT JOIN derived x ON x.symbol_id = r.symbol_id AND x.timeframe = t.timeframe AND x.day = r.day
 WHERE coalesce(x.bars, 0) <> coalesce(b.n, 0)
    OR (x.bars > 0 AND NOT (x.intraday = r.intraday AND r.last_written IS NOT NULL
                            AND x.first_written >= r.last_written))
"""


def incomplete_sessions(
    conn: psycopg.Connection,
    symbol_ids: Sequence[int],
    days: Sequence[date],
    *,
    final: Callable[[date], bool],
    raw: Timeframe = Timeframe.M15,
    bucket_minutes: Mapping[Timeframe, int] = REGULAR_BUCKET_MINUTES,
) -> dict[int, dict[date, frozenset[Timeframe]]]:
    """Per symbol id, its sessions among `days` (in order) that are not complete, each with its
    incomplete timeframes: `raw` when its bars are missing, unconfirmed, or provisional where
    `final(day)` demands the history provider's (`completeness.raw_complete`), and each derived
    timeframe of `bucket_minutes` (bucket length from the open) whose bars need deriving again
    (`completeness.derived_complete`). Complete sessions are judged in one query and never
    leave the database. Half days count the buckets of their shorter session."""
    ids = list(symbol_ids)
    found: dict[int, dict[date, frozenset[Timeframe]]] = {i: {} for i in ids}
    if not ids or not days:
        return found
    rows = conn.execute(
        _INCOMPLETE_SQL,
        {
            "ids": ids,
            "days": list(days),
            "final": [final(day) for day in days],
            "regular_minutes": [calendar.session(day).regular_minutes for day in days],
            "raw": raw.value,
            "derived": [tf.value for tf in bucket_minutes],
            "bucket_minutes": list(bucket_minutes.values()),
            "first": days[0],
            "last": days[-1],
        },
    ).fetchall()
    incomplete: dict[tuple[int, date], set[Timeframe]] = {}
    for symbol_id, day, timeframe in rows:
        incomplete.setdefault((symbol_id, day), set()).add(_TIMEFRAMES[timeframe])
    for (symbol_id, day), timeframes in sorted(incomplete.items()):
        found[symbol_id][day] = frozenset(timeframes)
    return found


def explain_session_states(
    conn: psycopg.Connection, symbol_ids: Sequence[int], days: Sequence[date]
) -> str:
    """The plan of `session_states`' query, executed (EXPLAIN ANALYZE, BUFFERS)."""
    rows = conn.execute(
        "EXPLAIN (ANALYZE, BUFFERS) " + _STATES_SQL,
        {"ids": list(symbol_ids), "first": days[0], "last": days[-1]},
    ).fetchall()
    return "\n".join(row[0] for row in rows)


def confirmed_empty_days(
    conn: psycopg.Connection, symbol_id: int, timeframe: Timeframe, first: date, last: date
) -> set[date]:
    """The sessions `first`..`last` the history provider answered with no bar."""
    rows = conn.execute(
        """SELECT day FROM confirmed_sessions
           WHERE symbol_id = %s AND timeframe = %s AND bars = 0 AND day BETWEEN %s AND %s""",
        (symbol_id, timeframe.value, first, last),
    ).fetchall()
    return {row[0] for row in rows}


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
    zone: ZoneInfo = calendar.EXCHANGE_TZ,
) -> list[date]:
    """The history provider served no bar for these past sessions: record them as empty and
    drop the provisional bars they still hold. A session holding final bars keeps them and is
    left unconfirmed (never lose a bar on one empty answer). Returns the days confirmed.
    `zone`: the zone of the days (UTC for crypto pairs)."""
    if not days:
        return []
    kept = set()
    for day in days:
        lo, hi = day_bounds(day, zone)
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
