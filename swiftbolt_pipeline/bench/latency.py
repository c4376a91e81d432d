"""Latency and throughput of `/v1/bars` and `/v1/coverage` over real HTTP (uvicorn on a free
local port), for the benchmark report: one year of h1 bars for one symbol, N requests each."""

from __future__ import annotations

import contextlib
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import httpx
import polars as pl
import psycopg

from swiftbolt_pipeline.api.app import InstanceFactory, create_app
from swiftbolt_pipeline.background_server import serving_in_thread
from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.models import BAR_SCHEMA, Timeframe
from swiftbolt_pipeline.storage import bars as bar_store
from swiftbolt_pipeline.storage import watchlist


@dataclass(frozen=True)
class EndpointLatency:
    endpoint: str
    requests: int
    concurrency: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    requests_per_s: float
    response_bytes: int

    def to_json(self) -> dict[str, object]:
        return {
            "endpoint": self.endpoint,
            "requests": self.requests,
            "concurrency": self.concurrency,
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "mean_ms": round(self.mean_ms, 2),
            "requests_per_s": round(self.requests_per_s, 1),
            "response_bytes": self.response_bytes,
        }


@dataclass(frozen=True)
class LatencyReport:
    symbol: str
    bars_per_response: int
    endpoints: list[EndpointLatency]

    def to_json(self) -> dict[str, object]:
        return {
            "symbol": self.symbol,
            "bars_per_response": self.bars_per_response,
            "endpoints": [e.to_json() for e in self.endpoints],
        }


def seed_h1_year(conn: psycopg.Connection, symbol: str, last: date) -> tuple[datetime, datetime]:
    """One year of synthetic h1 bars for `symbol` (an inactive symbols row, so it never joins
    the watchlist) through the store's COPY writer. Returns the (first, last) bar start."""
    days = calendar.sessions_between(last - timedelta(days=365), last)
    rows: list[tuple[object, ...]] = []
    price = 100.0
    for day in days:
        session = calendar.session(day)
        ts = session.open
        while ts < session.close:
            price *= 1.0005 if len(rows) % 3 else 0.999
            rows.append((ts, price, price * 1.002, price * 0.998, price * 1.001, 10_000, price,
                         100))  # fmt: skip
            ts += timedelta(hours=1)
    frame = pl.DataFrame(rows, schema=BAR_SCHEMA, orient="row")
    symbol_id = watchlist.ensure(conn, [symbol])[symbol]
    bar_store.replace_partitions(
        conn,
        symbol_id=symbol_id,
        timeframe=Timeframe.H1,
        days=days,
        bars=frame,
        provider="polygon",
        is_intraday=False,
    )
    conn.commit()
    first, last_ts = rows[0][0], rows[-1][0]
    assert isinstance(first, datetime) and isinstance(last_ts, datetime)
    return first, last_ts


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def _load(
    base_url: str, path: str, params: dict[str, str], requests: int, concurrency: int
) -> EndpointLatency:
    latencies: list[float] = []
    sizes: list[int] = []
    lock = threading.Lock()

    def worker(count: int) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            client.get(path, params=params).raise_for_status()  # warm the connection
            for _ in range(count):
                started = time.perf_counter()
                response = client.get(path, params=params)
                elapsed = time.perf_counter() - started
                response.raise_for_status()
                with lock:
                    latencies.append(elapsed * 1000)
                    sizes.append(len(response.content))

    shares = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for future in [pool.submit(worker, n) for n in shares if n]:
            future.result()
    wall = time.perf_counter() - started
    return EndpointLatency(
        endpoint=path,
        requests=len(latencies),
        concurrency=concurrency,
        p50_ms=_percentile(latencies, 0.50),
        p99_ms=_percentile(latencies, 0.99),
        mean_ms=statistics.fmean(latencies),
        requests_per_s=len(latencies) / wall,
        response_bytes=max(sizes),
    )


def measure_api_latency(
    database_url: str,
    *,
    symbol: str = "BENCH",
    requests: int = 200,
    concurrency: tuple[int, ...] = (1, 8),
    instance_factory: InstanceFactory | None = None,
    settings_factory: Callable[[], Settings] = Settings.from_env,
    seed: bool = True,
    base_url: str | None = None,
) -> LatencyReport:
    """p50/p99 and requests/second of `GET /v1/bars` (one year of h1 bars of `symbol`) and
    `GET /v1/coverage` (its h1 coverage over 365 days), `requests` each, at every level of
    `concurrency` (parallel keep-alive clients), over real HTTP against uvicorn.

    With `seed`, first writes one year of synthetic h1 bars for `symbol` (an inactive,
    never-watched symbols row) into `database_url`: use a scratch or benchmark database.
    `instance_factory` gives the Dagster instance coverage consults for in-flight runs
    (None: coverage without it). With `base_url`, load that running server (e.g. `swiftbolt
    serve` in another process, over the same database) instead of starting one in a thread,
    whose load generator then shares the server's interpreter."""
    settings = settings_factory()
    with psycopg.connect(database_url) as conn:
        if seed:
            first, last = seed_h1_year(conn, symbol, settings.today)
        else:
            first = datetime.combine(settings.today - timedelta(days=365), datetime.min.time(), UTC)
            last = datetime.combine(settings.today, datetime.max.time(), UTC)
    bars_params = {
        "symbol": symbol,
        "timeframe": "h1",
        "start": first.isoformat(),
        "end": last.isoformat(),
    }
    coverage_params = {"symbol": symbol, "timeframe": "h1", "window_days": "365"}
    results: list[EndpointLatency] = []
    with contextlib.ExitStack() as stack:
        if base_url is None:
            app = create_app(database_url, instance_factory, settings_factory, None)
            base_url = stack.enter_context(serving_in_thread(app, name="swiftbolt-api-bench"))
        bars = httpx.get(f"{base_url}/v1/bars", params=bars_params, timeout=30)
        bars.raise_for_status()
        for level in concurrency:
            results.append(_load(base_url, "/v1/bars", bars_params, requests, level))
            results.append(_load(base_url, "/v1/coverage", coverage_params, requests, level))
    return LatencyReport(symbol, len(bars.json()["bars"]), results)


if __name__ == "__main__":  # pragma: no cover - manual use: DATABASE_URL=... python -m ...
    import json
    import os

    print(json.dumps(measure_api_latency(os.environ["DATABASE_URL"]).to_json(), indent=2))
