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
