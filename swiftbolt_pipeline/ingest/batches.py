"""One request window of history for a batch of symbols: one symbol for a provider that
serves one per request (Polygon), up to its `max_symbols` for one that serves many (Alpaca).
Each symbol's bars take the one write path (`ingest.store.WindowStore`: partitions committed
with the checkpoint, confirmations and ledger row) page by page as they arrive.

Ledger cost of a batch: every symbol of it gets its own `job_runs` row; the batch's one planned
request and the requests it actually took (pages, retries) are spread over those rows (integer
shares, remainders to the first symbols), so sums over a run stay the true request counts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from swiftbolt_pipeline.core.errors import ProviderError
from swiftbolt_pipeline.core.models import RAW_BAR_MINUTES
from swiftbolt_pipeline.core.planning import RequestWindow
from swiftbolt_pipeline.ingest.store import SymbolIngest, WindowStore
from swiftbolt_pipeline.providers.http import RequestStats
from swiftbolt_pipeline.providers.registry import HistoryProvider

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


def fetch_window(
    conn: psycopg.Connection,
    client: HistoryProvider,
    *,
    run_id: str,
    window: RequestWindow,
    members: Sequence[BatchMember],
) -> dict[str, ProviderError]:
    """Fetch `window` for the members (at most `client.max_symbols`: one request plus its
    pages) and store each symbol's partitions.

    Returns the per-symbol errors, such as an off-grid answer (the other symbols are still
    stored). A failure of the request itself (PROVIDER_UNAVAILABLE, AUTH_FAILED, ...) fails
    every member's ledger row and is raised."""
    n = len(members)
    stores = {
        m.result.symbol: WindowStore.start(
            conn, run_id, client.provider, m.symbol_id, window, m.result, expected=expected
        )
        for m, expected in zip(members, shares(1, n), strict=True)
    }
    stats = RequestStats()
    errors: dict[str, ProviderError] = {}
    (timeframe,) = {m.result.timeframe for m in members}  # a batch shares its bar size
    bar_minutes = RAW_BAR_MINUTES[timeframe]
    try:
        for page in client.history_pages(
            list(stores), window.first, window.last, stats, bar_minutes=bar_minutes
        ):
            for symbol, store in stores.items():
                bars = page.get(symbol)
                if bars is None or symbol in errors:
                    continue
                try:
                    store.add(bars, stats)
                except ProviderError as exc:
                    errors[symbol] = exc
            if len(errors) == n:  # no symbol left to store: no further page
                break
    except ProviderError as exc:
        for (symbol, store), part in zip(stores.items(), split_stats(stats, n), strict=True):
            store.result.stats.add(part)
            if symbol not in errors:
                try:  # keep what the pages received complete: a resumed fetch starts after it
                    store.flush(part)
                except ProviderError as bad:
                    errors[symbol] = bad
            store.fail(part, errors.get(symbol, exc))
        raise
    if n > 1:
        log.info(
            "%s %d symbol(s) %s..%s: %d request(s) incl. pages and retries",
            client.provider, n, window.first, window.last, stats.requests,
        )  # fmt: skip
    for (symbol, store), part in zip(stores.items(), split_stats(stats, n), strict=True):
        store.result.stats.add(part)
        if symbol not in errors:
            try:
                store.finish(part)
                continue
            except ProviderError as exc:
                errors[symbol] = exc
        store.fail(part, errors[symbol])
    return errors
