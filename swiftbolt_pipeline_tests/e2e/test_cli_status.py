"""`swiftbolt status` end to end: the installed command over a real PostgreSQL and Dagster
instance, after a real backfill through the emulator."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from swiftbolt_pipeline.defs.jobs import BARS_JOB
from swiftbolt_pipeline.names import range_tags
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline_tests.e2e.cli_runner import run_cli

# With SWIFTBOLT_NOW 2026-03-20, a 30-day window holds the 23 sessions 2026-02-18..2026-03-20.
WINDOW_SESSIONS = 23
START, END = "2026-02-18", "2026-03-06"  # 13 sessions of real data inside it
BACKFILLED = 13


@pytest.fixture
def env(pipeline_env: dict[str, str]) -> dict[str, str]:
    return dict(pipeline_env)


def _ok(*args: str, env: dict[str, str]) -> str:
    result = run_cli(*args, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _status(env: dict[str, str]) -> dict[str, dict]:
    return {row["symbol"]: row for row in json.loads(_ok("status", "--json", env=env))}


@pytest.fixture
def dagster_instance(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    """The Dagster instance the CLI uses (its storage in the test database)."""
    _ok("status", env=env)  # lays out DAGSTER_HOME under SWIFTBOLT_HOME
    home = Path(env["SWIFTBOLT_HOME"]) / "dagster"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DATABASE_URL", env["DATABASE_URL"])
    with dg.DagsterInstance.get() as instance:
        yield instance


def test_empty_watchlist(env: dict[str, str]) -> None:
    assert "the watchlist is empty" in _ok("status", env=env)
    assert json.loads(_ok("status", "--json", env=env)) == []


def test_status_summarizes_coverage_per_symbol_after_a_backfill(env: dict[str, str]) -> None:
    _ok("watch", "add", "SPY", "--window-days", "30", env=env)
    _ok("watch", "add", "QQQ", "--window-days", "30", "--priority", "5", env=env)
    _ok("backfill", "--symbols", "SPY", "--start", START, "--end", END,
        "--timeframes", "m15,d1", env=env)  # fmt: skip

    rows = _status(env)
    assert list(rows) == ["QQQ", "SPY"]  # watchlist order: priority first
    spy, qqq = rows["SPY"], rows["QQQ"]
    assert spy["window_days"] == 30
    assert spy["m15"] == {
        "status": "gaps_detected",
        "covered_sessions": BACKFILLED,
        "expected_sessions": WINDOW_SESSIONS,
        "progress_percent": round(100 * BACKFILLED / WINDOW_SESSIONS, 1),
        "bars": BACKFILLED * 26,
        "gaps": 1,  # 2026-03-09..2026-03-20
    }
    # The official d1 fills the whole year 2026 (one request): every session of the window
    # but today, whose daily bar exists once it is over.
    assert spy["d1"]["covered_sessions"] == spy["d1"]["expected_sessions"] == WINDOW_SESSIONS - 1
    assert spy["d1"]["bars"] == WINDOW_SESSIONS - 1
    assert spy["last_bar"] == "2026-03-06T20:45:00+00:00"  # 15:45 ET, the last m15 bar
    assert spy["gaps"] == 1
    assert spy["runs_in_flight"] == {"running": 0, "queued": 0}
    assert qqq["m15"]["covered_sessions"] == 0
    assert qqq["m15"]["expected_sessions"] == WINDOW_SESSIONS
    assert qqq["last_bar"] is None

    # The same numbers as `swiftbolt coverage` (one implementation behind both).
    report = json.loads(_ok("coverage", "SPY", "--timeframe", "m15", "--json", env=env))
    progress = report["backfill_progress"]
    assert (spy["m15"]["covered_sessions"], spy["m15"]["expected_sessions"]) == (
        progress["completed_slices"],
        progress["total_slices"],
    )
    assert spy["m15"]["gaps"] == len(report["gaps"])

    text = _ok("status", env=env)
    assert "Watchlist: 2 active symbol(s); today 2026-03-20 (SWIFTBOLT_NOW)" in text
    spy_line = next(line for line in text.splitlines() if line.strip().startswith("SPY"))
    assert "30d" in spy_line
    assert f"{BACKFILLED}/{WINDOW_SESSIONS} 56%" in spy_line  # floored: 56.5%
    assert "█" * 11 + "░" * 9 in spy_line  # 13/23 of a 20-cell bar
    assert "2026-03-06 15:45" in spy_line
    qqq_line = next(line for line in text.splitlines() if line.strip().startswith("QQQ"))
    assert f"0/{WINDOW_SESSIONS} 0%" in qqq_line
    assert "░" * 20 in qqq_line
    assert "Runs in flight: 0 running, 0 queued." in text


def test_removed_symbols_only_with_all(env: dict[str, str]) -> None:
    _ok("watch", "add", "SPY", "QQQ", "--window-days", "10", env=env)
    _ok("watch", "remove", "QQQ", env=env)
    assert list(_status(env)) == ["SPY"]
    shown = _ok("status", "--all", env=env)
    assert "QQQ (removed)" in shown
    assert "Watchlist: 1 active symbol(s)" in shown


def test_runs_in_flight_per_symbol(
    env: dict[str, str], dagster_instance: dg.DagsterInstance
) -> None:
    _ok("watch", "add", "DIA", "--window-days", "10", env=env)
    queued = [
        dg.DagsterRun(
            job_name=BARS_JOB,
            run_id=str(uuid.uuid4()),
            status=status,
            tags=range_tags("DIA", "DIA", first, last),
        )
        for status, first, last in [
            (dg.DagsterRunStatus.STARTED, date(2026, 3, 10), date(2026, 3, 12)),
            (dg.DagsterRunStatus.NOT_STARTED, date(2026, 3, 13), date(2026, 3, 19)),
        ]
    ]
    for run in queued:
        dagster_instance.add_run(run)
    try:
        dia = _status(env)["DIA"]
        assert dia["runs_in_flight"] == {"running": 1, "queued": 1}
        assert dia["m15"]["status"] == "backfill_running"
        line = next(
            line for line in _ok("status", env=env).splitlines() if line.strip().startswith("DIA")
        )
        assert "1 running, 1 queued" in line
    finally:
        for run in queued:
            dagster_instance.delete_run(run.run_id)


def test_parked_symbols_are_listed_with_their_reason(env: dict[str, str]) -> None:
    _ok("watch", "add", "SPY", "ZZDEAD", env=env)
    with psycopg.connect(env["DATABASE_URL"]) as conn:
        (dead,) = [s for s in watchlist.list_symbols(conn) if s.ticker == "ZZDEAD"]
        now = datetime(2026, 3, 20, 12, tzinfo=UTC)
        for _ in range(watchlist.PARK_AFTER):
            watchlist.record_outcome(
                conn, dead.id, error_code="SYMBOL_NOT_FOUND", error_message="no bars",
                now=now, retry_after=now,
            )  # fmt: skip
    listed = _ok("watch", "list", env=env)
    assert "SPY" in listed
    parked = [line for line in listed.splitlines() if line.startswith("ZZDEAD")]
    assert parked == [
        "ZZDEAD   since 2026-03-20 12:00: SYMBOL_NOT_FOUND: no bars served 3 times in a row "
        "(last: no bars)"
    ]
    status = _ok("status", env=env)
    assert "Parked ZZDEAD since 2026-03-20 12:00: SYMBOL_NOT_FOUND" in status
    assert [row["symbol"] for row in json.loads(_ok("status", "--json", env=env))] == ["SPY"]
