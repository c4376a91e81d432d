"""The audit catches a wrong bar, a missing session, a provisional row, rows of an unconfigured
provider and a blown request budget: an exact archive is written from the truth with plain
SQL, then corrupted on purpose."""

from __future__ import annotations

from datetime import UTC, date, datetime

import psycopg
import pytest

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.emulator.data import BarStore
from swiftbolt_pipeline.soak.audit import (
    EmulatorCounters,
    facts_of,
    past_sessions,
    request_floor,
    run_audit,
    window_of,
)
from swiftbolt_pipeline.soak.plan import SoakPlan, build_plan
from swiftbolt_pipeline.soak.truth import TIMEFRAMES, session_truth
from swiftbolt_pipeline.storage import watchlist


@pytest.fixture(scope="module")
def plan() -> SoakPlan:
    return build_plan(date(2026, 12, 7), sessions=3, symbols=7, seed=3)


def _write_truth(conn: psycopg.Connection, plan: SoakPlan, store: BarStore) -> None:
    end_day = calendar.exchange_date(plan.end)
    for spec in plan.symbols:
        (row,) = watchlist.add(conn, [spec.ticker], window_days=spec.window_days)
        days = window_of(plan, spec, end_day)
        frames = session_truth(store, spec.ticker, days, facts_of(plan, spec))
        for tf in TIMEFRAMES:
            rows = [
                (row.id, tf, datetime.fromtimestamp(r["ts_ms"] / 1000, UTC), r["open"],
                 r["high"], r["low"], r["close"], r["volume"], r["vwap"], r["trade_count"])
                for r in frames[tf].iter_rows(named=True)
            ]  # fmt: skip
            with conn.cursor() as cur:
                cur.executemany(
                    """INSERT INTO ohlc_bars_v2 (symbol_id, timeframe, ts, open, high, low,
                           close, volume, vwap, trade_count, provider)
                       VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'polygon')""",
                    rows,
                )
    conn.commit()


def _counters(plan: SoakPlan, store: BarStore, extra: int = 0) -> EmulatorCounters:
    floors = request_floor(plan, store)
    by_ticker = {t: f["floor"] for t, f in floors.items()}
    return EmulatorCounters(
        {"polygon": sum(by_ticker.values()) + extra, "tradier": 0},
        {"polygon": 0, "tradier": 0},
        {"polygon": by_ticker},
    )


def _failed(report) -> dict[str, str]:
    return {c.name: c.detail for c in report.checks if not c.passed}


def test_an_exact_archive_passes_and_each_corruption_is_caught(
    conn: psycopg.Connection, plan: SoakPlan
) -> None:
    store = BarStore()
    _write_truth(conn, plan, store)
    clean = run_audit(conn, plan, _counters(plan, store), store)
    assert clean.passed, _failed(clean)
    normal = next(s for s in plan.symbols if s.role == "normal")
    day = past_sessions(plan)[-2]
    row = conn.execute("SELECT id FROM symbols WHERE ticker = %s", (normal.ticker,)).fetchone()
    assert row is not None
    sid = row[0]

    # A wrong bar: one h1 close off by a cent.
    conn.execute(
        """UPDATE ohlc_bars_v2 SET close = close + 0.01 WHERE symbol_id = %s AND timeframe = 'h1'
           AND ts = (SELECT min(ts) FROM ohlc_bars_v2 WHERE symbol_id = %s AND timeframe = 'h1'
                     AND (ts AT TIME ZONE 'America/New_York')::date = %s)""",
        (sid, sid, day),
    )
    # A missing session: h4 of that day deleted.
    conn.execute(
        """DELETE FROM ohlc_bars_v2 WHERE symbol_id = %s AND timeframe = 'h4'
           AND (ts AT TIME ZONE 'America/New_York')::date = %s""",
        (sid, day),
    )
    # A provisional row left in a past session, from Tradier (unconfigured after the drop).
    last = past_sessions(plan)[-1]
    conn.execute(
        """UPDATE ohlc_bars_v2 SET is_intraday = true, provider = 'tradier'
           WHERE symbol_id = %s AND timeframe = 'm15'
           AND (ts AT TIME ZONE 'America/New_York')::date = %s""",
        (sid, last),
    )
    conn.commit()
    report = run_audit(conn, plan, _counters(plan, store, extra=10_000), store)
    failed = _failed(report)
    assert set(failed) == {
        "wrong past sessions",
        "missing past sessions",
        "provisional rows in past sessions",
        "rows from an unconfigured provider",
        "polygon requests <= 1.2 x floor + 2 per dead symbol-day",
    }
    assert f"{normal.ticker}/h1: {day} close differs" in failed["wrong past sessions"]
    assert f"{normal.ticker}/h4: {day} missing" in failed["missing past sessions"]
    assert f"{normal.ticker}/m15: {last} provisional" in failed["provisional rows in past sessions"]
    assert f"{normal.ticker} m15 {last} tradier" in failed["rows from an unconfigured provider"]
    cell = next(c for c in report.cells if c.symbol == normal.ticker and c.timeframe == "h1")
    assert (cell.wrong, cell.missing, cell.provisional) == (1, 0, 0)
