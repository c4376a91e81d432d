"""Materialize bar partitions in process: one single-run backfill per symbol and range."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import dagster as dg
from dagster_shared.error import SerializableErrorInfo

from swiftbolt_pipeline.defs.partitions import SYMBOLS
from swiftbolt_pipeline.names import partition_key


@dataclass(frozen=True)
class CheckOutcome:
    asset: str
    name: str
    passed: bool
    metadata: dict[str, object]


@dataclass(frozen=True)
class RunOutcome:
    symbol: str
    run_id: str
    success: bool
    partitions: int
    error: str | None
    checks: tuple[CheckOutcome, ...] = ()


# Pools cap concurrent fetching steps (not request rate: the token bucket does that); each
# provider's step of `m15_bars` holds its own provider's pool.
POOL_LIMITS = {"polygon": 2, "tradier": 2, "alpaca": 2}


def configure_pools(instance: dg.DagsterInstance) -> None:
    """Per-pool concurrency limits on the instance (idempotent)."""
    for pool, limit in POOL_LIMITS.items():
        instance.event_log_storage.set_concurrency_slots(pool, limit)


def register_symbols(instance: dg.DagsterInstance, symbols: Sequence[str]) -> None:
    """Make symbols dynamic partitions (idempotent)."""
    assert SYMBOLS.name is not None
    known = set(instance.get_dynamic_partitions(SYMBOLS.name))
    missing = [s for s in symbols if s not in known]
    if missing:
        instance.add_dynamic_partitions(SYMBOLS.name, missing)


def materialize_range(
    instance: dg.DagsterInstance,
    assets: Sequence[dg.AssetsDefinition],
    resources: dict[str, object],
    *,
    symbol: str,
    days: Sequence[date],
    selection: Sequence[str],
    log_level: str = "INFO",
    tags: dict[str, str] | None = None,
) -> RunOutcome:
    """One run over `days` (consecutive sessions) of `symbol` for the selected assets."""
    result = dg.materialize(
        list(assets),
        instance=instance,
        resources=resources,
        selection=list(selection),
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        tags={
            "dagster/asset_partition_range_start": partition_key(symbol, days[0]),
            "dagster/asset_partition_range_end": partition_key(symbol, days[-1]),
            "swiftbolt/symbol": symbol,
            **(tags or {}),
        },
    )
    error = None
    if not result.success:
        failures = [
            _root_cause(event.step_failure_data.error)
            for event in result.all_events
            if event.is_step_failure and event.step_failure_data.error
        ]
        error = failures[0] if failures else "run failed"
    checks = tuple(
        CheckOutcome(
            evaluation.asset_key.to_user_string(),
            evaluation.check_name,
            evaluation.passed,
            {key: value.value for key, value in evaluation.metadata.items()},
        )
        for evaluation in result.get_asset_check_evaluations()
    )
    return RunOutcome(symbol, result.run_id, result.success, len(days), error, checks)


def _root_cause(error: SerializableErrorInfo) -> str:
    """The innermost error message: Dagster wraps the asset's exception in its own."""
    while error.cause is not None:
        error = error.cause
    return error.message.strip()
