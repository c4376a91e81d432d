"""The project's dagster.yaml as Dagster's own tools read it (`dagster dev` from the repository
root): its storage finds the database named by DATABASE_URL, gives a fresh one our schema and
Dagster's tables (two processes at once included), and every instance sees the same runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dagster as dg
import psycopg
import pytest
from dagster._core.instance.ref import InstanceRef

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.services.instance import open_instance, prepare_dagster_home
from swiftbolt_pipeline.storage import scratch

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_database(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty database on the test server, named by DATABASE_URL."""
    admin = urlunsplit(urlsplit(database_url)._replace(path="/postgres"))
    name = f"swiftbolt_fresh_{uuid.uuid4().hex[:10]}"
    scratch.create_database(admin, name)
    url = urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    monkeypatch.setenv("DATABASE_URL", url)
    try:
        yield url
    finally:
        scratch.drop_database(admin, name)


def _root_instance(home: Path) -> dg.DagsterInstance:
    """The instance `dagster dev` opens from the repository root: a temporary directory for
    logs, the configuration from the root's dagster.yaml."""
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home), config_dir=str(REPO_ROOT)))


def test_a_fresh_database_gets_our_schema_and_dagsters_tables(
    fresh_database: str, tmp_path: Path
) -> None:
    def open_and_count(k: int) -> int:
        with _root_instance(tmp_path / str(k)) as instance:
            return len(instance.get_runs())

    # Two instances at once on the empty database: the first creates, the other waits.
    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(open_and_count, range(2))) == [0, 0]
    with psycopg.connect(fresh_database) as conn:
        found = conn.execute(
            "SELECT to_regclass('dagster.instance_info'), to_regclass('public.ohlc_bars_v2')"
        ).fetchone()
    assert found == ("dagster.instance_info", "ohlc_bars_v2")


def test_instances_share_runs_through_the_database(fresh_database: str, tmp_path: Path) -> None:
    with _root_instance(tmp_path / "a") as first, _root_instance(tmp_path / "b") as second:
        run = first.add_run(dg.DagsterRun(job_name="probe", run_id=str(uuid.uuid4())))
        assert second.get_run_by_id(run.run_id) is not None


def test_a_commands_instance_uses_its_settings_database(
    fresh_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command whose settings come from another environment than its process's (the soak)
    opens the instance on the settings' database, not on the process's DATABASE_URL."""
    settings = Settings.from_env({"DATABASE_URL": fresh_database, "SWIFTBOLT_HOME": str(tmp_path)})
    monkeypatch.setenv("DATABASE_URL", "postgresql://nobody@127.0.0.1:1/nothing")
    prepare_dagster_home(settings)
    with open_instance(settings) as instance:
        run = instance.add_run(dg.DagsterRun(job_name="probe", run_id=str(uuid.uuid4())))
    with psycopg.connect(fresh_database) as conn:
        found = conn.execute(
            "SELECT count(*) FROM dagster.runs WHERE run_id = %s", (run.run_id,)
        ).fetchone()
    assert found == (1,)
