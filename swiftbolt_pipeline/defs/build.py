"""Assemble Definitions from settings read at load time (history start, SWIFTBOLT_NOW)."""

from __future__ import annotations

import dagster as dg

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.defs.alerts import alert_delivery_sensor, run_failure_alert_sensor
from swiftbolt_pipeline.defs.assets.derived import build_derived_assets
from swiftbolt_pipeline.defs.assets.m15 import build_m15_asset
from swiftbolt_pipeline.defs.corporate_actions import corporate_actions_sensor
from swiftbolt_pipeline.defs.jobs import bars_job
from swiftbolt_pipeline.defs.partitions import bar_partitions
from swiftbolt_pipeline.defs.resources import (
    AlpacaResource,
    PolygonResource,
    TradierResource,
    WarehouseResource,
)
from swiftbolt_pipeline.defs.schedules import (
    finalize_previous_session_schedule,
    today_intraday_schedule,
)
from swiftbolt_pipeline.defs.sensors import coverage_gap_sensor, watchlist_sensor


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """Secrets stay EnvVar references, so Dagster never shows or stores their values; a
    provider without credentials is left unconfigured (its work is skipped)."""
    warehouse = WarehouseResource(database_url=dg.EnvVar("DATABASE_URL"))
    return {
        "warehouse": warehouse,
        "polygon": PolygonResource(
            api_key=dg.EnvVar("POLYGON_API_KEY") if settings.polygon_api_key else None,
            base_url=settings.polygon_base_url,
            warehouse=warehouse,
            breaker_cooldown_s=settings.breaker_cooldown_s,
        ),
        "alpaca": AlpacaResource(
            key_id=dg.EnvVar("ALPACA_KEY_ID") if settings.alpaca_key_id else None,
            secret_key=dg.EnvVar("ALPACA_SECRET_KEY") if settings.alpaca_secret_key else None,
            base_url=settings.alpaca_base_url,
            warehouse=warehouse,
            breaker_cooldown_s=settings.breaker_cooldown_s,
        ),
        "tradier": TradierResource(
            token=dg.EnvVar("TRADIER_TOKEN") if settings.tradier_token else None,
            base_url=settings.tradier_base_url,
            warehouse=warehouse,
            breaker_cooldown_s=settings.breaker_cooldown_s,
        ),
    }


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    partitions = bar_partitions(settings)
    return dg.Definitions(
        assets=[build_m15_asset(partitions), *build_derived_assets(partitions)],
        jobs=[bars_job],
        sensors=[
            watchlist_sensor,
            coverage_gap_sensor,
            corporate_actions_sensor,
            run_failure_alert_sensor,
            alert_delivery_sensor,
        ],
        schedules=[today_intraday_schedule, finalize_previous_session_schedule],
        resources=build_resources(settings),
        # A run's steps are short and mostly wait on the shared token bucket: one process per
        # run, not one per step (pools still hold per step, across runs).
        executor=dg.in_process_executor,
    )
