"""`swiftbolt backfill --provider NAME` end to end: the forced provider serves and is recorded."""

from __future__ import annotations

from datetime import date

import psycopg

from swiftbolt_pipeline_tests.e2e.cli_runner import run_cli
from swiftbolt_pipeline_tests.realdata import regular_m15
from swiftbolt_pipeline_tests.reliability.helpers import emulator_requests, reset_emulator

START, END = "2026-02-09", "2026-03-06"  # 4 weeks of real data, 19 sessions


def test_forced_alpaca_stores_alpaca_bars(
    pipeline_env: dict[str, str], conn: psycopg.Connection, emulator: str
) -> None:
    reset_emulator(emulator)
    result = run_cli(
        "backfill", "--symbols", "SPY,QQQ", "--start", START, "--end", END,
        "--provider", "alpaca", "--timeframes", "m15,h1,h4", env=dict(pipeline_env),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "from alpaca (forced)" in result.stderr
    # Cost summary: both symbols in one run and one Alpaca request (988 bars, under its
    # 10,000-bar page), nothing from Polygon.
    assert "1 run(s), 38 partition(s), 988 m15 bars written, 1 request(s)" in result.stderr
    assert emulator_requests(emulator, "alpaca") == 1
    assert emulator_requests(emulator, "polygon") == 0
    # m15 and what it derives (38 sessions: 7 h1, 2 h4 each), all from Alpaca's bars.
    assert conn.execute("SELECT provider, count(*) FROM ohlc_bars_v2 GROUP BY 1").fetchall() == [
        ("alpaca", 988 + 38 * (7 + 2))
    ]
    assert conn.execute("SELECT DISTINCT provider, status FROM job_runs").fetchall() == [
        ("alpaca", "success")
    ]
    stored = conn.execute(
        """SELECT b.ts, b.open, b.high, b.low, b.close, b.volume
           FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
           WHERE s.ticker = 'SPY' AND b.timeframe = 'm15' ORDER BY b.ts"""
    ).fetchall()
    expected = regular_m15("SPY", date.fromisoformat(START), date.fromisoformat(END))
    assert stored == list(expected.iter_rows())


def test_unknown_provider_is_refused(
    pipeline_env: dict[str, str], conn: psycopg.Connection
) -> None:
    for name in ("nope", "polygon,alpaca"):
        result = run_cli(
            "backfill", "--symbols", "SPY", "--start", START, "--end", END, "--provider", name,
            env=dict(pipeline_env),
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert "[INVALID_PROVIDER]" in result.stderr
        assert "Traceback" not in result.stderr
    assert conn.execute("SELECT count(*) FROM ohlc_bars_v2").fetchone() == (0,)
