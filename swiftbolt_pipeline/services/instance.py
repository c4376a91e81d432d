"""The Dagster instance of the swiftbolt commands: its directory under SWIFTBOLT_HOME (the
project's dagster.yaml, whose storage finds the project's PostgreSQL), opened in process or
named to the Dagster processes the commands start."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import yaml
from dagster._core.instance.ref import InstanceRef

from swiftbolt_pipeline.config import Settings


def project_file(name: str) -> Path:
    """A file at the project root (dagster.yaml, workspace.yaml), packaged or from a checkout."""
    packaged = Path(__file__).resolve().parents[1] / name
    return packaged if packaged.exists() else Path(__file__).resolve().parents[2] / name


def dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME of the swiftbolt commands: the instance directory under SWIFTBOLT_HOME."""
    return settings.home / "dagster"


def prepare_dagster_home(settings: Settings) -> Path:
    """The instance directory with the project's dagster.yaml, and Dagster's tables in the
    project's PostgreSQL (schema `dagster`), created on first open."""
    home = dagster_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(project_file("dagster.yaml"), home / "dagster.yaml")
    with dg.DagsterInstance.from_ref(_instance_ref(settings)):
        pass
    return home


def _instance_ref(settings: Settings) -> InstanceRef:
    """The instance of the dagster.yaml under `settings.home`, its storage on `settings`'
    database (which need not be this process's environment's)."""
    database = {"home": str(settings.home)}
    if settings.database_url:
        database["database_url"] = settings.database_url
    storage = yaml.safe_load(project_file("dagster.yaml").read_text())["storage"]
    storage["custom"]["config"] = database
    return InstanceRef.from_dir(str(dagster_home(settings)), overrides={"storage": storage})


def dagster_environment(settings: Settings) -> dict[str, str]:
    """What a Dagster process we start (webserver, daemon, run worker) needs in its
    environment, beyond ours, to open the same instance."""
    return {"DAGSTER_HOME": str(dagster_home(settings))}


@contextlib.contextmanager
def open_instance(settings: Settings) -> Iterator[dg.DagsterInstance]:
    """The Dagster instance (after `prepare_dagster_home`) with pooled storage connections.

    dagster-postgres opens fresh connections for every event by default; an in-process
    backfill writes thousands of events, and pooling makes it about 2.5x faster."""
    with dg.DagsterInstance.from_ref(_instance_ref(settings)) as instance:
        instance.optimize_for_webserver(statement_timeout=0, pool_recycle=3600, max_overflow=10)
        yield instance
