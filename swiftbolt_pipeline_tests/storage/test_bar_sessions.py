"""`bar_sessions` (per symbol, timeframe and exchange day) stays equal to what `ohlc_bars_v2`
holds through every kind of write, and its slots give the same buckets as the bars."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import polars as pl
import psycopg
from hypothesis import given
from hypothesis import strategies as st

from swiftbolt_pipeline.core.calendar import EXCHANGE_TZ
from swiftbolt_pipeline.core.completeness import regular_buckets
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.storage import bars, watchlist
from swiftbolt_pipeline_tests.storage.helpers import bars_frame, et, session_bars

MON, TUE = date(2024, 11, 25), date(2024, 11, 26)
BLACK_FRIDAY = date(2024, 11, 29)  # closes at 13:00 ET


def _expected(conn: psycopg.Connection) -> dict[tuple, tuple]:
    """Recount from the bars in Python: count, any provisional, first and last write, slots."""
    groups: dict[tuple, list[tuple]] = defaultdict(list)
    for symbol_id, timeframe, ts, intraday, fetched in conn.execute(
        "SELECT symbol_id, timeframe, ts, is_intraday, fetched_at FROM ohlc_bars_v2"
    ):
        local = ts.astimezone(EXCHANGE_TZ)
        groups[(symbol_id, timeframe, local.date())].append((local, intraday, fetched))
    expected = {}
    for key, rows in groups.items():
        slots = 0
        for local, _, _ in rows:
            since_open = local.hour * 60 + local.minute - 570
            if 0 <= since_open < 390:
                slots |= 1 << (since_open // 15)
        expected[key] = (
            len(rows),
            any(r[1] for r in rows),
            min(r[2] for r in rows),
            max(r[2] for r in rows),
            slots,
        )
    return expected


def _summary(conn: psycopg.Connection) -> dict[tuple, tuple]:
    rows = conn.execute(
        "SELECT symbol_id, timeframe, day, bars, intraday, first_written, last_written, slots "
        "FROM bar_sessions"
    ).fetchall()
    return {tuple(r[:3]): tuple(r[3:]) for r in rows}


def _write(conn: psycopg.Connection, symbol_id: int, day: date, frame: pl.DataFrame) -> None:
    bars.replace_partitions(
        conn,
        symbol_id=symbol_id,
        timeframe=Timeframe.M15,
        days=[day],
        bars=frame,
        provider="polygon",
        is_intraday=False,
    )
    conn.commit()


def test_every_kind_of_write_keeps_the_summary_exact(conn: psycopg.Connection) -> None:
    ids = watchlist.ensure(conn, ["AAPL", "MSFT"])
    aapl, msft = ids["AAPL"], ids["MSFT"]
    _write(conn, aapl, MON, session_bars(MON))
    _write(conn, aapl, TUE, session_bars(TUE, 10))
    _write(conn, msft, MON, session_bars(MON, 3))
    # Extended hours: before the open and after the close are bars but no slots.
    early_late = bars_frame(
        [
            {"ts": et(BLACK_FRIDAY, h, m), "open": 1.0, "high": 2.0, "low": 1.0, "close": 1.5,
             "volume": 5, "vwap": None, "trade_count": None}
            for h, m in ((8, 0), (9, 30), (12, 45), (13, 0), (16, 0), (19, 45))
        ]
    )  # fmt: skip
    _write(conn, msft, BLACK_FRIDAY, early_late)
    assert _summary(conn) == _expected(conn)
    assert len(_summary(conn)) == 4

    # Replacing a partition with fewer bars, deleting some rows, updating others, a direct
    # INSERT: each statement leaves the summary equal to the bars.
    _write(conn, aapl, MON, session_bars(MON, 7))
    assert _summary(conn) == _expected(conn)
    conn.execute("DELETE FROM ohlc_bars_v2 WHERE symbol_id = %s AND ts > %s", (aapl, et(TUE, 11)))
    conn.execute(
        "UPDATE ohlc_bars_v2 SET is_intraday = true, ts = ts + interval '1 day' "
        "WHERE symbol_id = %s AND ts < %s",
        (msft, et(MON, 10)),
    )
    conn.execute(
        """INSERT INTO ohlc_bars_v2 (symbol_id, timeframe, ts, open, high, low, close, volume,
               provider) VALUES (%s, 'h1', %s, 1, 1, 1, 1, 1, 'polygon')""",
        (aapl, et(TUE, 9, 30)),
    )
    conn.commit()
    assert _summary(conn) == _expected(conn)
    assert (msft, "m15", TUE) in _summary(conn)  # the update moved two bars to Tuesday

    # A session whose last bar goes disappears from the summary.
    conn.execute("DELETE FROM ohlc_bars_v2 WHERE symbol_id = %s", (msft,))
    conn.commit()
    assert all(key[0] != msft for key in _summary(conn))
    assert _summary(conn) == _expected(conn)

    # A rolled-back write leaves nothing behind.
    conn.execute("DELETE FROM ohlc_bars_v2")
    conn.rollback()
    assert _summary(conn) == _expected(conn) != {}

    conn.execute("TRUNCATE ohlc_bars_v2")
    conn.commit()
    assert _summary(conn) == {}


@given(st.sets(st.integers(min_value=-120, max_value=600)), st.sampled_from([390, 210]))
def test_slots_give_the_buckets_of_the_bars(minutes: set[int], regular_minutes: int) -> None:
    """Bars starting `minutes` after 09:30: buckets counted from the bars directly vs from the
    slot bit set the summary stores."""
    slots = 0
    for minute in minutes:
        if 0 <= minute < 390:
            slots |= 1 << (minute // 15)
    regular = [m for m in minutes if 0 <= m < regular_minutes]
    assert regular_buckets(slots, regular_minutes) == {
        Timeframe.H1: len({m // 60 for m in regular}),
        Timeframe.H4: len({m // 240 for m in regular}),
    }


def test_buckets_of_a_real_early_close() -> None:
    open_ = datetime(2024, 11, 29, 14, 30, tzinfo=UTC)  # 09:30 ET
    starts = [open_ + timedelta(minutes=15 * k) for k in range(26)]  # bars until 16:00
    slots = sum(1 << ((s - open_).seconds // 900) for s in starts)
    assert regular_buckets(slots, 210) == {Timeframe.H1: 4, Timeframe.H4: 1}
