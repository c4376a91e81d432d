"""The HTTP API: coverage, ensure-coverage, bars, corporate actions and token status for chart
apps.

One connection pool and one Dagster instance per app, opened at startup (or on first use when
the app runs without its lifespan) and closed at shutdown. Coverage and ensure share
`services.ensure.symbol_coverage` with `swiftbolt coverage`: one implementation, two front doors.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import dagster as dg
import psycopg
from fastapi import FastAPI, Path, Query, Response
from fastapi.openapi.utils import get_openapi
from psycopg_pool import ConnectionPool

from swiftbolt_pipeline.api.auth import AccessMiddleware, AllowedHostsMiddleware
from swiftbolt_pipeline.api.errors import ERROR_RESPONSES, ApiError, install_error_handlers
from swiftbolt_pipeline.api.models import (
    BAR_FIELDS,
    BARS_JSON,
    BarsOut,
    CorporateActionsOut,
    CoverageOut,
    DividendOut,
    EnsureCoverageIn,
    SplitOut,
    StatusOut,
    Ticker,
    TokenStatusOut,
    WindowDays,
)
from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.names import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    TRIGGER_TAG,
    parse_partition_key,
)
from swiftbolt_pipeline.services.coverage import inflight_ranges
from swiftbolt_pipeline.services.ensure import symbol_coverage
from swiftbolt_pipeline.storage import breaker, ratelimit, watchlist
from swiftbolt_pipeline.storage import corporate_actions as ca_store
from swiftbolt_pipeline.storage import dividends as dividend_store
from swiftbolt_pipeline.storage.charts import answer_in_utc, chart_bars

# Longest `end - start` one /v1/bars request may span, per timeframe: at most ~10,000 bars
# (m5: 78 bars a session, m15: 26, h1: 7, h4: 2, d1: 1); w1 and mo1 fit the whole 20-year
# daily depth. Longer ranges are refused (INVALID_RANGE); a chart app pages through them.
MAX_BARS_SPAN = {
    Timeframe.M5: timedelta(days=122),
    Timeframe.M15: timedelta(days=366),
    Timeframe.H1: timedelta(days=1830),
    Timeframe.H4: timedelta(days=3660),
    Timeframe.D1: timedelta(days=7320),
    Timeframe.W1: timedelta(days=7320),
    Timeframe.MO1: timedelta(days=7320),
}
POOL_TIMEOUT_S = 10.0

InstanceFactory = Callable[[], AbstractContextManager[dg.DagsterInstance]]


@dataclass
class ApiResources:
    """What the endpoints share: a psycopg pool and the Dagster instance (for in-flight runs)."""

    database_url: str
    instance_factory: InstanceFactory | None
    settings_factory: Callable[[], Settings]
    max_connections: int = 10
    _pool: ConnectionPool[psycopg.Connection] | None = None
    _instance: dg.DagsterInstance | None = None
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def open(self) -> None:
        with self._lock:
            if self._pool is None:
                pool: ConnectionPool[psycopg.Connection] = ConnectionPool(
                    self.database_url,
                    min_size=1,
                    max_size=self.max_connections,
                    kwargs={"autocommit": True},
                    configure=answer_in_utc,
                    timeout=POOL_TIMEOUT_S,
                    name="swiftbolt-api",
                    open=False,
                )
                pool.open(wait=True, timeout=POOL_TIMEOUT_S)
                self._stack.callback(pool.close)
                self._pool = pool
            if self._instance is None and self.instance_factory is not None:
                self._instance = self._stack.enter_context(self.instance_factory())

    def close(self) -> None:
        with self._lock:
            self._stack.close()
            self._pool = None
            self._instance = None

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        if self._pool is None:
            self.open()
        assert self._pool is not None
        with self._pool.connection() as conn:
            yield conn

    @property
    def instance(self) -> dg.DagsterInstance | None:
        if self._instance is None and self.instance_factory is not None:
            self.open()
        return self._instance

    def settings(self) -> Settings:
        return self.settings_factory()


def create_app(
    database_url: str,
    instance_factory: InstanceFactory | None,
    settings_factory: Callable[[], Settings] = Settings.from_env,
    api_token: str | None = None,
    *,
    tokenless_writes: bool = False,
    hosts: Iterable[str] = (),
    max_connections: int = 10,
) -> FastAPI:
    """The API over `database_url`. `instance_factory` opens the Dagster instance whose queued
    and running backfills coverage reports (None: report without them); `settings_factory`
    gives the clock and history window.

    With `api_token`, every request needs that bearer token; without it, only reads are
    answered unless `tokenless_writes`. The Host header must name localhost, 127.0.0.1, [::1]
    or one of `hosts`."""
    resources = ApiResources(database_url, instance_factory, settings_factory, max_connections)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources.open()
        try:
            yield
        finally:
            resources.close()

    app = FastAPI(
        title="SwiftBolt archive API",
        version="1",
        description=(
            "Coverage, ensure-coverage and bars of the SwiftBolt intraday archive for chart "
            'apps. Errors answer `{"error": {"code", "message"}}`. '
            "A server without an API token answers reads only (WRITES_DISABLED) unless started "
            "with `--insecure-no-token`; a Host header not naming the server gets INVALID_HOST. "
            "`/v1/bars` refuses ranges longer than: "
            + ", ".join(f"{tf.value} {span.days} days" for tf, span in MAX_BARS_SPAN.items())
            + " (INVALID_RANGE); page through longer ones."
        ),
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    app.state.resources = resources
    install_error_handlers(app)
    app.add_middleware(AccessMiddleware, token=api_token, tokenless_writes=tokenless_writes)
    # Added last, so it runs first: a foreign page learns nothing, not even whether auth is on.
    app.add_middleware(AllowedHostsMiddleware, hosts=hosts)
    _install_openapi(app, secured=bool(api_token))

    @app.get("/v1/coverage", response_model=CoverageOut, tags=["coverage"])
    def get_coverage(
        symbol: Annotated[Ticker, Query()],
        timeframe: Annotated[Timeframe, Query()] = Timeframe.H1,
        window_days: Annotated[WindowDays | None, Query()] = None,
    ) -> Any:
        """Coverage of the symbol's window: status, backfill progress and gaps (the
        `swiftbolt coverage --json` object). A symbol the archive does not know yet answers
        `gaps_detected` with nothing covered."""
        return _coverage(resources, symbol, timeframe, window_days, ensure=False)

    @app.post("/v1/ensure-coverage", response_model=CoverageOut, tags=["coverage"])
    def ensure_coverage(body: EnsureCoverageIn) -> Any:
        """Request the missing backfill: adds the symbol to the watchlist if absent (or widens
        its window); the coverage_gap_sensor launches the runs. Idempotent: poll it."""
        return _coverage(resources, body.symbol, body.timeframe, body.window_days, ensure=True)

    @app.get("/v1/bars", response_model=BarsOut, tags=["bars"])
    def get_bars(
        symbol: Annotated[Ticker, Query()],
        start: Annotated[datetime, Query(description="ISO-8601; without an offset, UTC")],
        end: Annotated[datetime, Query(description="ISO-8601, inclusive; without offset, UTC")],
        timeframe: Annotated[Timeframe, Query()] = Timeframe.H1,
    ) -> Any:
        """Bars with start <= ts <= end, ordered by ts, from `get_chart_data_v2`: history and
        today's intraday bars in one seamless series."""
        lo, hi = _utc(start, "start"), _utc(end, "end")
        if hi < lo:
            raise ApiError(
                "INVALID_RANGE", f"end {hi.isoformat()} is before start {lo.isoformat()}"
            )
        limit = MAX_BARS_SPAN[timeframe]
        if hi - lo > limit:
            raise ApiError(
                "INVALID_RANGE",
                f"{timeframe.value} requests span at most {limit.days} days; "
                "split the range into several requests",
            )
        with resources.connection() as conn:
            rows = chart_bars(conn, symbol, timeframe, lo, hi)
            if not rows and watchlist.lookup(conn, symbol) is None:
                raise ApiError("SYMBOL_NOT_FOUND", f"the archive has no symbol {symbol}")
        body = {
            "symbol": symbol,
            "timeframe": timeframe,
            "bars": [dict(zip(BAR_FIELDS, row, strict=True)) for row in rows],
        }
        return Response(BARS_JSON.dump_json(body), media_type="application/json")

    @app.get("/v1/tokens/{provider}", response_model=TokenStatusOut, tags=["tokens"])
    def get_tokens(provider: Annotated[str, Path(min_length=1, max_length=32)]) -> Any:
        """The provider's token-bucket status (the `get_token_status` row)."""
        with resources.connection() as conn:
            try:
                (status,) = ratelimit.token_status(conn, provider)
            except LookupError:
                raise ApiError("UNKNOWN_PROVIDER", f"unknown provider {provider!r}") from None
        return TokenStatusOut.model_validate(status.to_json())

    @app.get(
        "/v1/corporate-actions", response_model=CorporateActionsOut, tags=["corporate actions"]
    )
    def get_corporate_actions(symbol: Annotated[Ticker, Query()]) -> Any:
        """The symbol's splits and cash dividends as last checked with the history provider
        (once a day per watched symbol), each list by date."""
        with resources.connection() as conn:
            splits = ca_store.splits(conn, symbol)
            dividends = dividend_store.dividends(conn, symbol)
            if not splits and not dividends and watchlist.lookup(conn, symbol) is None:
                raise ApiError("SYMBOL_NOT_FOUND", f"the archive has no symbol {symbol}")
        return CorporateActionsOut(
            symbol=symbol,
            splits=[SplitOut.model_validate(s, from_attributes=True) for s in splits],
            dividends=[DividendOut.model_validate(d, from_attributes=True) for d in dividends],
        )

    @app.get("/v1/status", response_model=StatusOut, tags=["status"])
    def get_status() -> Any:
        """Queued, running and recent runs, token buckets, circuit breakers and parked
        symbols: what an operator checks first."""
        with resources.connection() as conn:
            buckets = [
                TokenStatusOut.model_validate(t.to_json()) for t in ratelimit.token_status(conn)
            ]
            breakers = [asdict(b) for b in breaker.all_states(conn)]
            parked = [
                {"symbol": s.ticker, "reason": s.parked_reason, "parked_at": s.parked_at}
                for s in watchlist.parked(conn)
            ]
        return StatusOut.model_validate(
            {
                "runs": _runs(resources.instance),
                "token_buckets": buckets,
                "breakers": breakers,
                "parked_symbols": parked,
            }
        )

    return app


RECENT_RUNS = 20


def _runs(instance: dg.DagsterInstance | None) -> dict[str, Any]:
    if instance is None:
        return {"queued": 0, "running": 0, "recent": []}
    inflight = inflight_ranges(instance)
    running = sum(r.running for r in inflight)
    recent = [
        {
            "run_id": run.run_id,
            "status": run.status.value,
            "trigger": run.tags.get(TRIGGER_TAG)
            or run.tags.get("dagster/sensor_name")
            or run.tags.get("dagster/schedule_name"),
            "symbols": _span(run.tags, 0),
            "days": _span(run.tags, 1),
            "updated_at": record.update_timestamp,
        }
        for record in instance.get_run_records(limit=RECENT_RUNS)
        if (run := record.dagster_run)
    ]
    return {"queued": len(inflight) - running, "running": running, "recent": recent}


def _span(tags: Mapping[str, str], part: int) -> str | None:
    """`first..last` of one dimension (0: symbol, 1: day) of a run's partition range."""
    try:
        first = parse_partition_key(tags.get(RANGE_START_TAG, ""))
        last = parse_partition_key(tags.get(RANGE_END_TAG, ""))
    except ValueError:  # not a range of bar partitions
        return None
    return f"{first[part]}..{last[part]}"


def _coverage(
    resources: ApiResources,
    symbol: str,
    timeframe: Timeframe,
    window_days: int | None,
    *,
    ensure: bool,
) -> CoverageOut:
    settings = resources.settings()
    instance = resources.instance
    with resources.connection() as conn:
        report = symbol_coverage(
            conn,
            instance,
            settings,
            symbol=symbol,
            timeframe=timeframe,
            window_days=window_days,
            ensure=ensure,
        )
    return CoverageOut.model_validate(report.to_json())


def _utc(value: datetime, what: str) -> datetime:
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ApiError("INVALID_RANGE", f"{what} is out of range") from None


def _install_openapi(app: FastAPI, *, secured: bool) -> None:
    """The generated document, plus the bearer scheme when a token is configured."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            if secured:
                components = schema.setdefault("components", {})
                components["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
                schema["security"] = [{"bearerAuth": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
