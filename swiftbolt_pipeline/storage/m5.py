"""The opt-in 5-minute bars (m5) as `core.completeness` judges raw bars: per symbol and session,
the stored m5 bars and the history provider's m5 confirmation, in a `SessionState` whose `raw`
is the m5 series (its derived fields stay empty: nothing is derived from m5)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import psycopg

from swiftbolt_pipeline.core.completeness import NOTHING, SessionState
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.storage.coverage import session_states


def m5_session_states(
    conn: psycopg.Connection, symbol_ids: Sequence[int], days: Sequence[date]
) -> dict[int, dict[date, SessionState]]:
    """Per symbol id, each of `days` (sessions, in order) as m5 raw state: two queries."""
    ids = list(symbol_ids)
    stored = session_states(conn, ids, days)
    if not ids or not days:
        return stored
    rows = conn.execute(
        """SELECT symbol_id, day, bars FROM confirmed_sessions
           WHERE symbol_id = ANY(%s::int[]) AND timeframe = %s AND day BETWEEN %s AND %s""",
        (ids, Timeframe.M5.value, days[0], days[-1]),
    ).fetchall()
    confirmed = {(symbol_id, day): bars for symbol_id, day, bars in rows}
    return {
        symbol_id: {
            day: SessionState(
                day,
                state.derived.get(Timeframe.M5, NOTHING),
                confirmed_bars=confirmed.get((symbol_id, day)),
            )
            for day, state in per_day.items()
        }
        for symbol_id, per_day in stored.items()
    }
