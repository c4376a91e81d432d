"""Alpaca history: the symbols of a run that need the same window are fetched together, up to
50 per request (`AlpacaClient.fetch_m15_batch`), then each symbol's bars are cleaned and
stored exactly like Polygon's (`ingest.store.WindowStore`: partitions committed with the
checkpoint, confirmations and ledger row).

Ledger cost of a batch: every symbol of it gets its own `job_runs` row; the batch's one planned
request and the requests it actually took (pages, retries) are spread over those rows (integer
shares, remainders to the first symbols), so sums over a run stay the true request counts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl
import psycopg

from swiftbolt_pipeline.core.models import BAR_SCHEMA
from swiftbolt_pipeline.core.planning import RequestWindow
from swiftbolt_pipeline.ingest.store import SymbolIngest, WindowStore, fail_window, start_window
from swiftbolt_pipeline.providers.alpaca import AlpacaClient
from swiftbolt_pipeline.providers.errors import ProviderError
from swiftbolt_pipeline.providers.http import RequestStats

log = logging.getLogger(__name__)


@dataclass
class BatchMember:
    """One symbol of a batch: where its results go."""

    result: SymbolIngest
    symbol_id: int


def shares(total: int, n: int) -> list[int]:
    """`total` split over `n` parts as evenly as integers allow, larger parts first."""
    base, extra = divmod(total, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def split_stats(stats: RequestStats, n: int) -> list[RequestStats]:
    """A batch's cost split over its `n` symbols; the parts add up to `stats`."""
    requests, retries, limited = (
        shares(stats.requests, n),
        shares(stats.retries, n),
        shares(stats.rate_limited, n),
    )
    return [
        RequestStats(requests[i], retries[i], limited[i], stats.token_wait_s / n) for i in range(n)
    ]


def ingest_batch(
    conn: psycopg.Connection,
    alpaca: AlpacaClient,
    *,
    run_id: str,
    window: RequestWindow,
    members: Sequence[BatchMember],
) -> dict[str, ProviderError]:
    """Fetch `window` for the members (at most 50 symbols: one multi-symbol request plus its
    pages) and store each symbol's partitions.

    Returns the per-symbol errors, such as an off-grid answer (the other symbols are still
    stored). A failure of the request itself (PROVIDER_UNAVAILABLE,
    AUTH_FAILED, ...) fails every member's ledger row and is raised."""
    n = len(members)
    planned = shares(1, n)
    fetch_ids = [
        start_window(conn, run_id, alpaca.provider, m.result.symbol, window, expected=planned[i])
        for i, m in enumerate(members)
    ]
    for member, expected in zip(members, planned, strict=True):
        member.result.expected_cost += expected
    stats = RequestStats()
    tickers = [m.result.symbol for m in members]
    try:
        batch = alpaca.fetch_m15_batch(tickers, window.first, window.last, stats)
    except ProviderError as exc:
        for member, fetch_id, part in zip(members, fetch_ids, split_stats(stats, n), strict=True):
            member.result.stats.add(part)
            fail_window(conn, fetch_id, part.requests, exc)
        raise
    log.info(
        "alpaca %d symbol(s) %s..%s: %d request(s) incl. pages and retries, %d missing",
        n, window.first, window.last, stats.requests, len(batch.missing),
    )  # fmt: skip
    errors: dict[str, ProviderError] = {}
    for member, fetch_id, part in zip(members, fetch_ids, split_stats(stats, n), strict=True):
        result = member.result
        result.stats.add(part)
        raw = batch.bars.get(result.symbol.upper(), pl.DataFrame(schema=BAR_SCHEMA))
        store = WindowStore(
            conn,
            provider=alpaca.provider,
            fetch_id=fetch_id,
            symbol_id=member.symbol_id,
            window=window,
            result=result,
        )
        try:
            store.add(raw, part)
            store.finish(part)
        except ProviderError as exc:
            store.fail(part, exc)
            errors[result.symbol] = exc
    return errors
