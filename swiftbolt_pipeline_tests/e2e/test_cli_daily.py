"""`swiftbolt backfill` of the daily timeframes end to end: the CLI against the emulator over
HTTP, then the API's `/v1/bars` reading what it stored."""

from __future__ import annotations

import psycopg
import pytest

from swiftbolt_pipeline_tests.api.conftest import BASE_URL, TestClient, make_app
from swiftbolt_pipeline_tests.defs.test_daily_assets import _official
from swiftbolt_pipeline_tests.e2e.cli_runner import run_cli
from swiftbolt_pipeline_tests.reliability.helpers import emulator_requests, reset_emulator


@pytest.mark.slow
def test_five_years_of_d1_w1_mo1_from_the_cli_in_two_requests_at_most(
    pipeline_env: dict[str, str], emulator: str, conn: psycopg.Connection
) -> None:
    reset_emulator(emulator)
    args = ["--symbols", "SPY", "--timeframes", "d1,w1,mo1"]
    done = run_cli(
        "backfill", *args, "--start", "2021-03-20", "--end", "2026-03-19", env=pipeline_env
    )
    assert done.returncode == 0, done.stderr
    assert "Daily: 1 run(s), 6 year partition(s)" in done.stderr
    assert emulator_requests(emulator) <= 2

    app = make_app(pipeline_env["DATABASE_URL"], None)
    with TestClient(app, base_url=BASE_URL) as client:
        answer = client.get(
            "/v1/bars",
            params={"symbol": "SPY", "timeframe": "d1", "start": "2021-01-01T00:00:00Z",
                    "end": "2026-03-20T00:00:00Z"},
        )  # fmt: skip
        assert answer.status_code == 200, answer.text
        bars = answer.json()["bars"]
        expected = _official("SPY", "2021-03-22", "2026-03-19")
        assert [
            (b["open"], b["high"], b["low"], b["close"], b["volume"], b["trade_count"])
            for b in bars
        ] == [(*row[1:6], row[7]) for row in expected]
        weekly = client.get(
            "/v1/bars",
            params={"symbol": "SPY", "timeframe": "w1", "start": "2021-01-01T00:00:00Z",
                    "end": "2026-03-20T00:00:00Z"},
        )  # fmt: skip
        assert weekly.status_code == 200, weekly.text
        assert weekly.json()["bars"][0]["ts"].startswith("2021-03-22T13:30")

    # Before the daily depth: refused, nothing changes.
    refused = run_cli(
        "backfill", *args, "--start", "2021-03-19", "--end", "2021-04-01", env=pipeline_env
    )
    assert refused.returncode != 0
    assert "INVALID_RANGE" in refused.stderr and "SWIFTBOLT_DAILY_YEARS" in refused.stderr
