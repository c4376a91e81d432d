"""History provider routing: the run's providers in order, primary first.

Every symbol's remaining windows go to the first provider. When it is unavailable
(PROVIDER_UNAVAILABLE: retries exhausted, circuit breaker open, or not configured), that
symbol's REMAINING windows go to the next provider; windows already committed stay. The
breakers live in PostgreSQL, so once the primary's breaker closes again (cooldown, successful
probe), later fetches use it again without any change here.

Symbols that need the same window share a request, up to the provider's `max_symbols`: Polygon
(one) fetches symbol by symbol, one request per ~50-session window plus pages; Alpaca fetches
up to 50 symbols together.

Outcomes are per symbol: a symbol that fails (nothing served: SYMBOL_NOT_FOUND; no provider
available; a malformed answer) has its `SymbolIngest.error` set and never stops the others.
Only a rejected key (AUTH_FAILED) stops everything: every further request would fail alike."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

import psycopg

from swiftbolt_pipeline.core.errors import AUTH_FAILED, PROVIDER_UNAVAILABLE, ProviderError
from swiftbolt_pipeline.core.models import Provider, Timeframe
from swiftbolt_pipeline.core.planning import RequestWindow, plan_requests
from swiftbolt_pipeline.ingest.batches import BatchMember, fetch_window
from swiftbolt_pipeline.ingest.store import SymbolIngest, finish_symbol, prepare_symbol
from swiftbolt_pipeline.providers.registry import HistoryProvider

log = logging.getLogger(__name__)

# Opens (or returns the already open) client of a provider; raises PROVIDER_UNAVAILABLE when
# the provider is not configured.
OpenClient = Callable[[Provider], HistoryProvider]


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

    def unavailable(self, provider: Provider, exc: ProviderError) -> None:
        self.result.unavailable.append(provider)
        log.warning(
            "%s: %s unavailable (%s); %d window(s) left for the next provider",
            self.result.symbol, provider, exc.message, len(self.windows),
        )  # fmt: skip


@dataclass
class HistoryRun:
    """A run's history fetch between provider rounds. Plain data (picklable), so each
    provider's round can run in its own step, holding only that provider's pool."""

    providers: tuple[Provider, ...]
    states: list[_Symbol]
    rounds: int = 0
    # The last PROVIDER_UNAVAILABLE answer per symbol, for the error when none is left.
    unavailable: dict[str, ProviderError] = field(default_factory=dict)

    def next_provider(self) -> Provider | None:
        """The provider of the next round: None once no symbol waits or none is left."""
        if self.rounds < len(self.providers) and any(s.waiting for s in self.states):
            return self.providers[self.rounds]
        return None


def start_history(
    conn: psycopg.Connection,
    providers: Sequence[Provider],
    tasks: Sequence[HistoryTask],
    *,
    extended_hours: bool = False,
    timeframe: Timeframe = Timeframe.M15,
    detail_log_level: int = logging.INFO,
) -> HistoryRun:
    """Each task's request windows, after what a killed fetch already stored (no request).
    `timeframe`: the raw series fetched, m15 or (opted-in symbols) m5; the windows are the same
    (`core.planning`: the limit counts base minutes, not bars). `detail_log_level`: of each
    symbol's line per window (see `SymbolIngest`)."""
    states: list[_Symbol] = []
    for task in tasks:
        result = SymbolIngest(
            symbol=task.symbol,
            days=sorted(task.days),
            extended_hours=extended_hours,
            timeframe=timeframe,
            detail_log_level=detail_log_level,
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
    _round(conn, client, run_id, waiting, run.unavailable)


def finish_history(conn: psycopg.Connection, run: HistoryRun) -> list[SymbolIngest]:
    """Every symbol's outcome (`error` set on the failed ones), its checkpoints cleared."""
    for state in run.states:
        result = state.result
        result.providers = result.providers or run.providers[:1]
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


def _no_provider(last: ProviderError, providers: Sequence[Provider]) -> ProviderError:
    if len(providers) == 1:
        return last
    return ProviderError(
        PROVIDER_UNAVAILABLE,
        f"no history provider available (tried {', '.join(providers)}): {last.message}",
        provider=last.provider,
        requests=last.requests,
    )


def _round(
    conn: psycopg.Connection,
    client: HistoryProvider,
    run_id: str,
    waiting: list[_Symbol],
    unavailable: dict[str, ProviderError],
) -> None:
    """Every waiting symbol's windows in order: the next window of the first symbol, shared
    with the symbols whose next window is the same, up to `client.max_symbols` (with one, a
    symbol's windows one after another), until a symbol is done, fails for good (the others go
    on) or finds the provider unavailable (its remaining windows wait for the next one)."""
    blocked: set[str] = set()
    while True:
        pending = [s for s in waiting if s.waiting and s.result.symbol not in blocked]
        if not pending:
            return
        window = pending[0].windows[0]
        group = [s for s in pending if s.windows[0] == window][: client.max_symbols]
        try:
            errors = fetch_window(
                conn,
                client,
                run_id=run_id,
                window=window,
                members=[BatchMember(s.result, s.symbol_id) for s in group],
            )
        except ProviderError as exc:
            if exc.code == AUTH_FAILED:
                raise
            for state in group:
                blocked.add(state.result.symbol)
                if exc.code == PROVIDER_UNAVAILABLE:
                    state.unavailable(client.provider, exc)
                    unavailable[state.result.symbol] = exc
                else:
                    state.result.error = exc
            continue
        for state in group:
            if state.result.symbol in errors:
                state.result.error = errors[state.result.symbol]
                continue
            state.windows.pop(0)
            state.result.note_provider(client.provider)
