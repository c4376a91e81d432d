"""The market-scale bench's world: a scratch PostgreSQL, the emulator in its own process (a
remote server: its CPU is not the pipeline's), Alpaca as the only history provider, and a
Postgres-backed Dagster instance. Everything is removed afterwards."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import psycopg

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.services.instance import open_instance, prepare_dagster_home
from swiftbolt_pipeline.storage import ratelimit
from swiftbolt_pipeline.storage.migrate import migrate

from .env import BENCH_KEY, BENCH_NOW, bench_settings, scratch_database


@dataclass
class MarketWorld:
    database_url: str
    database_label: str
    emulator_url: str
    emulator_pid: int
    settings: Settings
    instance: dg.DagsterInstance
    defs: dg.Definitions

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.database_url)

    @property
    def assets(self) -> list[dg.AssetsDefinition]:
        return [a for a in self.defs.assets or [] if isinstance(a, dg.AssetsDefinition)]

    @property
    def resources(self) -> dict[str, Any]:
        return dict(self.defs.resources or {})

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = httpx.request(
            method, f"{self.emulator_url}/_emulator/{path}", json=body, timeout=30
        )
        response.raise_for_status()
        return response.json()

    def alpaca_counts(self) -> tuple[int, int]:
        """(Alpaca requests, Alpaca 429 answers) the emulator served since its last reset."""
        stats = self.admin("GET", "stats")
        return int(stats["requests"].get("alpaca", 0)), int(stats["rejected_429"].get("alpaca", 0))

    def set_rate(self, per_window: int, window_s: float) -> None:
        """The emulator's limit (`per_window` requests per rolling `window_s`) and the
        pipeline's shared Alpaca bucket at the same sustained rate, counters reset."""
        self.admin("PUT", "config", {"rate_limit": per_window, "rate_window_s": window_s})
        self.admin("POST", "reset")
        with self.connect() as conn:
            ratelimit.set_limits(
                conn,
                "alpaca",
                capacity=per_window,
                refill_per_min=per_window * 60.0 / window_s,
                window_s=window_s + 1.0,  # one second of margin, as for Polygon's minute
            )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def emulator_process(now: str) -> Iterator[tuple[str, int]]:
    """`swiftbolt emulator` in a child process on a free local port: (url, pid)."""
    port = _free_port()
    command = [
        sys.executable, "-c", "from swiftbolt_pipeline.cli.main import cli; cli()",
        "emulator", "--port", str(port), "--api-key", BENCH_KEY,
    ]  # fmt: skip
    env = {**os.environ, "SWIFTBOLT_NOW": now}
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if child.poll() is not None:
                raise RuntimeError(f"the emulator exited with code {child.returncode}")
            try:
                httpx.get(f"{url}/_emulator/stats", timeout=2).raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the emulator did not answer within 60 s") from None
                time.sleep(0.2)
        yield url, child.pid
    finally:
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


@contextlib.contextmanager
def market_world(now: str = BENCH_NOW, workdir: Path | None = None) -> Iterator[MarketWorld]:
    """Alpaca-only settings (extended hours kept: every bar served is stored, so the archive
    can be checked bar for bar against the emulator's truth)."""
    from swiftbolt_pipeline.defs.build import build_definitions

    with contextlib.ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=workdir)))
        url, label = stack.enter_context(scratch_database(home))
        emulator_url, pid = stack.enter_context(emulator_process(now))
        settings = bench_settings(
            url,
            home,
            now,
            emulator_url,
            SWIFTBOLT_HISTORY_PROVIDERS="alpaca",
            SWIFTBOLT_EXTENDED_HOURS="1",
            ALPACA_BASE_URL=emulator_url,
            ALPACA_KEY_ID=BENCH_KEY,
            ALPACA_SECRET_KEY=BENCH_KEY,
        )
        with psycopg.connect(url) as conn:
            migrate(conn)
        prepare_dagster_home(settings)
        instance = stack.enter_context(open_instance(settings))
        yield MarketWorld(
            database_url=url,
            database_label=label,
            emulator_url=emulator_url,
            emulator_pid=pid,
            settings=settings,
            instance=instance,
            defs=build_definitions(settings),
        )
