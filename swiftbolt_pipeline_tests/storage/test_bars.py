"""`ohlc_bars_v2` writes: whole partitions replaced atomically, on the exchange's day."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import psycopg
import pytest
from polars.testing import assert_frame_equal

from swiftbolt_pipeline.core.models import BAR_SCHEMA, Timeframe
from swiftbolt_pipeline.storage import bars, watchlist
from swiftbolt_pipeline_tests.storage.helpers import bars_frame, et, session_bars

MON, TUE, WED = date(2024, 3, 4), date(2024, 3, 5), date(2024, 3, 6)
FRI_EST, MON_EDT = date(2024, 3, 8), date(2024, 3, 11)  # DST starts on Sunday 2024-03-10


def sid(conn: psycopg.Connection, ticker: str = "AAPL") -> int:
    return watchlist.ensure(conn, [ticker])[ticker]


def write(
    conn: psycopg.Connection,
    symbol_id: int,
    days: list[date],
    frame: pl.DataFrame,
    *,
    timeframe: Timeframe = Timeframe.M15,
    provider: str = "polygon",
    is_intraday: bool = False,
) -> int:
    return bars.replace_partitions(
        conn,
        symbol_id=symbol_id,
        timeframe=timeframe,
        days=days,
        bars=frame,
        provider=provider,
        is_intraday=is_intraday,
    )


SOURCE_COLUMNS = {"provider": pl.String(), "is_intraday": pl.Boolean()}


def read(conn: psycopg.Connection, symbol_id: int, first: date, last: date) -> pl.DataFrame:
    """The BAR_SCHEMA part of `read_bars` (which also carries each bar's source)."""
    got = bars.read_bars(conn, symbol_id, Timeframe.M15, first, last)
    return got.select(list(BAR_SCHEMA))


def count(conn: psycopg.Connection, where: str = "true") -> int:
    row = conn.execute(f"SELECT count(*) FROM ohlc_bars_v2 WHERE {where}").fetchone()
    assert row is not None
    return row[0]


def test_write_then_read_round_trips_exactly(conn: psycopg.Connection) -> None:
    s = sid(conn)
    frame = pl.concat([session_bars(MON), session_bars(TUE, price=200.123456789012)])
    frame = frame.with_columns(
        pl.when(pl.col("ts") == frame["ts"][3])
        .then(0.1 + 0.2)
        .otherwise(pl.col("open"))
        .alias("open"),
        pl.when(pl.col("ts") == frame["ts"][4])
        .then(9_007_199_254_740_993)
        .otherwise(pl.col("volume"))
        .alias("volume"),
    )
    assert write(conn, s, [MON, TUE], frame) == 52
    full = bars.read_bars(conn, s, Timeframe.M15, MON, TUE)
    assert full.schema == pl.Schema(BAR_SCHEMA | SOURCE_COLUMNS)
    assert full["provider"].unique().to_list() == ["polygon"]
    assert full["is_intraday"].unique().to_list() == [False]
    got = full.select(list(BAR_SCHEMA))
    assert_frame_equal(got, frame.sort("ts"), check_exact=True)
    assert got["vwap"].null_count() > 0 and got["trade_count"].null_count() > 0


def test_replace_is_idempotent(conn: psycopg.Connection) -> None:
    s = sid(conn)
    frame = pl.concat([session_bars(MON), session_bars(TUE)])
    write(conn, s, [MON, TUE], frame)
    first = read(conn, s, MON, TUE)
    write(conn, s, [MON, TUE], frame)
    second = read(conn, s, MON, TUE)
    assert_frame_equal(first, second)
    assert count(conn) == 52


def test_replacing_a_day_removes_bars_no_longer_present_and_leaves_others(
    conn: psycopg.Connection,
) -> None:
    s, other = sid(conn), sid(conn, "MSFT")
    write(conn, s, [MON, TUE, WED], pl.concat([session_bars(d) for d in (MON, TUE, WED)]))
    write(conn, other, [TUE], session_bars(TUE))
    write(conn, s, [TUE], session_bars(TUE).head(7), timeframe=Timeframe.H1)
    write(conn, s, [TUE], session_bars(TUE, 20, price=50))
    assert bars.sessions_with_bars(conn, s, Timeframe.M15, MON, WED) == {MON: 26, TUE: 20, WED: 26}
    assert bars.read_bars(conn, s, Timeframe.M15, TUE, TUE)["open"][0] == 50
    assert bars.sessions_with_bars(conn, other, Timeframe.M15, TUE, TUE) == {TUE: 26}
    assert bars.sessions_with_bars(conn, s, Timeframe.H1, TUE, TUE) == {TUE: 7}
    # An empty frame empties the partition.
    assert write(conn, s, [TUE], bars_frame([])) == 0
    assert bars.sessions_with_bars(conn, s, Timeframe.M15, MON, WED) == {MON: 26, WED: 26}


def test_replacing_non_adjacent_days_leaves_the_days_between(conn: psycopg.Connection) -> None:
    s = sid(conn)
    write(conn, s, [MON, TUE, WED], pl.concat([session_bars(d) for d in (MON, TUE, WED)]))
    write(conn, s, [MON, WED], pl.concat([session_bars(MON, 3), session_bars(WED, 4)]))
    assert bars.sessions_with_bars(conn, s, Timeframe.M15, MON, WED) == {MON: 3, TUE: 26, WED: 4}


def test_stray_bars_raise_and_write_nothing(conn: psycopg.Connection) -> None:
    s = sid(conn)
    write(conn, s, [MON], session_bars(MON))
    before = bars.read_bars(conn, s, Timeframe.M15, MON, TUE)
    mixed = pl.concat([session_bars(MON, 5, price=1), session_bars(TUE, 2)])
    with pytest.raises(ValueError, match="2 bars fall outside"):
        write(conn, s, [MON], mixed)
    assert_frame_equal(bars.read_bars(conn, s, Timeframe.M15, MON, TUE), before)


def test_primary_key_rejects_duplicate_bars_and_the_write_rolls_back(
    conn: psycopg.Connection,
) -> None:
    s = sid(conn)
    write(conn, s, [MON], session_bars(MON))
    conn.commit()
    twice = pl.concat([session_bars(MON, 3, price=7), session_bars(MON, 1, price=7)])
    with pytest.raises(psycopg.errors.UniqueViolation):
        write(conn, s, [MON], twice)
    conn.rollback()
    got = bars.read_bars(conn, s, Timeframe.M15, MON, MON)
    assert got.height == 26 and got["open"][0] == 100  # the old partition survived intact
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            """INSERT INTO ohlc_bars_v2 (symbol_id, timeframe, ts, open, high, low, close,
                                         volume, provider)
               VALUES (%s, 'm15', %s, 1, 2, 0.5, 1, 1, 'polygon')""",
            (s, et(MON, 9, 30)),
        )


def test_day_boundary_is_the_exchange_day_not_utc(conn: psycopg.Connection) -> None:
    s = sid(conn)
    late = [
        et(MON, 18, 30),  # 23:30 UTC: Monday in New York
        et(MON, 19, 45),  # 00:45 UTC Tuesday: still Monday in New York
        et(MON, 0, 0),  # 05:00 UTC: the first instant of Monday
    ]
    assert late[0] == datetime(2024, 3, 4, 23, 30, tzinfo=UTC)
    frame = bars_frame(
        [
            {"ts": t, "open": 1, "high": 2, "low": 0.5, "close": 1.5, "volume": 1}
            | {"vwap": None, "trade_count": None}
            for t in late
        ]
    )
    with pytest.raises(ValueError, match="outside"):
        write(conn, s, [TUE], frame)
    assert write(conn, s, [MON], frame) == 3
    assert bars.sessions_with_bars(conn, s, Timeframe.M15, MON, WED) == {MON: 3}
    assert bars.read_bars(conn, s, Timeframe.M15, TUE, WED).height == 0
    assert bars.read_bars(conn, s, Timeframe.M15, MON, MON)["ts"].to_list() == sorted(late)
    # Replacing Tuesday (even with bars at 00:00-04:59 UTC) leaves Monday's evening alone.
    tue_early = bars_frame(
        [
            {"ts": et(TUE, 0, 15), "open": 1, "high": 2, "low": 0.5, "close": 1.5, "volume": 1}
            | {"vwap": None, "trade_count": None}
        ]
    )
    write(conn, s, [TUE], tue_early)
    assert bars.sessions_with_bars(conn, s, Timeframe.M15, MON, WED) == {MON: 3, TUE: 1}


def test_day_bounds_follow_daylight_saving_time() -> None:
    assert bars.day_bounds(FRI_EST)[0] == datetime(2024, 3, 8, 5, tzinfo=UTC)
    assert bars.day_bounds(FRI_EST)[1] == datetime(2024, 3, 9, 5, tzinfo=UTC)
    assert bars.day_bounds(date(2024, 3, 10)) == (
        datetime(2024, 3, 10, 5, tzinfo=UTC),
        datetime(2024, 3, 11, 4, tzinfo=UTC),  # a 23-hour day
    )
    assert bars.day_bounds(MON_EDT)[0] == datetime(2024, 3, 11, 4, tzinfo=UTC)


def test_friday_and_monday_around_dst_change(conn: psycopg.Connection) -> None:
    s = sid(conn)
    frame = pl.concat([session_bars(FRI_EST), session_bars(MON_EDT)])
    write(conn, s, [FRI_EST, MON_EDT], frame)
    assert bars.sessions_with_bars(conn, s, Timeframe.M15, FRI_EST, MON_EDT) == {
        FRI_EST: 26,
        MON_EDT: 26,
    }
    mon = bars.read_bars(conn, s, Timeframe.M15, MON_EDT, MON_EDT)
    assert mon["ts"][0] == datetime(2024, 3, 11, 13, 30, tzinfo=UTC)  # 09:30 EDT
    fri = bars.read_bars(conn, s, Timeframe.M15, FRI_EST, FRI_EST)
    assert fri["ts"][0] == datetime(2024, 3, 8, 14, 30, tzinfo=UTC)  # 09:30 EST


def test_provider_and_intraday_flag_are_stored_and_replaced(conn: psycopg.Connection) -> None:
    s = sid(conn)
    write(conn, s, [MON], session_bars(MON, 10), provider="tradier", is_intraday=True)
    got = bars.read_bars(conn, s, Timeframe.M15, MON, MON)
    assert got.select("provider", "is_intraday").unique().rows() == [("tradier", True)]
    assert conn.execute(
        "SELECT DISTINCT provider, is_intraday FROM ohlc_bars_v2 WHERE symbol_id = %s", (s,)
    ).fetchall() == [("tradier", True)]
    write(conn, s, [MON], session_bars(MON), provider="polygon", is_intraday=False)
    assert conn.execute(
        "SELECT provider, is_intraday, count(*) FROM ohlc_bars_v2 WHERE symbol_id = %s "
        "GROUP BY 1, 2",
        (s,),
    ).fetchall() == [("polygon", False, 26)]


def test_replace_joins_the_callers_transaction(conn: psycopg.Connection, db_url: str) -> None:
    s = sid(conn)
    conn.commit()
    with pytest.raises(RuntimeError, match="abort"), conn.transaction():
        write(conn, s, [MON], session_bars(MON))
        assert count(conn) == 26
        raise RuntimeError("abort")
    assert count(conn) == 0
    conn.commit()  # end the implicit transaction the count opened
    with conn.transaction():
        write(conn, s, [MON], session_bars(MON))
    with psycopg.connect(db_url) as other:
        assert count(other) == 26


def test_concurrent_writers_of_the_same_partitions_leave_one_copy(
    db_url: str, conn: psycopg.Connection
) -> None:
    s = sid(conn)
    conn.commit()
    days = [MON, TUE, WED]
    versions = {
        "a": pl.concat([session_bars(d, 26, price=10) for d in days]),
        "b": pl.concat([session_bars(d, 20, price=20) for d in days]),
    }
    errors: list[BaseException] = []
    for _ in range(5):
        barrier = threading.Barrier(2)

        def run(version: str, barrier: threading.Barrier = barrier) -> None:
            try:
                with psycopg.connect(db_url) as c:
                    barrier.wait(10)
                    for _ in range(3):
                        write(c, s, days, versions[version])
                        c.commit()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(v,)) for v in versions]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert errors == []
        got = read(conn, s, MON, WED)
        conn.commit()
        assert got["ts"].is_unique().all()
        assert any(got.equals(v) for v in versions.values()), "a mix of two writes"


def test_concurrent_identical_writers_leave_exactly_one_copy(
    db_url: str, conn: psycopg.Connection
) -> None:
    s = sid(conn)
    conn.commit()
    frame = pl.concat([session_bars(d) for d in (MON, TUE)])
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(db_url, autocommit=True) as c:
                barrier.wait(10)
                for _ in range(5):
                    write(c, s, [MON, TUE], frame)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert count(conn) == 52


def test_read_bars_and_sessions_with_bars_limit_to_the_range(conn: psycopg.Connection) -> None:
    s = sid(conn)
    write(conn, s, [MON, TUE, WED], pl.concat([session_bars(d, 4) for d in (MON, TUE, WED)]))
    got = bars.read_bars(conn, s, Timeframe.M15, TUE, TUE)
    assert got.height == 4
    assert got["ts"].is_sorted()
    assert {t.astimezone(UTC).date() for t in got["ts"]} == {TUE}
    assert bars.sessions_with_bars(conn, s, Timeframe.M15, TUE, WED) == {TUE: 4, WED: 4}
    assert bars.sessions_with_bars(conn, s, Timeframe.H4, MON, WED) == {}
    assert bars.read_bars(conn, s, Timeframe.D1, MON, WED).schema == pl.Schema(
        BAR_SCHEMA | SOURCE_COLUMNS
    )


def test_read_bars_is_utc_whatever_the_session_time_zone(db_url: str) -> None:
    with psycopg.connect(db_url, options="-c TimeZone=Asia/Tokyo") as conn:
        s = sid(conn)
        write(conn, s, [MON], session_bars(MON, 2))
        got = bars.read_bars(conn, s, Timeframe.M15, MON, MON)
        assert got["ts"].to_list() == [
            datetime(2024, 3, 4, 14, 30, tzinfo=UTC),
            datetime(2024, 3, 4, 14, 45, tzinfo=UTC),
        ]
        assert bars.sessions_with_bars(conn, s, Timeframe.M15, MON, MON) == {MON: 2}


def chart(conn: psycopg.Connection, ticker: str, tf: str, start: datetime, end: datetime) -> list:
    return conn.execute(
        "SELECT * FROM get_chart_data_v2(%s, %s, %s, %s)", (ticker, tf, start, end)
    ).fetchall()


def test_get_chart_data_v2_orders_and_includes_both_ends(conn: psycopg.Connection) -> None:
    s = sid(conn)
    frame = session_bars(MON, 26)
    shuffled = frame.sample(fraction=1.0, shuffle=True, seed=3)
    assert shuffled["ts"].to_list() != frame["ts"].to_list()
    write(conn, s, [MON], shuffled)
    write(conn, s, [MON], session_bars(MON, 7, price=500), timeframe=Timeframe.H1)
    start, end = frame["ts"][2], frame["ts"][9]
    rows = chart(conn, "aapl", "m15", start, end)
    assert [r[0] for r in rows] == frame["ts"].to_list()[2:10]
    assert rows[0][1:] == (
        frame["open"][2], frame["high"][2], frame["low"][2], frame["close"][2],
        frame["volume"][2], frame["vwap"][2], frame["trade_count"][2], "polygon", False,
    )  # fmt: skip
    assert len(chart(conn, "AAPL", "m15", start - timedelta(days=1), end + timedelta(days=1))) == 26
    assert len(chart(conn, "AAPL", "h1", start - timedelta(days=1), end + timedelta(days=1))) == 7
    assert chart(conn, "MSFT", "m15", start, end) == []
    assert chart(conn, "AAPL", "m15", end, start) == []


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_read_bars_equals_a_plain_select_on_tricky_values(conn: psycopg.Connection) -> None:
    s, other = sid(conn), sid(conn, "MSFT")
    sun = date(2024, 3, 10)  # 23 hours long in New York: clocks jump from 02:00 to 03:00
    most, beyond_float = 2**63 - 1, 2**53 + 1  # int64's largest, float64's first gap
    rows = [
        # (ts, open, high, low, close, volume, vwap, trade_count, provider, is_intraday)
        (utc("2024-03-08 04:59:59.999999"), 1, 1, 1, 1, 1, None, None, "polygon", False),
        (et(FRI_EST, 0), 0.1 + 0.2, 1.7976931348623157e308, 5e-324, 1e-7, 0, None, 7, "polygon", False),  # noqa: E501
        (et(FRI_EST, 9, 30), 123.456789012345678, 200.5, 100.25, 150.125, most, 150.0000000000001, None, "tradier", True),  # noqa: E501
        (utc("2024-03-10 06:59:59.999999"), 2.5, 3.5, 1.5, 2.5, 10, 2.75, beyond_float, "alpaca", True),  # noqa: E501
        (utc("2024-03-10 07:00:00.000001"), 2.5, 3.5, 1.5, 2.5, 10, None, 3, "alpaca", False),
        (utc("2024-03-11 03:59:59.999999"), 1 / 3, 2 / 3, 1 / 7, 0.5, 1, 1 / 9, 1, "polygon", False),  # noqa: E501
        (et(MON_EDT, 0), 99.99, 100.01, 99.98, 100, 5, 100.000001, None, "polygon", True),
        (utc("2024-03-12 04:00:00"), 1, 1, 1, 1, 1, None, None, "polygon", False),
    ]  # fmt: skip
    with conn.cursor() as cur:
        for symbol_id, timeframe in ((s, "m15"), (s, "h1"), (other, "m15")):
            cur.executemany(
                """INSERT INTO ohlc_bars_v2 (symbol_id, timeframe, ts, open, high, low, close,
                                             volume, vwap, trade_count, provider, is_intraday)
                   VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
                [(symbol_id, timeframe, *row) for row in rows],
            )

    def plain_select(lo: datetime, hi: datetime) -> pl.DataFrame:
        selected = conn.execute(
            """SELECT ts, open, high, low, close, volume, vwap, trade_count, provider, is_intraday
               FROM ohlc_bars_v2
               WHERE symbol_id = %s AND timeframe = 'm15' AND ts >= %s AND ts < %s
               ORDER BY ts""",
            (s, lo, hi),
        ).fetchall()
        return pl.DataFrame(selected, schema=BAR_SCHEMA | SOURCE_COLUMNS, orient="row")

    got = bars.read_bars(conn, s, Timeframe.M15, FRI_EST, MON_EDT)
    assert_frame_equal(got, plain_select(et(FRI_EST, 0), et(date(2024, 3, 12), 0)))
    # The exchange days Friday to Monday: the instants just outside them are left out.
    assert got["ts"].to_list() == [row[0] for row in rows[1:-1]]
    assert got["open"][0] == 0.30000000000000004 and got["low"][0] == 5e-324
    assert got["volume"][1] == most and got["trade_count"][2] == beyond_float
    assert got["vwap"].is_null().to_list() == [True, False, False, True, False, False]
    assert got["trade_count"].is_null().to_list() == [False, True, False, False, False, True]

    sunday_utc = bars.read_bars(conn, s, Timeframe.M15, sun, sun, ZoneInfo("UTC"))
    assert_frame_equal(sunday_utc, plain_select(utc("2024-03-10 00:00"), utc("2024-03-11 00:00")))
    assert sunday_utc.height == 2
    assert_frame_equal(
        bars.read_bars(conn, s, Timeframe.M15, WED, WED), plain_select(et(WED, 0), et(WED, 0))
    )


def test_replacing_scattered_days_leaves_the_days_between(conn: psycopg.Connection) -> None:
    s = sid(conn)
    sat, sun, thu = date(2024, 3, 9), date(2024, 3, 10), date(2024, 3, 7)
    days = [MON, TUE, WED, thu, FRI_EST, sat, sun, MON_EDT]
    write(conn, s, days, pl.concat([session_bars(d, 3) for d in days]))
    # Three runs of days (Mon, Wed-Fri, Sun-Mon across the DST change), two gaps between them.
    write(conn, s, [MON, WED, thu, FRI_EST, sun, MON_EDT], session_bars(WED, 1, price=9))
    assert bars.sessions_with_bars(conn, s, Timeframe.M15, MON, MON_EDT) == {
        TUE: 3,
        WED: 1,
        sat: 3,
    }
    assert count(conn) == 7


def test_the_binary_copy_stores_every_value_exactly(conn: psycopg.Connection) -> None:
    """`replace_partitions` sends binary COPY rows: each value must land as given, whatever
    the mix of NULLs (each row's layout), extreme floats and integers, and instants before
    PostgreSQL's 2000-01-01 epoch (negative offsets) or with microseconds."""
    s = sid(conn)
    new_year, spring = date(1999, 12, 31), date(2024, 3, 11)
    most = 2**63 - 1
    rows = [
        # (ts, open, high, low, close, volume, vwap, trade_count)
        (utc("1999-12-31 05:00:00"), 1.0, 1.0, 1.0, 1.0, 0, None, None),
        (utc("1999-12-31 14:30:00.000001"), 0.1 + 0.2, 1.7976931348623157e308, 5e-324, 1e-7, most, 2.5, 7),  # noqa: E501
        (utc("2000-01-01 04:59:59.999999"), 2.2250738585072014e-308, 1e300, 2.2250738585072014e-308, 1e300, 1, None, most),  # noqa: E501
        (utc("2024-03-11 04:00:00"), 1 / 3, 2 / 3, 1 / 7, 0.5, 2**53 + 1, 1 / 9, None),
        (utc("2024-03-11 13:30:00"), 123.456789012345678, 200.5, 100.25, 150.125, 5, 150.0000000000001, 0),  # noqa: E501
        (utc("2024-03-12 03:59:59.999999"), 99.99, 100.01, 99.98, 100.0, 5, None, 3),
    ]  # fmt: skip
    frame = pl.DataFrame(rows, schema=BAR_SCHEMA, orient="row")
    assert write(conn, s, [new_year, spring], frame, provider="alpaca", is_intraday=True) == 6
    stored = conn.execute(
        """SELECT ts, open, high, low, close, volume, vwap, trade_count, symbol_id, timeframe,
                  provider, is_intraday
             FROM ohlc_bars_v2 ORDER BY ts"""
    ).fetchall()
    assert stored == [(*row, s, "m15", "alpaca", True) for row in rows]
    sessions = conn.execute("SELECT day, bars FROM bar_sessions ORDER BY day").fetchall()
    assert sessions == [(new_year, 3), (spring, 3)]
