"""The chart app's loop, for real: with `swiftbolt dev` and `swiftbolt serve` running, polling
POST /v1/ensure-coverage for a new symbol walks from gaps_detected to coverage_complete while
the daemon fills the window, and GET /v1/bars returns exactly the bars in the database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from swiftbolt_pipeline_tests.e2e.cli_runner import PASSTHROUGH, SWIFTBOLT
from swiftbolt_pipeline_tests.e2e.test_cli_dev import _free_port, dev_server


@contextlib.contextmanager
def api_server(env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    full_env = {k: os.environ[k] for k in PASSTHROUGH if k in os.environ} | env
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            # The chart app writes (ensure-coverage) without a token, as a local demo does.
            [SWIFTBOLT, "serve", "--port", str(port), "--insecure-no-token"],
            env=full_env,
            stdout=out,
            stderr=out,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                httpx.get(f"{base}/openapi.json", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)


@pytest.mark.slow
def test_polling_ensure_coverage_reaches_complete_and_bars_match(
    pipeline_env: dict[str, str], conn: psycopg.Connection, tmp_path: Path
) -> None:
    request = {"symbol": "qqq", "timeframe": "h1", "window_days": 14}
    with dev_server(pipeline_env, tmp_path) as _dev, api_server(pipeline_env, tmp_path) as base:
        statuses: list[str] = []
        progress: list[float] = []
        deadline = time.monotonic() + 240
        while True:
            body = httpx.post(f"{base}/v1/ensure-coverage", json=request, timeout=30).json()
            statuses.append(body["status"])
            progress.append(body["backfill_progress"]["progress_percent"])
            if body["status"] == "coverage_complete":
                break
            assert time.monotonic() < deadline, (statuses, body)
            time.sleep(2)
        bars = httpx.get(
            f"{base}/v1/bars",
            params={
                "symbol": "QQQ",
                "timeframe": "h1",
                "start": "2026-03-01T00:00:00Z",
                "end": "2026-03-21T00:00:00Z",
            },
            timeout=30,
        ).json()["bars"]

    assert statuses[0] == "gaps_detected"
    assert progress == sorted(progress) and progress[-1] == 100.0
    assert body["gaps"] == []
    # 2026-03-06 .. 2026-03-20: 11 sessions, today's from Tradier up to 12:00.
    assert body["backfill_progress"]["total_slices"] == 11
    stored = conn.execute(
        """SELECT ts, open, high, low, close, volume, provider, is_intraday
           FROM get_chart_data_v2('QQQ', 'h1', '2026-03-01', '2026-03-21')"""
    ).fetchall()
    assert len(bars) == len(stored) == 10 * 7 + 3
    assert [
        (b["open"], b["high"], b["low"], b["close"], b["volume"], b["provider"], b["is_intraday"])
        for b in bars
    ] == [row[1:] for row in stored]
    assert [b["ts"] for b in bars] == [row[0].isoformat().replace("+00:00", "Z") for row in stored]
