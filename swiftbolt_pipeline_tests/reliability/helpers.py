"""Helpers for the reliability suite: a scriptable fake Polygon over real HTTP, in-process
materialization with overridable resources, parallel CLI runs and archive queries."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import dagster as dg
import httpx
import psycopg

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core.models import Provider
from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.defs.resources import PolygonResource
from swiftbolt_pipeline.ingest.history import (
    HistoryTask,
    OpenClient,
    finish_history,
    history_round,
    start_history,
)
from swiftbolt_pipeline.ingest.store import SymbolIngest
from swiftbolt_pipeline.services.launch import RunOutcome, materialize_range, register_symbols
from swiftbolt_pipeline.storage.ratelimit import set_limits
from swiftbolt_pipeline_tests.conftest import EMULATOR_KEY
from swiftbolt_pipeline_tests.e2e.cli_runner import PASSTHROUGH, SWIFTBOLT

# A page is a list of Polygon bars (`{"t","o","h","l","c","v",...}`), an HTTP status to answer
# with, or a raw body (bytes) sent as is.
Page = list[dict[str, Any]] | int | bytes


@dataclass
class FakePolygon:
    """Serves `pages` in order: the first request gets pages[0], whose `next_url` (same host)
    asks for pages[1], and so on, whatever path or range is asked for. Records every request."""

    pages: list[Page] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    url: str = ""
    # The aggregates path asked first: `next_url` continues on it, as Polygon's cursors do.
    path: str = "/v2/aggs/ticker/X/range/15/minute/a/b"

    def body(self, index: int) -> tuple[int, bytes]:
        page = self.pages[index]
        if isinstance(page, int):
            return page, json.dumps({"status": "ERROR", "error": f"HTTP {page}"}).encode()
        if isinstance(page, bytes):
            return 200, page
        payload: dict[str, Any] = {
            "status": "OK",
            "adjusted": True,
            "queryCount": len(page),
            "resultsCount": len(page),
            "results": page,
        }
        if index + 1 < len(self.pages):
            payload["next_url"] = f"{self.url}{self.path}?cursor={index + 1}"
        return 200, json.dumps(payload).encode()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        server = self.server
        assert isinstance(server, _Server)
        fake = server.fake
        fake.requests.append(self.path)
        query = parse_qs(urlsplit(self.path).query)
        if "cursor" not in query:
            fake.path = urlsplit(self.path).path
        cursor = query.get("cursor", ["0"])[0]
        status, body = fake.body(int(cursor))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakePolygon


class running_fake_polygon:
    """`with running_fake_polygon() as fake:` a FakePolygon on 127.0.0.1, stopped on exit."""

    def __enter__(self) -> FakePolygon:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.fake = FakePolygon(url=f"http://127.0.0.1:{self.server.server_address[1]}")
        self.server.fake = self.fake
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self.fake

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def served_bars(emulator: str, symbol: str, first: date, last: date) -> list[dict[str, Any]]:
    """The emulator's complete Polygon answer (extended hours included) for the range."""
    response = httpx.get(
        f"{emulator}/v2/aggs/ticker/{symbol}/range/15/minute/{first}/{last}",
        params={"adjusted": "true", "sort": "asc", "limit": "50000", "apiKey": EMULATOR_KEY},
    )
    response.raise_for_status()
    payload = response.json()
    assert "next_url" not in payload, "the source range must fit one page"
    return payload["results"]


def materialize(
    symbol: str,
    days: Sequence[date],
    instance: dg.DagsterInstance,
    *,
    polygon: Mapping[str, Any] | None = None,
    selection: Sequence[str] = ("m15_bars",),
) -> RunOutcome:
    """One in-process run of `symbol` over `days`, the Polygon resource's fields overridden
    (retry backoff scaled down by default so outage tests don't sleep for seconds)."""
    defs = build_definitions(Settings.from_env())
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    resources = dict(defs.resources or {})
    # Built anew: `model_copy(update=...)` on a ConfigurableResource does not change the
    # values Dagster initializes it with.
    settings = Settings.from_env()
    fields: dict[str, Any] = {
        "api_key": dg.EnvVar("POLYGON_API_KEY"),
        "base_url": settings.polygon_base_url,
        "warehouse": resources["warehouse"],
        "breaker_cooldown_s": settings.breaker_cooldown_s,
        "backoff_base_s": 0.01,
    }
    resources["polygon"] = PolygonResource(**(fields | dict(polygon or {})))
    register_symbols(instance, [symbol])
    return materialize_range(
        instance, assets, resources, symbols=[symbol], days=list(days), selection=list(selection)
    )


def cli_env(env: Mapping[str, str]) -> dict[str, str]:
    full = {k: os.environ[k] for k in PASSTHROUGH if k in os.environ}
    full.update(env)
    full.setdefault("COLUMNS", "120")
    return full


def run_cli_parallel(
    jobs: Sequence[tuple[Sequence[str], Mapping[str, str]]], timeout: float = 150
) -> list[subprocess.CompletedProcess[str]]:
    """Several `swiftbolt` commands at the same time (each with exactly its env, as
    `run_cli`); returns their results in order."""
    procs = [
        subprocess.Popen(
            [SWIFTBOLT, *args],
            env=cli_env(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for args, env in jobs
    ]
    results = []
    try:
        for proc, (args, _) in zip(procs, jobs, strict=True):
            out, err = proc.communicate(timeout=timeout)
            results.append(
                subprocess.CompletedProcess([SWIFTBOLT, *args], proc.returncode, out, err)
            )
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    return results


def invoke(args: Sequence[str], env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """`swiftbolt ARGS` in this process (click's runner) with exactly `env`, like `run_cli`
    but without paying for a new interpreter and the Dagster import on every case. The process
    environment is restored afterwards (the CLI exports DATABASE_URL, DAGSTER_HOME, ...).
    An exception escaping the command becomes a "Traceback" on stderr, as in a real process."""
    from click.testing import CliRunner

    from swiftbolt_pipeline.cli.main import cli

    saved = dict(os.environ)
    try:
        os.environ.clear()
        os.environ.update(cli_env(env))
        result = CliRunner().invoke(cli, list(args), catch_exceptions=True)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "Traceback (in process):\n" + "".join(
            traceback.format_exception(result.exception)
        )
    return subprocess.CompletedProcess(
        ["swiftbolt", *args], result.exit_code, result.stdout, stderr
    )


def count_bars(conn: psycopg.Connection) -> int:
    """m15 bars stored (backfills derive h1/h4/d1 from them too)."""
    row = conn.execute("SELECT count(*) FROM ohlc_bars_v2 WHERE timeframe = 'm15'").fetchone()
    conn.commit()
    assert row is not None
    return int(row[0])


def per_day(conn: psycopg.Connection, symbol: str | None = None) -> dict[date, int]:
    """m15 bar count per exchange day (of one symbol, or all)."""
    rows = conn.execute(
        """SELECT (b.ts AT TIME ZONE 'America/New_York')::date, count(*)
           FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
           WHERE b.timeframe = 'm15' AND (%s::text IS NULL OR s.ticker = %s)
           GROUP BY 1""",
        (symbol, symbol),
    ).fetchall()
    conn.commit()
    return dict(rows)


def stored_m15(conn: psycopg.Connection, symbol: str) -> list[tuple[Any, ...]]:
    """(ts, open, high, low, close, volume) of every stored m15 bar of `symbol`, in order."""
    rows = conn.execute(
        """SELECT b.ts, b.open, b.high, b.low, b.close, b.volume
           FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
           WHERE s.ticker = %s AND b.timeframe = 'm15' ORDER BY b.ts""",
        (symbol,),
    ).fetchall()
    conn.commit()
    return rows


def emulator_requests(emulator: str, provider: str = "polygon") -> int:
    return int(httpx.get(f"{emulator}/_emulator/stats").json()["requests"].get(provider, 0))


def emulator_paths(emulator: str) -> list[str]:
    return [entry["path"] for entry in httpx.get(f"{emulator}/_emulator/stats").json()["log"]]


def inject(emulator: str, *faults: dict[str, Any]) -> None:
    httpx.post(f"{emulator}/_emulator/faults", json=list(faults)).raise_for_status()


def release_held(emulator: str) -> None:
    """Let the requests a `hold` fault keeps waiting answer."""
    httpx.post(f"{emulator}/_emulator/release").raise_for_status()


def reset_emulator(emulator: str) -> None:
    httpx.post(f"{emulator}/_emulator/reset").raise_for_status()


def ingest_history_routed(
    conn: psycopg.Connection,
    providers: Sequence[Provider],
    open_client: OpenClient,
    *,
    run_id: str,
    tasks: Sequence[HistoryTask],
) -> list[SymbolIngest]:
    """Every provider round of a history fetch in one call, as the `m15_bars` steps run them
    one after another: each symbol's outcome (`error` set on the failed ones)."""
    run = start_history(conn, providers, tasks)
    while run.next_provider() is not None:
        history_round(conn, run, open_client, run_id=run_id)
    return finish_history(conn, run)


@contextlib.contextmanager
def tight_polygon_budget(emulator: str, conn: psycopg.Connection) -> Iterator[dict[str, Any]]:
    """A fresh emulator allowing 3 Polygon requests per rolling 2 s, and the shared bucket 3
    per 2.2 s: workers (or hosts) with a bucket each would get 429s. Yields a dict that holds
    the emulator's stats once the block is left; its faults and limit are cleared then."""
    httpx.post(f"{emulator}/_emulator/reset").raise_for_status()
    httpx.put(
        f"{emulator}/_emulator/config", json={"rate_limit": 3, "rate_window_s": 2.0}
    ).raise_for_status()
    set_limits(conn, "polygon", capacity=3, refill_per_min=90, window_s=2.2)
    conn.commit()
    stats: dict[str, Any] = {}
    try:
        yield stats
    finally:
        stats.update(httpx.get(f"{emulator}/_emulator/stats").json())
        httpx.delete(f"{emulator}/_emulator/faults").raise_for_status()
        httpx.put(f"{emulator}/_emulator/config", json={"rate_limit": None}).raise_for_status()
