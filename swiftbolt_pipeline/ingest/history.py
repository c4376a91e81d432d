"""History provider routing (design §4/§5): the run's providers in order, primary first.

Every symbol's remaining windows go to the first provider. When it is unavailable
(PROVIDER_UNAVAILABLE: retries exhausted, circuit breaker open, or not configured), that
symbol's REMAINING windows go to the next provider; windows already committed stay. Other
errors (AUTH_FAILED, MALFORMED_RESPONSE, BAD_REQUEST, ...) do not fall back. The breakers live
in PostgreSQL, so once the primary's breaker closes again (cooldown, successful probe), later
fetches use it again without any change here.

Polygon is fetched symbol by symbol (one request per ~50-session window plus pages); Alpaca
fetches the symbols that need the same window together, up to 50 per request.

A symbol no provider served a single bar for is SYMBOL_NOT_FOUND for that symbol only: the
other symbols are still stored, then the call fails naming every failed symbol."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

import psycopg

from swiftbolt_pipeline.core.planning import RequestWindow, plan_requests
from swiftbolt_pipeline.ingest.alpaca import BatchMember, ingest_batch
from swiftbolt_pipeline.ingest.m15 import (
    SymbolIngest,
    fetch_window,
    finish_symbol,
    skip_resumed,
)
from swiftbolt_pipeline.providers.alpaca import AlpacaClient, plan_batches
from swiftbolt_pipeline.providers.errors import PROVIDER_UNAVAILABLE, ProviderError
from swiftbolt_pipeline.providers.polygon import PolygonClient

log = logging.getLogger(__name__)

HistoryClient = PolygonClient | AlpacaClient
# Opens (or returns the already open) client of a provider; raises PROVIDER_UNAVAILABLE when
# the provider is not configured.
OpenClient = Callable[[str], HistoryClient]


@dataclass(frozen=True)
class HistoryTask:
    """One symbol's historical session days to fetch."""

    symbol: str
    symbol_id: int
    days: Sequence[date]


@dataclass
class _Symbol:
    result: SymbolIngest
    symbol_id: int
    todo: list[date]
    windows: list[RequestWindow]  # still to fetch, in order
    planned: bool = False
    received: int = 0
    blocked: set[str] = field(default_factory=set)  # providers unavailable for this symbol
    error: ProviderError | None = None  # failed for good (e.g. an off-grid answer)

    def unavailable(self, provider: str, exc: ProviderError) -> None:
        self.blocked.add(provider)
        self.result.unavailable.append(provider)
        log.warning(
            "%s: %s unavailable (%s); %d window(s) left for the next provider",
            self.result.symbol, provider, exc.message, len(self.windows),
        )  # fmt: skip


class HistoryFailed(ProviderError):
    """Some symbols failed for good; `results` holds what every symbol did (the failed ones
    included), so callers can still report the stored ones."""

    def __init__(self, cause: ProviderError, message: str, results: list[SymbolIngest]) -> None:
        super().__init__(cause.code, message, provider=cause.provider, requests=cause.requests)
        self.results = results


def ingest_history_routed(
    conn: psycopg.Connection,
    providers: Sequence[str],
    open_client: OpenClient,
    *,
    run_id: str,
    tasks: Sequence[HistoryTask],
    extended_hours: bool = False,
) -> list[SymbolIngest]:
    """Fetch and store the m15 history of every task, routed over `providers` in order.

    Raises HistoryFailed after storing everything it could: PROVIDER_UNAVAILABLE when windows
    are left that no provider could serve, else the first per-symbol error's code (e.g.
    SYMBOL_NOT_FOUND) naming every failed symbol. Any other provider error is raised at once."""
    states: list[_Symbol] = []
    for task in tasks:
        result = SymbolIngest(
            symbol=task.symbol,
            days=sorted(task.days),
            provider="",
            extended_hours=extended_hours,
        )
        todo = skip_resumed(conn, task.symbol, result)
        windows = plan_requests(todo)
        states.append(_Symbol(result, task.symbol_id, todo, windows, planned=bool(windows)))
    last_unavailable: ProviderError | None = None
    for provider in providers:
        waiting = [s for s in states if s.windows]
        if not waiting:
            break
        try:
            client = open_client(provider)
        except ProviderError as exc:
            if exc.code != PROVIDER_UNAVAILABLE:
                raise
            last_unavailable = exc
            for state in waiting:
                state.unavailable(provider, exc)
            continue
        if isinstance(client, AlpacaClient):
            unavailable = _alpaca_round(conn, client, run_id, waiting)
        else:
            unavailable = _polygon_round(conn, client, run_id, waiting)
        last_unavailable = unavailable or last_unavailable
    results = [s.result for s in states]
    for state in states:
        if not state.result.provider:
            state.result.provider = providers[0]
    failures = {s.result.symbol: s.error for s in states if s.error is not None}
    left = [s for s in states if s.windows and s.result.symbol not in failures]
    if left:
        assert last_unavailable is not None
        message = last_unavailable.message
        if len(left) > 1 or len(providers) > 1:
            names = ", ".join(s.result.symbol for s in left)
            tried = ", ".join(providers)
            message = f"no history provider available for {names} (tried {tried}): {message}"
        raise HistoryFailed(last_unavailable, message, results)
    for state in states:
        if state.result.symbol in failures:
            continue
        try:
            finish_symbol(
                conn,
                state.result,
                planned=state.planned,
                received=state.received,
                todo=state.todo,
            )
        except ProviderError as exc:
            failures[state.result.symbol] = exc
    if failures:
        first = next(iter(failures.values()))
        if len(failures) == 1:
            raise HistoryFailed(first, first.message, results)
        detail = "; ".join(f"{s} [{e.code}] {e.message}" for s, e in failures.items())
        raise HistoryFailed(first, f"{len(failures)} symbol(s) failed: {detail}", results)
    return results


def _polygon_round(
    conn: psycopg.Connection, client: PolygonClient, run_id: str, waiting: list[_Symbol]
) -> ProviderError | None:
    """Each symbol's windows in order until one is unavailable (the rest wait for the next
    provider). Returns the last PROVIDER_UNAVAILABLE error, if any."""
    unavailable: ProviderError | None = None
    for state in waiting:
        while state.windows:
            window = state.windows[0]
            try:
                state.received += fetch_window(
                    conn, client, run_id, state.symbol_id, window, state.result
                )
            except ProviderError as exc:
                if exc.code != PROVIDER_UNAVAILABLE:
                    raise
                state.unavailable(client.provider, exc)
                unavailable = exc
                break
            finally:
                state.result.expected_requests += 1
            state.windows.pop(0)
            state.result.note_provider(client.provider)
    return unavailable


def _alpaca_round(
    conn: psycopg.Connection, client: AlpacaClient, run_id: str, waiting: list[_Symbol]
) -> ProviderError | None:
    """Symbols whose next window is the same go together, 50 per request, until every
    window is done or Alpaca is unavailable for them."""
    unavailable: ProviderError | None = None
    while True:
        groups: dict[RequestWindow, list[_Symbol]] = {}
        for state in waiting:
            if state.windows and client.provider not in state.blocked and state.error is None:
                groups.setdefault(state.windows[0], []).append(state)
        if not groups:
            return unavailable
        for window, group in groups.items():
            by_symbol = {s.result.symbol.upper(): s for s in group}
            for chunk in plan_batches(list(by_symbol)):
                members = [by_symbol[t] for t in chunk]
                try:
                    received, errors = ingest_batch(
                        conn,
                        client,
                        run_id=run_id,
                        window=window,
                        members=[BatchMember(m.result, m.symbol_id) for m in members],
                    )
                except ProviderError as exc:
                    if exc.code != PROVIDER_UNAVAILABLE:
                        raise
                    for state in members:
                        state.unavailable(client.provider, exc)
                    unavailable = exc
                    continue
                for state in members:
                    symbol = state.result.symbol
                    if symbol in errors:
                        state.error = errors[symbol]
                        continue
                    state.received += received[symbol]
                    state.windows.pop(0)
                    state.result.note_provider(client.provider)
