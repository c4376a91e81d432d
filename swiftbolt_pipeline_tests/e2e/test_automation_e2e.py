"""With `swiftbolt dev` running, adding a symbol to the watchlist is all it takes: the sensors
make it a partition and backfill its window through the daemon, with no click in the UI."""

from __future__ import annotations

import json
import time
from datetime import date
from pathlib import Path

import psycopg
import pytest

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline_tests.e2e.cli_runner import run_cli
from swiftbolt_pipeline_tests.e2e.test_cli_dev import DevServer, dev_server

TODAY = date(2026, 3, 20)  # the tests' pinned clock
# The gap sensor's runs (the daily gap sensor fetches the symbol's official d1 years beside).
RUNS_OF_SPY = (
    '{ runsOrError(filter: {tags: [{key: "swiftbolt/symbol", value: "SPY"}, '
    '{key: "swiftbolt/trigger", value: "coverage_gap_sensor"}]}) '
    "{ ... on Runs { results { status } } } }"
)
BACKFILLS = """{ partitionBackfillsOrError { ... on PartitionBackfills { results {
    id status isAssetBackfill partitionNames tags { key value } runs { status } } } } }"""


def _backfills(server: DevServer, symbol: str, trigger: str = "coverage_gap_sensor") -> list[dict]:
    """The backfills of `symbol` requested by the sensor `trigger`, newest first."""
    results = server.graphql(BACKFILLS)["partitionBackfillsOrError"]["results"]
    return [
        b
        for b in results
        if {"key": "swiftbolt/symbol", "value": symbol} in b["tags"]
        and {"key": "swiftbolt/trigger", "value": trigger} in b["tags"]
    ]


def _coverage(env: dict[str, str]) -> dict:
    result = run_cli("coverage", "SPY", "--timeframe", "h1", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.slow
def test_watch_add_backfills_the_window_by_itself(
    pipeline_env: dict[str, str], conn: psycopg.Connection, tmp_path: Path
) -> None:
    with dev_server(pipeline_env, tmp_path) as server:
        added = time.monotonic()
        assert (
            run_cli("watch", "add", "SPY", "--window-days", "10", env=pipeline_env).returncode == 0
        )
        seen: list[str] = []
        started_after = None
        report = _coverage(pipeline_env)
        while report["status"] != "coverage_complete":
            seen.append(report["status"])
            if report["status"] == "backfill_running" and started_after is None:
                started_after = time.monotonic() - added
            assert time.monotonic() - added < 180, (seen, server.output()[-3000:])
            time.sleep(3)
            report = _coverage(pipeline_env)

        # Mar 10..20 2026: 9 sessions, today (Mar 20, 12:00 ET) from Tradier up to 11:45.
        assert report["backfill_progress"]["completed_slices"] == 9
        assert report["gaps"] == []
        # h1 is complete; the backfill's run may still be deriving h4 and checking: let it
        # finish.
        deadline = time.monotonic() + 60
        backfills = _backfills(server, "SPY")
        while any(b["status"] == "REQUESTED" for b in backfills):
            assert time.monotonic() < deadline, backfills
            time.sleep(1)
            backfills = _backfills(server, "SPY")
        runs = server.graphql(RUNS_OF_SPY)["runsOrError"]["results"]
        # The daily gap sensor (every 60 s) fetches SPY's official daily years in one
        # backfill of its own.
        daily = _backfills(server, "SPY", "daily_gap_sensor")
        while not daily or any(b["status"] == "REQUESTED" for b in daily):
            assert time.monotonic() < deadline + 120, daily
            time.sleep(1)
            daily = _backfills(server, "SPY", "daily_gap_sensor")
    assert [(b["status"], b["runs"]) for b in daily] == [
        ("COMPLETED_SUCCESS", [{"status": "SUCCESS"}])
    ]
    # One Dagster backfill (listed on the UI's Backfills page), requested by the gap sensor,
    # for the whole window, made of one run (not one per day).
    window = [f"{day}|SPY" for day in calendar.sessions_between(date(2026, 3, 10), TODAY)]
    assert [
        (b["isAssetBackfill"], b["status"], sorted(b["partitionNames"]), b["runs"])
        for b in backfills
    ] == [(True, "COMPLETED_SUCCESS", window, [{"status": "SUCCESS"}])]
    assert {"key": "swiftbolt/trigger", "value": "coverage_gap_sensor"} in backfills[0]["tags"]
    assert [r["status"] for r in runs] == ["SUCCESS"]
    rows = conn.execute(
        """SELECT provider, is_intraday, count(*) FROM ohlc_bars_v2
           WHERE timeframe = 'h1' GROUP BY 1, 2 ORDER BY 1"""
    ).fetchall()
    assert rows == [("polygon", False, 8 * 7), ("tradier", True, 3)]
    # The backfill started within a minute of `watch add` (sensor ticks every 15 s).
    assert started_after is None or started_after < 60


@pytest.mark.slow
def test_a_deleted_week_is_refilled_in_one_run(
    pipeline_env: dict[str, str], conn: psycopg.Connection, tmp_path: Path
) -> None:
    assert run_cli("watch", "add", "QQQ", "--window-days", "14", env=pipeline_env).returncode == 0
    query = (
        '{ runsOrError(filter: {tags: [{key: "swiftbolt/symbol", value: "QQQ"}, '
        '{key: "swiftbolt/trigger", value: "coverage_gap_sensor"}]}) '
        "{ ... on Runs { results { status tags { key value } } } } }"
    )

    def finished_runs(server) -> list[dict]:
        deadline = time.monotonic() + 180
        while True:
            runs = server.graphql(query)["runsOrError"]["results"]
            if runs and all(r["status"] in ("SUCCESS", "FAILURE") for r in runs):
                return runs
            assert time.monotonic() < deadline, runs
            time.sleep(1)

    with dev_server(pipeline_env, tmp_path) as server:
        assert len(finished_runs(server)) == 1
        # Lose the week of 2026-03-09 .. 03-13 (all timeframes), as an accident would.
        conn.execute(
            """DELETE FROM ohlc_bars_v2 WHERE ts >= '2026-03-09 04:00+00'
               AND ts < '2026-03-14 04:00+00'"""
        )
        conn.commit()
        assert _coverage_of("QQQ", pipeline_env)["gaps"] == [
            {"start": "2026-03-09", "end": "2026-03-13", "sessions": 5}
        ]
        deadline = time.monotonic() + 120
        while len(runs := server.graphql(query)["runsOrError"]["results"]) < 2:
            assert time.monotonic() < deadline, runs
            time.sleep(1)
        runs = finished_runs(server)
    assert [r["status"] for r in runs] == ["SUCCESS", "SUCCESS"]
    refill = {t["key"]: t["value"] for t in runs[0]["tags"]}  # newest first
    assert "dagster/backfill" in refill  # each run is its sensor-requested backfill's only run
    assert refill["dagster/asset_partition_range_start"] == "2026-03-09|QQQ"
    assert refill["dagster/asset_partition_range_end"] == "2026-03-13|QQQ"
    assert _coverage_of("QQQ", pipeline_env)["status"] == "coverage_complete"


def _coverage_of(symbol: str, env: dict[str, str]) -> dict:
    result = run_cli("coverage", symbol, "--timeframe", "h1", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
