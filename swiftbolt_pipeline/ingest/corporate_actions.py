"""Store the splits and dividends of watched symbols, and keep stored prices consistent with the
history provider's split adjustment.

Two steps, each a plain function the corporate-actions sensor calls once per tick:

1. `check_corporate_actions` (costs Polygon requests): the splits and cash dividends of a few
   watched symbols whose last check is more than a day old (never-checked first) are fetched
   from `/v3/reference/splits` and `/v3/reference/dividends` and stored (`corporate_actions`,
   `dividends`) with the check, in one transaction. The requests take tokens from the shared
   bucket like any fetch, but never wait long for one: when the budget is busy (a backfill is
   running) the check is deferred to a later tick.
2. `claim_refetches` (database only): every symbol with stored bars made stale by an executed
   split (see `storage/corporate_actions.py` for the rule) whose stored range before the split
   no queued, running or recently failed run covers; each is marked requested, and a split
   without stale bars left is settled, so it costs nothing afterwards."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Protocol

import psycopg

from swiftbolt_pipeline.config import PipelineClock
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.errors import (
    PROVIDER_UNAVAILABLE,
    RATE_LIMIT_EXCEEDED,
    ProviderError,
)
from swiftbolt_pipeline.providers.http import RequestStats
from swiftbolt_pipeline.providers.polygon_reference import DividendEvent, PolygonReferenceClient
from swiftbolt_pipeline.storage import corporate_actions as ca_store
from swiftbolt_pipeline.storage import dividends as dividend_store

# At most this many symbols are checked per tick, and no new check starts after the tick has
# spent CHECK_BUDGET_S: a sensor tick must finish well within Dagster's 60 s evaluation limit.
MAX_CHECKS_PER_TICK = 3
CHECK_BUDGET_S = 20.0
# How long one request may wait for a token from the shared bucket before the check is deferred.
TOKEN_WAIT_S = 8.0
# Retries of one check request inside a tick (the next tick retries anyway).
MAX_ATTEMPTS = 2


class ReferenceSource(Protocol):
    """Opens the reference-data client (the `polygon` resource does)."""

    def reference_client(
        self, *, max_attempts: int, max_token_wait_s: float
    ) -> AbstractContextManager[PolygonReferenceClient]: ...


@dataclass
class CorporateActionChecks:
    checked: int = 0
    new_splits: int = 0
    dividends: int = 0
    failed: int = 0
    deferred: int = 0
    requests: int = 0

    def summary(self) -> str:
        return (
            f"corporate-action checks: {self.checked} ok, {self.failed} failed, "
            f"{self.deferred} deferred, {self.new_splits} new split(s), "
            f"{self.dividends} dividend(s), {self.requests} request(s)"
        )


@dataclass(frozen=True)
class ClaimedRefetch:
    """A symbol's stale range to fetch again, marked requested."""

    refetch: ca_store.Refetch
    days: list[date]


def check_corporate_actions(
    conn: psycopg.Connection,
    source: ReferenceSource,
    settings: PipelineClock,
    log: logging.Logger | None = None,
) -> CorporateActionChecks:
    """Fetch and store the splits and dividends of the symbols due for a check."""
    counts = CorporateActionChecks()
    due = ca_store.due_for_check(conn, settings.now(), limit=MAX_CHECKS_PER_TICK)
    if not due:
        return counts
    started = time.monotonic()
    with source.reference_client(
        max_attempts=MAX_ATTEMPTS, max_token_wait_s=TOKEN_WAIT_S
    ) as client:
        for index, symbol in enumerate(due):
            if time.monotonic() - started > CHECK_BUDGET_S:
                counts.deferred += len(due) - index
                break
            stats = RequestStats()
            try:
                found = client.fetch_splits(symbol.ticker, stats, since=settings.history_start)
                dividends = client.fetch_dividends(symbol.ticker, stats)
            except ProviderError as exc:
                counts.requests += stats.requests
                if exc.code in (RATE_LIMIT_EXCEEDED, PROVIDER_UNAVAILABLE):
                    # No token, rate limited or the breaker open: the budget or the provider is
                    # busy, nothing was learned about this symbol; a later tick tries again.
                    counts.deferred += len(due) - index
                    if log:
                        log.info(f"corporate-action checks deferred: {exc.message}")
                    break
                counts.failed += 1
                ca_store.record_failure(
                    conn,
                    symbol.ticker,
                    checked_at=settings.now(),
                    code=exc.code,
                    message=exc.message,
                )
                if log:
                    log.warning(f"{symbol.ticker}: corporate-action check failed: {exc}")
                continue
            counts.requests += stats.requests
            checked_at = settings.now()
            with conn.transaction():
                dividend_store.replace_dividends(
                    conn, symbol.ticker, [_row(d) for d in dividends], fetched_at=checked_at
                )
                new = ca_store.record_splits(
                    conn,
                    symbol.ticker,
                    [(s.execution_date, s.split_from, s.split_to) for s in found],
                    checked_at=checked_at,
                    dividends_found=len(dividends),
                )
            counts.checked += 1
            counts.new_splits += len(new)
            counts.dividends += len(dividends)
            if log and new:
                log.info(
                    f"{symbol.ticker}: new split(s) "
                    + ", ".join(f"{s.execution_date} {s.split_from:g}->{s.split_to:g}" for s in new)
                )
    return counts


def _row(event: DividendEvent) -> dividend_store.DividendRow:
    return dividend_store.DividendRow(
        symbol=event.ticker,
        ex_date=event.ex_date,
        record_date=event.record_date,
        pay_date=event.pay_date,
        # Through its shortest decimal text: 0.26 stays 0.26, not the float's binary expansion.
        cash_amount=Decimal(repr(event.cash_amount)),
        currency=event.currency,
        frequency=event.frequency,
        type=event.type,
    )


def claim_refetches(
    conn: psycopg.Connection, settings: PipelineClock, busy: Callable[[str, date], bool]
) -> tuple[list[ClaimedRefetch], list[tuple[str, date]]]:
    """The stale ranges to fetch again (a symbol with a `busy` session waits for that run),
    each marked requested; and the splits settled now."""
    today = settings.today
    claimed = []
    for refetch in ca_store.pending_refetches(conn, today, settings.history_start):
        days = calendar.sessions_between(refetch.first_day, refetch.last_day)
        if not days or any(busy(refetch.ticker, d) for d in days):
            continue
        ca_store.mark_requested(conn, refetch.ticker, today)
        claimed.append(ClaimedRefetch(refetch, days))
    settled = ca_store.settle(conn, today, settings.history_start)
    return claimed, settled
