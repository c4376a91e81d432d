"""What every command needs before it works: settings, the database, the Dagster instance,
and providers (the built-in emulator when no Polygon key is configured)."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import psycopg

from swiftbolt_pipeline.config import EMULATOR_API_KEY, Settings
from swiftbolt_pipeline.storage import database
from swiftbolt_pipeline.storage.migrate import migrate


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
    return home


def ensure_polygon(runtime: Runtime) -> str:
    """Make POLYGON_API_KEY/POLYGON_BASE_URL usable; start the emulator when there is no key.

    Returns a short description of where bars come from, for the user."""
    settings = runtime.settings
    if settings.polygon_api_key:
        return settings.polygon_base_url
    if os.environ.get("POLYGON_BASE_URL"):
        os.environ["POLYGON_API_KEY"] = EMULATOR_API_KEY
        return f"{settings.polygon_base_url} (no POLYGON_API_KEY: emulator key)"
    from swiftbolt_pipeline.emulator.server import running_emulator

    stack = contextlib.ExitStack()
    base_url = stack.enter_context(running_emulator())
    atexit.register(stack.close)
    os.environ["POLYGON_BASE_URL"] = base_url
    os.environ["POLYGON_API_KEY"] = EMULATOR_API_KEY
    runtime.settings = Settings.from_env()
    return f"built-in emulator at {base_url} (no POLYGON_API_KEY set)"


def fail(code: str, message: str) -> None:
    click.echo(f"error [{code}]: {message}", err=True)
    sys.exit(2)
