"""A backfill killed with SIGKILL leaves whole partitions only and resumes where it stopped."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import time
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.storage.ratelimit import set_limits
from swiftbolt_pipeline_tests.e2e.cli_runner import SWIFTBOLT, run_cli
from swiftbolt_pipeline_tests.reliability.helpers import served_bars

START, END = "2024-03-20", "2026-03-19"  # two years: 10 planned Polygon requests


def _windows_done(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM job_runs WHERE status = 'success'").fetchone()
    conn.commit()
    return row[0] if row else 0


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _per_day(conn: psycopg.Connection) -> dict:
    rows = conn.execute(
        """SELECT (ts AT TIME ZONE 'America/New_York')::date, count(*) FROM ohlc_bars_v2
           WHERE timeframe = 'm15' GROUP BY 1"""
    ).fetchall()
    conn.commit()
    return dict(rows)


@pytest.mark.slow
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
    # The re-run asked only for the windows the killed run had not committed, then the one
    # request of the official daily years (the killed run never reached them).
    assert after - before == 10 - done_before + 1
    assert _per_day(conn) == expected
    assert conn.execute("SELECT count(*) FROM provider_checkpoints").fetchone() == (0,)


@pytest.mark.slow  # about 20 s: a real SIGKILL mid-pagination and a second process
def test_sigkill_inside_a_paginated_window_resumes_after_the_last_stored_session(
    pipeline_env: dict[str, str], conn: psycopg.Connection, emulator: str, tmp_path: Path
) -> None:
    """A server that pages a window in small pages: what each page brings is committed, so a
    fetch killed mid-window asks only for the rest (plus the one partly served session)."""
    first, last = "2026-01-05", "2026-03-06"  # one planned window of real data
    sessions = calendar.sessions_between(date.fromisoformat(first), date.fromisoformat(last))
    page_size = 50
    httpx.post(f"{emulator}/_emulator/reset").raise_for_status()
    served = served_bars(emulator, "SPY", sessions[0], sessions[-1])
    pages = math.ceil(len(served) / page_size)
    assert pages > 20
    httpx.put(f"{emulator}/_emulator/config", json={"page_size": page_size}).raise_for_status()
    # Two requests a second (the window takes ~15 s), so the kill lands mid-window even on a
    # loaded machine.
    set_limits(conn, "polygon", capacity=1, refill_per_min=120, window_s=1.0)
    conn.commit()
    env = {**os.environ, **pipeline_env}
    args = ["backfill", "--symbols", "SPY", "--start", first, "--end", last, "--timeframes", "m15"]
    log = tmp_path / "killed.log"
    try:
        with log.open("w") as sink:
            proc = subprocess.Popen([SWIFTBOLT, *args], env=env, stdout=sink, stderr=sink)
        try:
            deadline = time.monotonic() + 120
            while len(_per_day(conn)) < len(sessions) // 3:
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "backfill made no progress"
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        finally:
            if proc.poll() is None:
                proc.kill()
        killed_after = httpx.get(f"{emulator}/_emulator/stats").json()["requests"]["polygon"]
        stored = _per_day(conn)
        expected = {d: 14 if calendar.session(d).is_early_close else 26 for d in sessions}
        assert all(count == expected[day] for day, count in stored.items())  # whole sessions
        assert len(stored) < len(sessions)

        result = run_cli(*args, env=pipeline_env)
        assert result.returncode == 0, result.stderr
        total = httpx.get(f"{emulator}/_emulator/stats").json()["requests"]["polygon"]
    finally:
        httpx.put(f"{emulator}/_emulator/config", json={"page_size": None}).raise_for_status()
    rerun = total - killed_after
    # Resumed after the stored sessions: the rest of the window, at most one page again for
    # the session the kill cut in half (and one for the page boundary it starts at).
    remaining = math.ceil(
        sum(1 for bar in served if calendar.exchange_date(_utc(bar["t"])) > max(stored)) / page_size
    )
    assert rerun <= remaining + 2 < pages
    assert _per_day(conn) == expected
    # The re-run freed the killed run's pool slot and marked that run failed.
    assert conn.execute(
        "SELECT count(*) FROM dagster.concurrency_slots WHERE run_id IS NOT NULL"
    ).fetchone() == (0,)
    assert conn.execute(
        "SELECT count(*) FROM dagster.runs WHERE status IN ('STARTED', 'STARTING')"
    ).fetchone() == (0,)
    assert conn.execute("SELECT count(*) FROM provider_checkpoints").fetchone() == (0,)
