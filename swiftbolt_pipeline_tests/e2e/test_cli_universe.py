"""`swiftbolt universe` end to end: a 121-member universe backfilled from Alpaca (emulator over
HTTP, real PostgreSQL) in one run whose Dagster bookkeeping is per universe x day."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline_tests.defs.test_daily_assets import _official
from swiftbolt_pipeline_tests.e2e.cli_runner import run_cli
from swiftbolt_pipeline_tests.realdata import regular_m15
from swiftbolt_pipeline_tests.reliability.helpers import (
    emulator_requests,
    reset_emulator,
    served_bars,
)

START, END = date(2026, 2, 2), date(2026, 2, 5)  # 4 sessions of generated bars
DAYS = calendar.sessions_between(START, END)
# Alpaca's documented limits, written out here rather than imported from the client.
ALPACA_SYMBOLS_PER_REQUEST = 50
ALPACA_BARS_PER_PAGE = 10_000
UNKNOWN = "ZZUNK"  # the emulator knows no ZZ* ticker: SYMBOL_NOT_FOUND
TICKERS = ["U" + "".join(t) for t in itertools.product("ABCDE", repeat=3)][:120]


@pytest.fixture
def env(pipeline_env: dict[str, str]) -> dict[str, str]:
    return dict(pipeline_env)


def _truth(emulator: str, ticker: str) -> list[dict[str, Any]]:
    """The emulator's 15-minute bars of the range, extended hours included (what Alpaca serves:
    the same base bars through the emulator's Polygon handler)."""
    return served_bars(emulator, ticker, START, END)


def _regular(bars: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Regular-session bars as (ts, o, h, l, c, v), from the calendar's session bounds."""
    sessions = [calendar.session(d) for d in DAYS]
    out = []
    for bar in bars:
        ts = datetime.fromtimestamp(bar["t"] / 1000, UTC)
        if any(s.open <= ts < s.close for s in sessions):
            out.append((ts, bar["o"], bar["h"], bar["l"], bar["c"], bar["v"]))
    return out


def _roll_up(m15: list[tuple[Any, ...]], span: str) -> list[tuple[Any, ...]]:
    """h1 (anchored 09:30 ET), h4 (09:30 and 13:30 ET) or d1 bars from regular m15 bars."""
    buckets: dict[datetime, list[tuple[Any, ...]]] = {}
    for bar in m15:
        ts = bar[0]
        session = calendar.session(ts.astimezone(calendar.EXCHANGE_TZ).date())
        if span == "h1":
            start = session.open + timedelta(hours=(ts - session.open) // timedelta(hours=1))
        elif span == "h4":
            start = session.open + timedelta(hours=4 * ((ts - session.open) >= timedelta(hours=4)))
        else:
            start = session.open
        buckets.setdefault(start, []).append(bar)
    return [
        (start, rows[0][1], max(r[2] for r in rows), min(r[3] for r in rows), rows[-1][4],
         sum(r[5] for r in rows))
        for start, rows in sorted(buckets.items())
    ]  # fmt: skip


def _stored(conn: psycopg.Connection, ticker: str, timeframe: str) -> list[tuple[Any, ...]]:
    return conn.execute(
        """SELECT b.ts, b.open, b.high, b.low, b.close, b.volume
           FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
           WHERE s.ticker = %s AND b.timeframe = %s ORDER BY b.ts""",
        (ticker, timeframe),
    ).fetchall()


@pytest.mark.slow  # ~20-30 s of end-to-end work; CI's slow suite runs it
def test_universe_backfill_batches_members_and_keeps_day_partitions(
    env: dict[str, str], conn: psycopg.Connection, emulator: str, tmp_path: Path
) -> None:
    listing = tmp_path / "universe.txt"
    listing.write_text("\n".join([*(t.lower() for t in TICKERS), "", UNKNOWN, TICKERS[0]]) + "\n")
    created = run_cli("universe", "set", "Broad", "--file", str(listing), env=env)
    assert created.returncode == 0, created.stderr
    assert "universe broad: 121 member(s) (121 added, 0 removed)" in created.stdout

    reset_emulator(emulator)
    result = run_cli(
        "universe", "backfill", "broad", "--start", START.isoformat(), "--end", END.isoformat(),
        "--provider", "alpaca", env=env,
    )  # fmt: skip
    alpaca_requests = emulator_requests(emulator, "alpaca")
    # One member answered SYMBOL_NOT_FOUND: the command says so and exits non-zero, the other
    # 120 are stored.
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    for what in ("m15", "d1"):
        assert f"FAILED {what} of 1 member(s): SYMBOL_NOT_FOUND=1 (e.g. {UNKNOWN})" in result.stderr

    # The request floor: members in ticker order in batches of 50, each batch paged by the
    # 10,000-bar limit over the bars the emulator holds for it (extended hours included).
    served = {t: _truth(emulator, t) for t in TICKERS}
    members = sorted([*TICKERS, UNKNOWN])
    batches = [members[i : i + ALPACA_SYMBOLS_PER_REQUEST] for i in range(0, 121, 50)]
    floor = sum(
        max(1, math.ceil(sum(len(served.get(t, [])) for t in batch) / ALPACA_BARS_PER_PAGE))
        for batch in batches
    )
    assert len(batches) == 3 and floor > len(batches)  # pages were forced
    # d1: 121 members x 4 sessions, the same 3 batches of one page each (Alpaca's `1Day`).
    assert alpaca_requests == floor + len(batches)
    regular = {t: _regular(bars) for t, bars in served.items()}
    m15_rows = sum(len(bars) for bars in regular.values())
    assert (
        f"1 run, {len(DAYS)} day partition(s) x 3 asset(s), 121 member(s), {m15_rows} m15, "
        in result.stderr
    )
    assert f"{floor + 3} request(s): m15 {floor} " in result.stderr
    assert "d1 3 (3 planned, alpaca per-symbol)" in result.stderr
    assert emulator_requests(emulator, "polygon") == len(TICKERS)  # only the truth above

    # Stored bars: exactly the emulator's regular-session bars, for a sample of members.
    for ticker in (TICKERS[0], TICKERS[57], TICKERS[-1]):
        assert _stored(conn, ticker, "m15") == regular[ticker]
    assert conn.execute("SELECT count(*) FROM ohlc_bars_v2 WHERE timeframe = 'm15'").fetchone() == (
        m15_rows,
    )
    # h1/h4 of one member equal an independent roll-up of the emulator's bars (d1 is the
    # provider's official daily bar, not derived from m15); the summary counts every one.
    for span in ("h1", "h4"):
        assert _stored(conn, TICKERS[7], span) == _roll_up(regular[TICKERS[7]], span), span
    derived = sum(len(_roll_up(bars, span)) for bars in regular.values() for span in ("h1", "h4"))
    assert f"{m15_rows} m15, {derived} h1/h4, " in result.stderr
    # Feb 2-5 open both their week and their month: one w1 and one mo1 bar per served member.
    assert " d1 and 240 w1/mo1 bars written" in result.stderr
    assert conn.execute(
        "SELECT timeframe, count(*) FROM ohlc_bars_v2 WHERE timeframe IN ('w1', 'mo1') "
        "GROUP BY 1 ORDER BY 1"
    ).fetchall() == [("mo1", 120), ("w1", 120)]

    # Dagster's bookkeeping: one materialization per asset and day, none per member.
    events = conn.execute(
        """SELECT asset_key, partition FROM dagster.event_logs
           WHERE dagster_event_type = 'ASSET_MATERIALIZATION'
             AND run_id IN (SELECT run_id FROM dagster.runs)"""
    ).fetchall()
    assert len(events) <= len(DAYS) * 3
    assert sorted(events) == sorted(
        (f'["{asset}"]', f"{day.isoformat()}|broad")
        for asset in ("universe_d1_bars", "universe_derived_bars", "universe_m15_bars")
        for day in DAYS
    )
    assert conn.execute("SELECT count(*) FROM dagster.runs").fetchone() == (1,)
    assert conn.execute(
        """SELECT count(*) FROM dagster.dynamic_partitions
           WHERE partitions_def_name = 'symbols' AND partition = ANY(%s)""",
        (members,),
    ).fetchone() == (0,)
    # Members stay off the watchlist; each one's outcome is recorded.
    assert conn.execute("SELECT count(*) FROM symbols WHERE is_active").fetchone() == (0,)
    outcomes = conn.execute(
        """SELECT last_error_code, count(*) FROM universe_members
           WHERE universe = 'broad' AND last_range_start = %s AND last_range_end = %s
           GROUP BY 1 ORDER BY 1""",
        (START, END),
    ).fetchall()
    assert outcomes == [("SYMBOL_NOT_FOUND", 1), (None, 120)]
    listed = run_cli("universe", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[1].split()[:3] == ["broad", "121", "1"]


def _stored_d1(conn: psycopg.Connection, ticker: str) -> list[tuple[Any, ...]]:
    return [
        (ts, float(o), float(h), float(low), float(c), v)
        for ts, o, h, low, c, v in _stored(conn, ticker, "d1")
    ]


def _unchanged(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    conn.commit()
    return conn.execute(
        """SELECT m.universe, s.ticker FROM universe_members m JOIN symbols s ON s.id = m.symbol_id
           ORDER BY 1, 2"""
    ).fetchall()


@pytest.mark.slow  # ~16 s of commands; CI's slow suite runs it
def test_bad_input_changes_nothing(
    env: dict[str, str], conn: psycopg.Connection, tmp_path: Path
) -> None:
    assert run_cli("universe", "set", "keep", "--symbols", "AAPL,MSFT", env=env).returncode == 0
    before = _unchanged(conn)
    assert before == [("keep", "AAPL"), ("keep", "MSFT")]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    bad = tmp_path / "bad.txt"
    bad.write_text("SPY\nnot a ticker\nQQQ\n")
    cases = [
        (["set", "keep", "--file", str(empty)], "[INVALID_SYMBOL]", "lists no ticker symbols"),
        (["set", "keep", "--file", str(bad)], "[INVALID_SYMBOL]", "bad.txt line 2"),
        (["set", "keep", "--symbols", "SPY,b@d"], "[INVALID_SYMBOL]", "'b@d'"),
        (["set", "Bad Name", "--symbols", "SPY"], "[INVALID_UNIVERSE]", "'Bad Name'"),
        (
            ["backfill", "nosuch", "--start", "2026-02-02", "--end", "2026-02-05"],
            "[UNKNOWN_UNIVERSE]",
            "no universe named 'nosuch'",
        ),
    ]
    for args, code, detail in cases:
        result = run_cli("universe", *args, env=env)
        assert result.returncode == 2, (args, result.stderr)
        assert code in result.stderr and detail in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    assert _unchanged(conn) == before
    assert conn.execute("SELECT count(*) FROM symbols").fetchone() == (2,)
    assert conn.execute("SELECT count(*) FROM job_runs").fetchone() == (0,)


def test_polygon_serves_one_member_per_request_through_the_bucket(
    env: dict[str, str], conn: psycopg.Connection, emulator: str
) -> None:
    assert run_cli("universe", "set", "core", "--symbols", "SPY,QQQ,AAPL", env=env).returncode == 0
    reset_emulator(emulator)
    first, last = date(2026, 2, 9), date(2026, 2, 13)
    result = run_cli(
        "universe", "backfill", "core", "--start", first.isoformat(), "--end", last.isoformat(),
        "--provider", "polygon", env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # m15: one window of 5 sessions per member, one member per Polygon request; d1: one
    # range request per member (3 < 5 grouped requests, one per session). Every request a
    # token of the shared PostgreSQL bucket.
    assert emulator_requests(emulator, "polygon") == 6
    assert emulator_requests(emulator, "alpaca") == 0
    assert conn.execute(
        "SELECT count(*) FROM rate_grants WHERE provider = 'polygon'"
    ).fetchone() == (6,)
    assert "1 run, 5 day partition(s) x 3 asset(s), 3 member(s), 390 m15, " in result.stderr
    assert (
        # Feb 9-13 is the week of Feb 9 (one w1 bar per member); February's first session
        # (Feb 2) has no d1 bar: no mo1.
        ", 15 d1 and 3 w1/mo1 bars written, 6 request(s): m15 3 (3 planned), d1 3 (3 planned, "
        "polygon per-symbol)" in result.stderr
    )
    assert _stored_d1(conn, "SPY") == [
        row[:6] for row in _official("SPY", "2026-02-09", "2026-02-13")
    ]
    expected = regular_m15("SPY", first, last)
    assert _stored(conn, "SPY", "m15") == list(
        expected.select("ts", "open", "high", "low", "close", "volume").iter_rows()
    )
