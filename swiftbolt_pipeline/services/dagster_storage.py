"""Dagster's instance storage (runs, events, schedules) in the project's PostgreSQL, schema
`dagster`, found the way every swiftbolt command finds its database: `DATABASE_URL`, else the
embedded server under SWIFTBOLT_HOME. The project's dagster.yaml names this class, so Dagster's
own tools (`dagster dev` from the repository root) and the swiftbolt commands share one
instance without any variable of their own."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import Field, StringSource
from dagster._config.config_schema import UserConfigSchema
from dagster._serdes import ConfigurableClassData
from dagster_postgres import DagsterPostgresStorage

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.storage import database
from swiftbolt_pipeline.storage.migrate import dagster_tables_exist, migrate, schema_lock


class ProjectStorage(DagsterPostgresStorage):
    """dagster-postgres storage on the project's database. A command that resolved its
    settings from another environment than its process's (the soak) names them in the
    configuration; else they are read from the process's environment."""

    @classmethod
    def config_type(cls) -> UserConfigSchema:
        return {
            "database_url": Field(StringSource, is_required=False),
            "home": Field(StringSource, is_required=False),
        }

    @classmethod
    def from_config_value(  # type: ignore[override]
        cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]
    ) -> ProjectStorage:
        settings = Settings.from_env()
        url = database.resolve_database_url(
            Path(config_value["home"]) if "home" in config_value else settings.home,
            config_value.get("database_url", settings.database_url),
        )
        with database.connect(url, autocommit=True) as conn:
            if dagster_tables_exist(conn):
                return cls(database.sqlalchemy_url(url), inst_data=inst_data)
            # A fresh database: our schema (which holds `dagster`) first, then Dagster's tables,
            # created by one process at a time: two creating them at once collide.
            migrate(conn)
        with schema_lock(url):
            return cls(database.sqlalchemy_url(url), inst_data=inst_data)

    # Dagster describes the three storages inside this one by dagster-postgres' own classes
    # and this class's (empty) configuration, which they cannot load: none is needed, as the
    # instance wraps this storage itself.
    @property
    def event_storage_data(self) -> ConfigurableClassData | None:
        return None

    @property
    def run_storage_data(self) -> ConfigurableClassData | None:
        return None

    @property
    def schedule_storage_data(self) -> ConfigurableClassData | None:
        return None
