"""A backfill killed with SIGKILL leaves whole partitions only and resumes where it stopped."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import date
from pathlib import Path

import httpx
import psycopg

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.storage.ratelimit import set_limits
from swiftbolt_pipeline_tests.e2e.cli_runner import SWIFTBOLT, run_cli

START, END = "2024-03-20", "2026-03-19"  # two years: 10 planned Polygon requests


def _windows_done(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM job_runs WHERE status = 'succeeded'").fetchone()
    conn.commit()
    return row[0] if row else 0


def _per_day(conn: psycopg.Connection) -> dict:
    rows = conn.execute(
        """SELECT (ts AT TIME ZONE 'America/New_York')::date, count(*) FROM ohlc_bars_v2
           WHERE timeframe = 'm15' GROUP BY 1"""
    ).fetchall()
    conn.commit()
    return dict(rows)


def test_sigkill_mid_backfill_then_resume(
    pipeline_env: dict[str, str], conn: psycopg.Connection, emulator: str, tmp_path: Path
) -> None:
    # One request per second, so the kill lands between windows.
    set_limits(conn, "polygon", capacity=1, refill_per_min=60, window_s=1.0)
    conn.commit()
    httpx.post(f"{emulator}/_emulator/reset").raise_for_status()
    env = {**os.environ, **pipeline_env}
    args = ["backfill", "--symbols", "SPY", "--start", START, "--end", END]
    log = tmp_path / "killed.log"
    with log.open("w") as sink:
        proc = subprocess.Popen([SWIFTBOLT, *args], env=env, stdout=sink, stderr=sink)
    try:
        deadline = time.monotonic() + 120
        while _windows_done(conn) < 3:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "backfill made no progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    sessions = calendar.sessions_between(date.fromisoformat(START), date.fromisoformat(END))
    expected = {d: 14 if calendar.session(d).is_early_close else 26 for d in sessions}

    # Only whole partitions: every stored day is complete, and some days are still missing.
    stored = _per_day(conn)
    assert stored and all(count == expected[day] for day, count in stored.items())
    assert len(stored) < len(sessions)
    checkpoint = conn.execute(
        "SELECT range_start, last_ts FROM provider_checkpoints WHERE symbol = 'SPY'"
    ).fetchone()
    assert checkpoint is not None
    assert max(stored) == calendar.exchange_date(checkpoint[1])
    done_before = _windows_done(conn)

    before = httpx.get(f"{emulator}/_emulator/stats").json()["requests"]["polygon"]
    result = run_cli(*args, env=pipeline_env)
    assert result.returncode == 0, result.stderr
    after = httpx.get(f"{emulator}/_emulator/stats").json()["requests"]["polygon"]
    # The re-run asked only for the windows the killed run had not committed.
    assert after - before == 10 - done_before
    assert _per_day(conn) == expected
    assert conn.execute("SELECT count(*) FROM provider_checkpoints").fetchone() == (0,)
