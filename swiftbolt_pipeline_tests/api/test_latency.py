"""`measure_api_latency` (for the benchmark report): one year of h1 bars over real HTTP."""

from __future__ import annotations

import contextlib

import dagster as dg
import psycopg

from swiftbolt_pipeline.bench.latency import measure_api_latency


def test_measure_api_latency_reads_a_year_of_h1_bars(
    pipeline_env: dict[str, str], conn: psycopg.Connection, instance: dg.DagsterInstance
) -> None:
    report = measure_api_latency(
        pipeline_env["DATABASE_URL"],
        requests=20,
        concurrency=(1, 4),
        instance_factory=lambda: contextlib.nullcontext(instance),
    )
    stored = conn.execute(
        """SELECT count(*) FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
           WHERE s.ticker = 'BENCH' AND b.timeframe = 'h1'"""
    ).fetchone()
    assert stored is not None and report.bars_per_response == stored[0] > 1700
    assert [(e.endpoint, e.concurrency) for e in report.endpoints] == [
        ("/v1/bars", 1),
        ("/v1/coverage", 1),
        ("/v1/bars", 4),
        ("/v1/coverage", 4),
    ]
    for endpoint in report.endpoints:
        assert endpoint.requests == 20
        assert 0 < endpoint.p50_ms <= endpoint.p99_ms < 2000  # generous: shared CI machines
        assert endpoint.requests_per_s > 0
    # The bench symbol never joins the watchlist.
    assert conn.execute("SELECT is_active FROM symbols WHERE ticker = 'BENCH'").fetchone() == (
        False,
    )
    assert set(report.to_json()) == {"symbol", "bars_per_response", "endpoints"}
