"""Assemble Definitions from settings read once at load time: every body gets them as
resources."""

from __future__ import annotations

import os

import dagster as dg

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.defs.alerts import alert_delivery_sensor, run_failure_alert_sensor
from swiftbolt_pipeline.defs.assets.crypto import build_crypto_assets
from swiftbolt_pipeline.defs.assets.daily import build_daily_assets
from swiftbolt_pipeline.defs.assets.derived import build_derived_assets
from swiftbolt_pipeline.defs.assets.m5 import build_m5_asset
from swiftbolt_pipeline.defs.assets.m15 import build_m15_asset
from swiftbolt_pipeline.defs.assets.universe import build_universe_assets
from swiftbolt_pipeline.defs.assets.universe_daily import build_universe_daily_asset
from swiftbolt_pipeline.defs.corporate_actions import corporate_actions_sensor
from swiftbolt_pipeline.defs.crypto import (
    crypto_bars_job,
    crypto_coverage_gap_sensor,
    crypto_today_schedule,
)
from swiftbolt_pipeline.defs.daily_automation import daily_gap_sensor, refresh_daily_schedule
from swiftbolt_pipeline.defs.jobs import bars_job, daily_job, m5_job
from swiftbolt_pipeline.defs.m5 import m5_gap_sensor, m5_today_schedule
from swiftbolt_pipeline.defs.partition_status import partition_status_sensor
from swiftbolt_pipeline.defs.partitions import (
    bar_partitions,
    crypto_partitions,
    daily_partitions,
    m5_partitions,
    universe_partitions,
)
from swiftbolt_pipeline.defs.resources import (
    AlertWebhookResource,
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
from swiftbolt_pipeline.defs.settings import PipelineSettings
from swiftbolt_pipeline.services.executor import distributed_resources, executor_def


def _secret(name: str, value: str | None) -> str | None:
    """An EnvVar reference when this process's environment holds the value, so Dagster never
    shows or stores it; a value the caller resolved itself (the emulator's key) as it is."""
    if value is None:
        return None
    return dg.EnvVar(name) if os.environ.get(name, "").strip() == value else value


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """A provider without credentials is left unconfigured (its work is skipped)."""
    warehouse = WarehouseResource(
        database_url=_secret("DATABASE_URL", settings.database_url), home=str(settings.home)
    )
    return {
        "pipeline": PipelineSettings.from_settings(settings),
        "alert_webhook": AlertWebhookResource(
            url=_secret("SWIFTBOLT_ALERT_WEBHOOK", settings.alert_webhook)
        ),
        "warehouse": warehouse,
        "polygon": PolygonResource(
            api_key=_secret("POLYGON_API_KEY", settings.polygon_api_key),
            base_url=settings.polygon_base_url,
            warehouse=warehouse,
            breaker_cooldown_s=settings.breaker_cooldown_s,
        ),
        "alpaca": AlpacaResource(
            key_id=_secret("ALPACA_KEY_ID", settings.alpaca_key_id),
            secret_key=_secret("ALPACA_SECRET_KEY", settings.alpaca_secret_key),
            base_url=settings.alpaca_base_url,
            warehouse=warehouse,
            breaker_cooldown_s=settings.breaker_cooldown_s,
        ),
        "tradier": TradierResource(
            token=_secret("TRADIER_TOKEN", settings.tradier_token),
            base_url=settings.tradier_base_url,
            warehouse=warehouse,
            breaker_cooldown_s=settings.breaker_cooldown_s,
        ),
    }


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or Settings.from_env()
    partitions = bar_partitions(settings)
    return dg.Definitions(
        assets=[
            build_m15_asset(partitions),
            build_m5_asset(m5_partitions(settings)),
            *build_derived_assets(partitions),
            *build_daily_assets(daily_partitions(settings)),
            *build_universe_assets(universe_partitions(settings)),
            build_universe_daily_asset(universe_partitions(settings)),
            *build_crypto_assets(crypto_partitions(settings)),
        ],
        jobs=[bars_job, daily_job, crypto_bars_job, m5_job],
        sensors=[
            watchlist_sensor,
            coverage_gap_sensor,
            m5_gap_sensor,
            daily_gap_sensor,
            crypto_coverage_gap_sensor,
            corporate_actions_sensor,
            run_failure_alert_sensor,
            alert_delivery_sensor,
            partition_status_sensor,
        ],
        schedules=[
            today_intraday_schedule,
            finalize_previous_session_schedule,
            refresh_daily_schedule,
            crypto_today_schedule,
            m5_today_schedule,
        ],
        resources={**build_resources(settings), **distributed_resources(settings)},
        # A run's steps are short and mostly wait on the shared token bucket: one process per
        # run, not one per step (pools still hold per step, across runs). Several machines:
        # SWIFTBOLT_EXECUTOR=celery sends the steps to `swiftbolt worker` on each host.
        executor=executor_def(settings),
    )
