"""What every command needs before it works: settings, the database, the Dagster instance,
and providers (the built-in emulator when no Polygon key is configured)."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import dagster as dg
import psycopg

from swiftbolt_pipeline.config import DEFAULT_POLYGON_BASE_URL, EMULATOR_API_KEY, Settings
from swiftbolt_pipeline.core.models import InvalidInput
from swiftbolt_pipeline.storage import database
from swiftbolt_pipeline.storage.migrate import MIGRATION_LOCK_KEY, migrate


@dataclass
class Runtime:
    settings: Settings
    database_url: str

    def connect(self) -> psycopg.Connection:
        return database.connect(self.database_url)


def open_runtime(*, migrate_schema: bool = True) -> Runtime:
    settings = Settings.from_env()
    url = database.resolve_database_url(settings.home, settings.database_url)
    if migrate_schema:
        with database.connect(url) as conn:
            migrate(conn)
    return Runtime(settings=settings, database_url=url)


def project_file(name: str) -> Path:
    """A file at the project root (dagster.yaml, workspace.yaml), packaged or from a checkout."""
    packaged = Path(__file__).resolve().parents[1] / name
    return packaged if packaged.exists() else Path(__file__).resolve().parents[2] / name


def prepare_dagster_home(runtime: Runtime) -> Path:
    """DAGSTER_HOME under SWIFTBOLT_HOME, with the project's dagster.yaml pointing Dagster's
    storage at the same PostgreSQL (schema `dagster`)."""
    home = runtime.settings.home / "dagster"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(project_file("dagster.yaml"), home / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(home)
    os.environ["SWIFTBOLT_DAGSTER_PG_URL"] = database.sqlalchemy_url(runtime.database_url)
    os.environ["SWIFTBOLT_DAGSTER_ARTIFACTS"] = str(home / "storage")
    _create_dagster_storage_once(runtime.database_url)
    return home


def _create_dagster_storage_once(url: str) -> None:
    """Dagster creates its tables on first use, and two processes doing that at once on a
    fresh schema collide; the first one creates them under our migration lock."""
    with database.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('dagster.instance_info')").fetchone() != (None,):
            return
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK_KEY,))
        try:
            with dg.DagsterInstance.get():
                pass
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK_KEY,))


@contextlib.contextmanager
def open_instance() -> Iterator[dg.DagsterInstance]:
    """The Dagster instance (after `prepare_dagster_home`) with pooled storage connections.

    dagster-postgres opens fresh connections for every event by default; an in-process
    backfill writes thousands of events, and pooling makes it about 2.5x faster."""
    with dg.DagsterInstance.get() as instance:
        instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=10)
        yield instance


def ensure_providers(runtime: Runtime) -> str:
    """Make the provider settings usable: a provider with no key but a base URL gets the
    emulator's key; with no key and no URL, the built-in emulator starts in this process and
    serves both APIs. Returns where Polygon bars come from, for the user."""
    emulator_url: str | None = None
    real_polygon = bool(os.environ.get("POLYGON_API_KEY"))
    base_url = os.environ.get("POLYGON_BASE_URL", "")
    if not real_polygon and base_url.rstrip("/") == DEFAULT_POLYGON_BASE_URL:
        raise InvalidInput(
            "INVALID_CONFIG",
            "POLYGON_API_KEY is not set; unset POLYGON_BASE_URL to use the built-in emulator",
        )
    for key_vars, url_var in (
        (("POLYGON_API_KEY",), "POLYGON_BASE_URL"),
        (("TRADIER_TOKEN",), "TRADIER_BASE_URL"),
        (("ALPACA_KEY_ID", "ALPACA_SECRET_KEY"), "ALPACA_BASE_URL"),
    ):
        if all(os.environ.get(var) for var in key_vars):
            continue
        if url_var == "ALPACA_BASE_URL" and real_polygon:
            continue  # real Polygon: never fall back to emulated Alpaca data
        if not os.environ.get(url_var):
            emulator_url = emulator_url or _start_emulator()
            os.environ[url_var] = emulator_url
        for var in key_vars:
            os.environ[var] = EMULATOR_API_KEY
    runtime.settings = Settings.from_env()
    if runtime.settings.polygon_base_url == emulator_url:
        return f"built-in emulator at {emulator_url} (no POLYGON_API_KEY set)"
    return runtime.settings.polygon_base_url


def _start_emulator() -> str:
    from swiftbolt_pipeline.emulator.server import running_emulator

    stack = contextlib.ExitStack()
    base_url = stack.enter_context(running_emulator())
    atexit.register(stack.close)
    return base_url


def fail(code: str, message: str) -> None:
    click.echo(f"error [{code}]: {message}", err=True)
    sys.exit(2)
