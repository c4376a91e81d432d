"""The opt-in 5-minute bars through the `swiftbolt` command, as a user runs it."""

from __future__ import annotations

import json

import psycopg
import pytest

from swiftbolt_pipeline_tests.e2e.cli_runner import run_cli

START, END = "2026-03-09", "2026-03-12"  # 4 sessions of real data


@pytest.fixture
def env(pipeline_env: dict[str, str]) -> dict[str, str]:
    return dict(pipeline_env)


def _count(conn: psycopg.Connection, sql: str) -> int:
    row = conn.execute(sql).fetchone()
    conn.commit()
    assert row is not None
    return row[0]


@pytest.mark.slow  # four `swiftbolt` processes and a full default backfill: over a minute
def test_m5_is_opt_in_and_then_backfilled_and_covered(
    env: dict[str, str], conn: psycopg.Connection
) -> None:
    # Asked for a symbol not opted in: a clear error, nothing stored or opted in.
    refused = run_cli(
        "backfill", "--symbols", "SPY", "--start", START, "--end", END, "--timeframes", "m5",
        env=env,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "[INVALID_TIMEFRAME]" in refused.stderr and "watch add SPY --m5" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert _count(conn, "SELECT count(*) FROM ohlc_bars_v2") == 0
    assert _count(conn, "SELECT count(*) FROM symbols WHERE m5") == 0

    added = run_cli("watch", "add", "SPY", "--m5", "--window-days", "12", env=env)
    assert added.returncode == 0, added.stderr
    assert "m5 on" in added.stdout
    assert "on" in run_cli("watch", "list", env=env).stdout.splitlines()[1].split()

    # The default timeframes fill m5 for the opted-in symbol, in the m15 requests' windows.
    done = run_cli("backfill", "--symbols", "SPY", "--start", START, "--end", END, env=env)
    assert done.returncode == 0, done.stderr
    assert "m5: 1 run(s), 4 partition(s), 312 m5 bars written, 1 request(s) (1 planned)." in (
        done.stderr
    )
    assert "1 run(s), 4 partition(s), 104 m15 bars written, 1 request(s)" in done.stderr
    assert _count(conn, "SELECT count(*) FROM ohlc_bars_v2 WHERE timeframe = 'm5'") == 4 * 78

    report = run_cli("coverage", "SPY", "--timeframe", "m5", "--window-days", "12", "--json",
                     env=env)  # fmt: skip
    assert report.returncode == 0, report.stderr
    body = json.loads(report.stdout)
    assert body["timeframe"] == "m5"
    assert body["backfill_progress"]["completed_slices"] == 4
    assert body["backfill_progress"]["bars_written"] == 4 * 78

    # Crypto pairs have no m5.
    pair = run_cli("watch", "add", "X:BTCUSD", "--m5", env=env)
    assert pair.returncode != 0 and "[INVALID_TIMEFRAME]" in pair.stderr
