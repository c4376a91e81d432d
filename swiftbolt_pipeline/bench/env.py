"""The bench's own world: a scratch PostgreSQL, an in-process emulator, a pinned clock and a
Dagster instance on that PostgreSQL, all torn down afterwards.

Nothing here touches the user's `.swiftbolt/` or database: with DATABASE_URL set, a scratch
database is created on that server and dropped at the end; otherwise an embedded PostgreSQL
starts under a temporary SWIFTBOLT_HOME and is deleted with it."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import urllib.request
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import psycopg

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.emulator import EmulatorSettings, running_emulator
from swiftbolt_pipeline.services.instance import open_instance, prepare_dagster_home
from swiftbolt_pipeline.storage import ratelimit, scratch
from swiftbolt_pipeline.storage.migrate import migrate

BENCH_NOW = "2026-11-20T12:00:00-05:00"
BENCH_KEY = "bench-key"
# Generous limits for the unlimited runs: the bucket never makes a request wait.
UNLIMITED = {"capacity": 100_000, "refill_per_min": 100_000.0, "window_s": 61.0}


def two_years_before(now: str) -> date:
    today = calendar.exchange_date(datetime.fromisoformat(now))
    return today.replace(year=today.year - 2, day=min(today.day, 28))


@contextlib.contextmanager
def scratch_database(home: Path) -> Iterator[tuple[str, str]]:
    """(url, description): a fresh database on DATABASE_URL's server, else an embedded one."""
    server_url = os.environ.get("DATABASE_URL", "").strip()
    if server_url:
        name = f"swiftbolt_bench_{uuid.uuid4().hex[:10]}"
        version = scratch.create_database(server_url, name)
        url = urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
        try:
            yield url, f"PostgreSQL {version} (DATABASE_URL, scratch db)"
        finally:
            scratch.drop_database(server_url, name)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        from pgserver.postgres_server import get_server

        server = get_server(home / "pgdata", cleanup_mode="delete")
    try:
        version = scratch.create_database(server.get_uri(), "swiftbolt_bench")
        yield server.get_uri("swiftbolt_bench"), f"PostgreSQL {version} (embedded, pgserver)"
    finally:
        server.cleanup()


@dataclass
class BenchEnv:
    """Everything a measurement needs; `instance` is Postgres-backed, like the CLI's."""

    home: Path
    database_url: str
    database_label: str
    emulator_url: str
    settings: Settings
    instance: dg.DagsterInstance
    defs: dg.Definitions

    def connect(self, *, autocommit: bool = False) -> psycopg.Connection:
        return psycopg.connect(self.database_url, autocommit=autocommit)

    @property
    def assets(self) -> list[dg.AssetsDefinition]:
        return [a for a in self.defs.assets or [] if isinstance(a, dg.AssetsDefinition)]

    @property
    def resources(self) -> dict[str, Any]:
        return dict(self.defs.resources or {})

    def emulator(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call the emulator's admin API (`/_emulator/...`)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.emulator_url}/_emulator/{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def emulator_counts(self) -> tuple[int, int]:
        """(polygon requests, polygon 429s) served so far."""
        stats = self.emulator("GET", "stats")
        return int(stats["requests"]["polygon"]), int(stats["rejected_429"]["polygon"])

    def set_rate(self, limit: int | None, window_s: float, bucket: dict[str, float]) -> None:
        """Emulator rolling window and the shared PostgreSQL bucket, together."""
        self.emulator("PUT", "config", {"rate_limit": limit, "rate_window_s": window_s})
        self.emulator("POST", "reset")
        with self.connect() as conn:
            ratelimit.set_limits(
                conn,
                "polygon",
                capacity=int(bucket["capacity"]),
                refill_per_min=bucket["refill_per_min"],
                window_s=bucket["window_s"],
            )


def bench_settings(
    database_url: str, home: Path, now: str, emulator_url: str, **extra: str
) -> Settings:
    """A bench world's settings: its scratch database and home, the pinned clock, two years
    of history, Polygon and Tradier at the emulator; `extra` environment on top."""
    return Settings.from_env(
        {
            **os.environ,
            "DATABASE_URL": database_url,
            "SWIFTBOLT_HOME": str(home),
            "SWIFTBOLT_NOW": now,
            "SWIFTBOLT_HISTORY_START": two_years_before(now).isoformat(),
            "POLYGON_API_KEY": BENCH_KEY,
            "POLYGON_BASE_URL": emulator_url,
            "TRADIER_TOKEN": BENCH_KEY,
            "TRADIER_BASE_URL": emulator_url,
            **extra,
        }
    )


@contextlib.contextmanager
def bench_env(now: str = BENCH_NOW, workdir: Path | None = None) -> Iterator[BenchEnv]:
    """Open the bench world; every temporary file is removed after."""
    from swiftbolt_pipeline.defs.build import build_definitions

    with contextlib.ExitStack() as stack:
        home = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=workdir)))
        url, label = stack.enter_context(scratch_database(home))
        emulator_url = stack.enter_context(running_emulator(EmulatorSettings(api_key=BENCH_KEY)))
        settings = bench_settings(url, home, now, emulator_url)
        with psycopg.connect(url) as conn:
            migrate(conn)
        prepare_dagster_home(settings)
        instance = stack.enter_context(open_instance(settings))
        env = BenchEnv(
            home=home,
            database_url=url,
            database_label=label,
            emulator_url=emulator_url,
            settings=settings,
            instance=instance,
            defs=build_definitions(settings),
        )
        env.set_rate(None, 60.0, UNLIMITED)
        yield env
