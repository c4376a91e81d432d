"""History provider routing: the run's providers in order, primary first.

Every symbol's remaining windows go to the first provider. When it is unavailable
(PROVIDER_UNAVAILABLE: retries exhausted, circuit breaker open, or not configured), that
symbol's REMAINING windows go to the next provider; windows already committed stay. The
breakers live in PostgreSQL, so once the primary's breaker closes again (cooldown, successful
probe), later fetches use it again without any change here.

Polygon is fetched symbol by symbol (one request per ~50-session window plus pages); Alpaca
fetches the symbols that need the same window together, up to 50 per request.

Outcomes are per symbol: a symbol that fails (nothing served: SYMBOL_NOT_FOUND; no provider
available; a malformed answer) has its `SymbolIngest.error` set and never stops the others.
Only a rejected key (AUTH_FAILED) stops everything: every further request would fail alike."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

import psycopg

from swiftbolt_pipeline.core.planning import RequestWindow, plan_requests
from swiftbolt_pipeline.ingest.batches import BatchMember, ingest_batch
from swiftbolt_pipeline.ingest.store import (
    SymbolIngest,
    fetch_window,
    finish_symbol,
    prepare_symbol,
)
from swiftbolt_pipeline.providers.alpaca import AlpacaClient, plan_batches
from swiftbolt_pipeline.providers.errors import AUTH_FAILED, PROVIDER_UNAVAILABLE, ProviderError
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

    @property
    def waiting(self) -> bool:
        return bool(self.windows) and self.result.error is None

    def unavailable(self, provider: str, exc: ProviderError) -> None:
        self.result.unavailable.append(provider)
        log.warning(
            "%s: %s unavailable (%s); %d window(s) left for the next provider",
            self.result.symbol, provider, exc.message, len(self.windows),
        )  # fmt: skip


@dataclass
class HistoryRun:
    """A run's history fetch between provider rounds. Plain data (picklable), so each
    provider's round can run in its own step, holding only that provider's pool."""

    providers: tuple[str, ...]
    states: list[_Symbol]
    rounds: int = 0
    # The last PROVIDER_UNAVAILABLE answer per symbol, for the error when none is left.
    unavailable: dict[str, ProviderError] = field(default_factory=dict)

    def next_provider(self) -> str | None:
        """The provider of the next round: None once no symbol waits or none is left."""
        if self.rounds < len(self.providers) and any(s.waiting for s in self.states):
            return self.providers[self.rounds]
        return None


def start_history(
    conn: psycopg.Connection,
    providers: Sequence[str],
    tasks: Sequence[HistoryTask],
    *,
    extended_hours: bool = False,
) -> HistoryRun:
    """Each task's request windows, after what a killed fetch already stored (no request)."""
    states: list[_Symbol] = []
    for task in tasks:
        result = SymbolIngest(
            symbol=task.symbol,
            days=sorted(task.days),
            provider="",
            extended_hours=extended_hours,
        )
        todo = prepare_symbol(conn, task.symbol_id, result)
        windows = plan_requests(todo)
        states.append(_Symbol(result, task.symbol_id, todo, windows, planned=bool(windows)))
    return HistoryRun(tuple(providers), states)


def history_round(
    conn: psycopg.Connection, run: HistoryRun, open_client: OpenClient, *, run_id: str
) -> None:
    """The next provider fetches every waiting symbol's remaining windows. Raises AUTH_FAILED."""
    provider = run.next_provider()
    if provider is None:
        return
    run.rounds += 1
    waiting = [s for s in run.states if s.waiting]
    try:
        client = open_client(provider)
    except ProviderError as exc:
        if exc.code != PROVIDER_UNAVAILABLE:
            raise
        for state in waiting:
            state.unavailable(provider, exc)
            run.unavailable[state.result.symbol] = exc
        return
    if isinstance(client, AlpacaClient):
        _alpaca_round(conn, client, run_id, waiting, run.unavailable)
    else:
        _polygon_round(conn, client, run_id, waiting, run.unavailable)


def finish_history(conn: psycopg.Connection, run: HistoryRun) -> list[SymbolIngest]:
    """Every symbol's outcome (`error` set on the failed ones), its checkpoints cleared."""
    for state in run.states:
        result = state.result
        result.provider = result.provider or run.providers[0]
        if state.waiting:
            result.error = _no_provider(run.unavailable[result.symbol], run.providers)
        elif result.error is None:
            try:
                finish_symbol(conn, state.symbol_id, result, planned=state.planned, todo=state.todo)
            except ProviderError as exc:
                result.error = exc
        if result.error is not None:
            log.warning("%s: failed [%s] %s", result.symbol, result.error.code, result.error)
    return [s.result for s in run.states]


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

    Returns every symbol's outcome (`error` set on the failed ones). Raises AUTH_FAILED."""
    run = start_history(conn, providers, tasks, extended_hours=extended_hours)
    while run.next_provider() is not None:
        history_round(conn, run, open_client, run_id=run_id)
    return finish_history(conn, run)


def _no_provider(last: ProviderError, providers: Sequence[str]) -> ProviderError:
    if len(providers) == 1:
        return last
    return ProviderError(
        PROVIDER_UNAVAILABLE,
        f"no history provider available (tried {', '.join(providers)}): {last.message}",
        provider=last.provider,
        requests=last.requests,
    )


def _polygon_round(
    conn: psycopg.Connection,
    client: PolygonClient,
    run_id: str,
    waiting: list[_Symbol],
    unavailable: dict[str, ProviderError],
) -> None:
    """Each symbol's windows in order until one is unavailable (the rest wait for the next
    provider) or fails for good (the symbol is done, the others go on)."""
    for state in waiting:
        while state.windows:
            window = state.windows[0]
            state.result.expected_cost += 1
            try:
                fetch_window(conn, client, run_id, state.symbol_id, window, state.result)
            except ProviderError as exc:
                if exc.code == AUTH_FAILED:
                    raise
                if exc.code == PROVIDER_UNAVAILABLE:
                    state.unavailable(client.provider, exc)
                    unavailable[state.result.symbol] = exc
                else:
                    state.result.error = exc
                break
            state.windows.pop(0)
            state.result.note_provider(client.provider)


def _alpaca_round(
    conn: psycopg.Connection,
    client: AlpacaClient,
    run_id: str,
    waiting: list[_Symbol],
    unavailable: dict[str, ProviderError],
) -> None:
    """Symbols whose next window is the same go together, 50 per request, until every
    window is done or Alpaca is unavailable for them."""
    blocked: set[str] = set()
    while True:
        groups: dict[RequestWindow, list[_Symbol]] = {}
        for state in waiting:
            if state.waiting and state.result.symbol not in blocked:
                groups.setdefault(state.windows[0], []).append(state)
        if not groups:
            return
        for window, group in groups.items():
            by_symbol = {s.result.symbol.upper(): s for s in group}
            for chunk in plan_batches(list(by_symbol)):
                members = [by_symbol[t] for t in chunk]
                try:
                    errors = ingest_batch(
                        conn,
                        client,
                        run_id=run_id,
                        window=window,
                        members=[BatchMember(m.result, m.symbol_id) for m in members],
                    )
                except ProviderError as exc:
                    if exc.code == AUTH_FAILED:
                        raise
                    for state in members:
                        blocked.add(state.result.symbol)
                        if exc.code == PROVIDER_UNAVAILABLE:
                            state.unavailable(client.provider, exc)
                            unavailable[state.result.symbol] = exc
                        else:
                            state.result.error = exc
                    continue
                for state in members:
                    if state.result.symbol in errors:
                        state.result.error = errors[state.result.symbol]
                        continue
                    state.windows.pop(0)
                    state.result.note_provider(client.provider)
