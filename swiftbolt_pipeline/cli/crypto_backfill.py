"""`swiftbolt backfill` of crypto pairs (`X:` tickers): every UTC day of the range, weekends
and US holidays included, through the `crypto_*` assets, one run per pair."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date

import dagster as dg
from rich.console import Console

from swiftbolt_pipeline.core import crypto_calendar
from swiftbolt_pipeline.core.models import Provider, Timeframe
from swiftbolt_pipeline.defs.assets.crypto import crypto_run_config
from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.names import CRYPTO_BAR_ASSETS, CRYPTO_M15_BARS, CRYPTO_SYMBOLS_PARTITIONS
from swiftbolt_pipeline.services.coverage import reap_dead_runs
from swiftbolt_pipeline.services.instance import open_instance, prepare_dagster_home
from swiftbolt_pipeline.services.launch import RunOutcome, materialize_range, register_symbols
from swiftbolt_pipeline.services.runtime import Runtime, ensure_providers


def backfill_crypto(
    runtime: Runtime,
    pairs: Sequence[str],
    start: date,
    end: date,
    timeframes: Sequence[Timeframe],
    forced: Provider | None,
    console: Console,
) -> list[RunOutcome]:
    """One run per pair over the UTC days `start`..`end` (already checked against the
    history window) for the `timeframes`' crypto assets; the outcomes, in order."""
    days = crypto_calendar.days_between(start, end)
    setup = ensure_providers(runtime)
    prepare_dagster_home(runtime.settings)
    defs = build_definitions(runtime.settings)
    selection = [CRYPTO_BAR_ASSETS[tf] for tf in timeframes]
    for note in setup.notes:
        console.print(note)
    console.print(
        f"Backfilling {', '.join(pairs)}: {len(days)} UTC day(s) {days[0]}..{days[-1]}, "
        f"{', '.join(tf.value for tf in timeframes)} from {forced or setup.source}"
    )
    log_level = "INFO" if logging.getLogger().isEnabledFor(logging.INFO) else "CRITICAL"
    config = crypto_run_config(forced) if forced and CRYPTO_M15_BARS in selection else None
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    resources = dict(defs.resources or {})
    outcomes = []
    with open_instance(runtime.settings) as instance:
        with runtime.connect() as conn:
            for run_id in reap_dead_runs(instance, conn):
                console.print(f"run {run_id} of a dead process marked failed (slot freed)")
        register_symbols(instance, pairs, CRYPTO_SYMBOLS_PARTITIONS)
        for pair in pairs:
            outcome = materialize_range(
                instance, assets, resources, symbols=[pair], days=days, selection=selection,
                log_level=log_level, run_config=config,
            )  # fmt: skip
            state = "done" if outcome.success else f"[red]FAILED[/red]: {outcome.error}"
            console.print(f"{pair}: {outcome.partitions} day partition(s) {state}")
            outcomes.append(outcome)
    return outcomes
