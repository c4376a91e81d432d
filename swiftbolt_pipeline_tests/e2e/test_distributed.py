"""Several run workers in separate processes (the daemon's DefaultRunLauncher, pool `polygon`
= 2) share one PostgreSQL token bucket: against a server allowing N requests in any rolling
window, none of them ever gets a 429."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from swiftbolt_pipeline_tests.e2e.cli_runner import run_cli
from swiftbolt_pipeline_tests.e2e.test_cli_dev import dev_server
from swiftbolt_pipeline_tests.reliability.helpers import tight_polygon_budget

SYMBOLS = ["AAPL", "MSFT", "NVDA", "QQQ"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_concurrent_workers_share_the_budget_without_429(
    pipeline_env: dict[str, str], conn: psycopg.Connection, emulator: str, tmp_path: Path
) -> None:
    with (
        tight_polygon_budget(emulator, conn) as stats,
        dev_server(pipeline_env, tmp_path) as server,
    ):
        # One year each: ~5 planned requests per symbol, fetched by concurrent workers. Each
        # run also records ~1,000 partition events, minutes on a loaded 2-core machine.
        added = run_cli("watch", "add", *SYMBOLS, "--window-days", "365", env=pipeline_env)
        assert added.returncode == 0, added.stderr
        query = (
            '{ runsOrError(filter: {tags: [{key: "swiftbolt/trigger", '
            'value: "coverage_gap_sensor"}]}) { ... on Runs { results { status runId } } } }'
        )
        deadline = time.monotonic() + 720
        peak_running = 0
        while True:
            runs = server.graphql(query)["runsOrError"]["results"]
            peak_running = max(peak_running, sum(r["status"] == "STARTED" for r in runs))
            if len(runs) >= len(SYMBOLS) and all(
                r["status"] in ("SUCCESS", "FAILURE") for r in runs
            ):
                break
            assert time.monotonic() < deadline, (runs, server.output()[-3000:])
            time.sleep(1)
    assert [r["status"] for r in runs] == ["SUCCESS"] * len(runs)
    assert peak_running >= 2, "the runs never overlapped"
    assert stats["rejected_429"]["polygon"] == 0
    per_symbol = conn.execute(
        """SELECT symbol, sum(actual_cost) FROM job_runs WHERE provider = 'polygon'
           GROUP BY 1 ORDER BY 1"""
    ).fetchall()
    assert [s for s, _ in per_symbol] == sorted(SYMBOLS)
    assert all(cost <= 6 for _, cost in per_symbol), per_symbol
