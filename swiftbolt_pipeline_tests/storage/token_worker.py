"""Run in spawned processes by test_ratelimit: hammer `take_token` for a short real time.

Kept import-light (no polars, no pytest) so that spawning is quick."""

from __future__ import annotations

import time
from typing import Any


def hammer(url: str, provider: str, start: Any, seconds: float, results: Any) -> None:
    import psycopg

    granted = 0
    asked = 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT 1")
        start.wait(60)  # a barrier: every worker connected, then all go at once
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            row = conn.execute("SELECT take_token(%s)", (provider,)).fetchone()
            asked += 1
            if row and row[0]:
                granted += 1
    results.put((granted, asked))


def request_loop(
    url: str, emulator: str, api_key: str, start: Any, seconds: float, results: Any
) -> None:
    """A fetching worker: a token from the shared limiter, then one Polygon request, for
    `seconds`; reports (accepted, rejected with 429, other answers)."""
    import httpx
    import psycopg

    from swiftbolt_pipeline.core.clock import SystemClock
    from swiftbolt_pipeline.storage.ratelimit import PostgresTokenLimiter

    conn = psycopg.connect(url, autocommit=True)
    limiter = PostgresTokenLimiter(conn, "polygon", SystemClock())
    accepted = rejected = other = 0
    path = "/v2/aggs/ticker/SPY/range/15/minute/2026-03-02/2026-03-02"
    with httpx.Client(base_url=emulator, headers={"Authorization": f"Bearer {api_key}"}) as http:
        http.get("/_emulator/stats")  # connected before the start, like a warm worker
        start.wait(60)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            limiter.acquire()
            if time.monotonic() >= deadline:
                break  # the token came too late to count
            status = http.get(path).status_code
            accepted += status == 200
            rejected += status == 429
            other += status not in (200, 429)
    conn.close()
    results.put((accepted, rejected, other))
