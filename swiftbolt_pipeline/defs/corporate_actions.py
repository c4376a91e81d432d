"""`corporate_actions_sensor`: keep stored prices consistent with Polygon's split adjustment.

Each tick does two things:

1. **Check** (costs Polygon requests): the splits of a few watched symbols whose last check is
   more than a day old (never-checked first) are fetched from `/v3/reference/splits` and stored
   in `corporate_actions`. The requests take tokens from the shared bucket like any fetch, but
   the sensor never waits long for one: when the budget is busy (a backfill is running) the
   check is deferred to a later tick.
2. **Plan** (database only): for every symbol with stored bars made stale by an executed split
   (see `storage/corporate_actions.py` for the rule), one `bars_job` run over the contiguous
   stored range before the split, tagged `swiftbolt/trigger=split`. The run replaces those
   partitions (writes are idempotent per partition) with freshly adjusted bars; ranges already
   queued, running or recently failed are left alone, and a split without stale bars left is
   settled, so it costs nothing afterwards.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.clock import SystemClock
from swiftbolt_pipeline.defs.jobs import BARS_JOB, range_tags
from swiftbolt_pipeline.defs.partitions import SYMBOLS
from swiftbolt_pipeline.defs.resources import PolygonResource, WarehouseResource
from swiftbolt_pipeline.names import SPLITS_TAG, SYMBOL_TAG, TRIGGER_TAG
from swiftbolt_pipeline.providers.errors import (
    PROVIDER_UNAVAILABLE,
    RATE_LIMIT_EXCEEDED,
    ProviderError,
)
from swiftbolt_pipeline.providers.http import RequestStats
from swiftbolt_pipeline.providers.polygon_reference import PolygonReferenceClient
from swiftbolt_pipeline.services.coverage import InflightRange, inflight_ranges
from swiftbolt_pipeline.storage import corporate_actions as ca_store
from swiftbolt_pipeline.storage.breaker import PostgresCircuitBreaker
from swiftbolt_pipeline.storage.ratelimit import PostgresTokenLimiter

SENSOR_NAME = "corporate_actions_sensor"
TRIGGER = "split"
# At most this many symbols are checked per tick, and no new check starts after the tick has
# spent CHECK_BUDGET_S: a sensor tick must finish well within Dagster's 60 s evaluation limit.
MAX_CHECKS_PER_TICK = 3
CHECK_BUDGET_S = 20.0
# How long one request may wait for a token from the shared bucket before the check is deferred.
TOKEN_WAIT_S = 8.0
# Retries of one check request inside a tick (the next tick retries anyway).
MAX_ATTEMPTS = 2


@contextmanager
def reference_client(polygon: PolygonResource) -> Iterator[PolygonReferenceClient]:
    """A splits client configured like the `polygon` resource, sharing its bucket and breaker."""
    if not polygon.api_key:
        raise ProviderError(
            PROVIDER_UNAVAILABLE, "not configured: set POLYGON_API_KEY", provider="polygon"
        )
    url = polygon.warehouse.database_url
    # A sensor tick never waits long for a token: when the budget is busy the check is deferred.
    limiter = PostgresTokenLimiter(url, "polygon", SystemClock(), max_wait_s=TOKEN_WAIT_S)
    breaker = PostgresCircuitBreaker(url, "polygon", cooldown_s=polygon.breaker_cooldown_s)
    client = PolygonReferenceClient(
        polygon.base_url,
        polygon.api_key,
        limiter,
        SystemClock(),
        timeout_s=polygon.timeout_s,
        max_attempts=min(MAX_ATTEMPTS, polygon.max_attempts),
        backoff_base_s=polygon.backoff_base_s,
        breaker=breaker,
    )
    try:
        yield client
    finally:
        client.close()
        limiter.close()
        breaker.close()


def check_splits(
    conn: psycopg.Connection,
    polygon: PolygonResource,
    settings: Settings,
    log: logging.Logger | None = None,
) -> dict[str, int]:
    """Fetch and store the splits of the symbols due for a check. Returns counters:
    `checked`, `new_splits`, `failed`, `deferred`, `requests`."""
    counts: dict[str, int] = dict.fromkeys(
        ("checked", "new_splits", "failed", "deferred", "requests"), 0
    )
    due = ca_store.due_for_check(conn, settings.now(), limit=MAX_CHECKS_PER_TICK)
    if not due:
        return counts
    started = time.monotonic()
    with reference_client(polygon) as client:
        for index, symbol in enumerate(due):
            if time.monotonic() - started > CHECK_BUDGET_S:
                counts["deferred"] += len(due) - index
                break
            stats = RequestStats()
            try:
                found = client.fetch_splits(symbol.ticker, stats, since=settings.history_start)
            except ProviderError as exc:
                counts["requests"] += stats.requests
                if exc.code in (RATE_LIMIT_EXCEEDED, PROVIDER_UNAVAILABLE):
                    # No token, rate limited or the breaker open: the budget or the provider is
                    # busy, nothing was learned about this symbol; a later tick tries again.
                    counts["deferred"] += len(due) - index
                    if log:
                        log.info(f"split checks deferred: {exc.message}")
                    break
                counts["failed"] += 1
                ca_store.record_failure(
                    conn,
                    symbol.ticker,
                    checked_at=settings.now(),
                    code=exc.code,
                    message=exc.message,
                )
                if log:
                    log.warning(f"{symbol.ticker}: split check failed: {exc}")
                continue
            counts["requests"] += stats.requests
            new = ca_store.record_splits(
                conn,
                symbol.ticker,
                [(s.execution_date, s.split_from, s.split_to) for s in found],
                checked_at=settings.now(),
            )
            counts["checked"] += 1
            counts["new_splits"] += len(new)
            if log and new:
                log.info(
                    f"{symbol.ticker}: new split(s) "
                    + ", ".join(f"{s.execution_date} {s.split_from:g}->{s.split_to:g}" for s in new)
                )
    return counts


def refetch_requests(
    conn: psycopg.Connection,
    settings: Settings,
    excluded: list[InflightRange],
) -> list[tuple[ca_store.Refetch, dg.RunRequest]]:
    """One run request per symbol with stale bars; symbols whose range overlaps a queued,
    running or recently failed run wait for it."""
    today = settings.today
    requests = []
    for refetch in ca_store.pending_refetches(conn, today, settings.history_start):
        days = calendar.sessions_between(refetch.first_day, refetch.last_day)
        if not days or any(r.covers(refetch.ticker, d) for r in excluded for d in days):
            continue
        tags = {
            **range_tags(refetch.ticker, refetch.ticker, days[0], days[-1]),
            SYMBOL_TAG: refetch.ticker,
            TRIGGER_TAG: TRIGGER,
            SPLITS_TAG: ",".join(d.isoformat() for d in refetch.execution_dates),
        }
        requests.append((refetch, dg.RunRequest(tags=tags)))
    return requests


@dg.sensor(
    name=SENSOR_NAME,
    job_name=BARS_JOB,
    minimum_interval_seconds=15 * 60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Checks each watched symbol's splits on Polygon at most once a day and, when a split "
        "makes stored (split-adjusted) bars stale, requests one bars_job run re-fetching the "
        "symbol's stored range before the split (tag swiftbolt/trigger=split)."
    ),
)
def corporate_actions_sensor(
    context: dg.SensorEvaluationContext,
    polygon: PolygonResource,
    warehouse: WarehouseResource,
) -> dg.SensorResult | dg.SkipReason:
    settings = Settings.from_env()
    with warehouse.connect() as conn:
        counts = check_splits(conn, polygon, settings, context.log)
        excluded = inflight_ranges(context.instance)
        planned = refetch_requests(conn, settings, excluded)
        for refetch, _ in planned:
            ca_store.mark_requested(conn, refetch.ticker, settings.today)
        settled = ca_store.settle(conn, settings.today, settings.history_start)
    summary = (
        f"split checks: {counts['checked']} ok, {counts['failed']} failed, "
        f"{counts['deferred']} deferred, {counts['new_splits']} new split(s), "
        f"{counts['requests']} request(s); settled: {len(settled)}"
    )
    if not planned:
        return dg.SkipReason(f"no stale bars; {summary}")
    assert SYMBOLS.name is not None
    known = set(context.instance.get_dynamic_partitions(SYMBOLS.name))
    new_symbols = sorted({r.ticker for r, _ in planned} - known)
    context.log.info(
        f"{summary}; re-fetching "
        + ", ".join(f"{r.ticker} {r.first_day}..{r.last_day}" for r, _ in planned)
    )
    return dg.SensorResult(
        run_requests=[request for _, request in planned],
        dynamic_partitions_requests=[SYMBOLS.build_add_request(new_symbols)] if new_symbols else [],
    )
