"""Configuration is read once at the edge and passed on: nothing writes the process
environment, and what the CLI resolves reaches the resources and the child processes."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest

from swiftbolt_pipeline.config import EMULATOR_API_KEY, Settings
from swiftbolt_pipeline.defs.build import build_resources
from swiftbolt_pipeline.defs.resources import WarehouseResource
from swiftbolt_pipeline.services.runtime import ensure_providers, open_runtime

PROVIDER_VARIABLES = (
    "POLYGON_API_KEY", "POLYGON_BASE_URL", "TRADIER_TOKEN", "TRADIER_BASE_URL",
    "ALPACA_KEY_ID", "ALPACA_SECRET_KEY", "ALPACA_BASE_URL",
)  # fmt: skip


def test_settings_read_the_given_environment_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWIFTBOLT_NOW", "2020-01-02T15:00:00+00:00")
    monkeypatch.setenv("SWIFTBOLT_HISTORY_PROVIDERS", "polygon")
    settings = Settings.from_env(
        {"SWIFTBOLT_NOW": "2026-03-04T12:00:00-05:00", "SWIFTBOLT_HISTORY_PROVIDERS": "alpaca"}
    )
    assert settings.today.isoformat() == "2026-03-04"
    assert settings.history_providers == ("alpaca",)
    assert settings.history_start.isoformat() == "2024-03-04"
    assert settings.database_url is None


def test_the_demo_emulator_is_exported_not_written_to_the_environment(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in PROVIDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    before = dict(os.environ)
    runtime = open_runtime({"DATABASE_URL": db_url, "SWIFTBOLT_HOME": str(tmp_path)})
    setup = ensure_providers(runtime)
    assert dict(os.environ) == before

    emulator = runtime.exported["POLYGON_BASE_URL"]
    assert setup.source.startswith(f"built-in emulator at {emulator}")
    assert runtime.exported == {
        "DATABASE_URL": db_url,
        **{name: emulator for name in PROVIDER_VARIABLES if name.endswith("_BASE_URL")},
        **{name: EMULATOR_API_KEY for name in PROVIDER_VARIABLES if "_BASE_URL" not in name},
    }
    assert runtime.settings.polygon_base_url == emulator
    assert runtime.settings.tradier_token == EMULATOR_API_KEY
    child = runtime.child_environ()
    assert child["DATABASE_URL"] == db_url and child["ALPACA_BASE_URL"] == emulator

    # In this process the resources get the resolved values; a child process, whose
    # environment holds them, reads them through EnvVar references.
    resources = build_resources(runtime.settings)
    assert resources["polygon"].api_key == EMULATOR_API_KEY  # type: ignore[attr-defined]
    monkeypatch.setenv("POLYGON_API_KEY", EMULATOR_API_KEY)
    monkeypatch.setenv("DATABASE_URL", db_url)
    resources = build_resources(Settings.from_env())
    assert resources["polygon"].api_key == dg.EnvVar("POLYGON_API_KEY")  # type: ignore[attr-defined]
    assert resources["warehouse"].database_url == dg.EnvVar("DATABASE_URL")  # type: ignore[attr-defined]


def test_warehouse_without_a_url_uses_the_embedded_database(tmp_path: Path) -> None:
    warehouse = WarehouseResource(home=str(tmp_path))
    with warehouse.connect() as conn:
        migrated = conn.execute("SELECT count(*) > 0 FROM schema_migrations").fetchone()
    assert migrated == (True,)
    assert (tmp_path / "pgdata" / "postmaster.pid").exists()
    assert warehouse.database_url is None  # the address never enters Dagster's config
