"""The emulator's Starlette application: provider routes, auth, rate limit, faults, admin API.

Admin API (no auth), under ``/_emulator/``:

* ``POST /_emulator/faults`` — queue a fault (object or list): ``{"route": "polygon"|"tradier"|
  "alpaca"|"*",
  "kind": "status"|"malformed"|"delay"|"hold"|"disconnect", "count": 1, "status": 503,
  "seconds": 1}``.
  ``status``: respond with that status; ``malformed``: 200 with the real body truncated to half
  (invalid JSON); ``delay``: sleep ``seconds`` then answer normally; ``hold``: answer normally
  once ``POST /_emulator/release`` is called (at most ``seconds`` later: a test that never
  releases cannot hang a client); ``disconnect``: close the TCP
  connection without sending any response (via uvicorn's transport; clients see "server
  disconnected"). Faults apply after auth and rate limiting, and faulted requests count toward
  the rate window. ``GET`` lists pending faults, ``DELETE`` clears them.
* ``GET /_emulator/stats`` — ``{"requests", "rejected_429", "by_status", "faults_pending",
  "config", "log"}`` (log: last 200 provider requests, ``apiKey`` redacted). ``requests`` and
  ``rejected_429`` always list ``polygon`` and ``tradier``; ``alpaca`` appears once it has been
  called since the last reset (read it as ``.get("alpaca", 0)``).
* ``POST /_emulator/release`` — let every request held by a ``hold`` fault answer.
* ``POST /_emulator/reset`` — clear counters, faults, rate windows and runtime splits.
* ``GET``/``PUT /_emulator/config`` — ``rate_limit``, ``rate_window_s``, ``retry_after``,
  ``page_size``, ``next_url_base`` (the host Polygon's ``next_url`` names; see ``polygon.py``),
  ``now`` (the emulator's clock, ISO-8601 with offset; null: ``SWIFTBOLT_NOW`` or real time).
* ``GET /_emulator/health`` — ``{"status": "ok"}``.
* ``POST /_emulator/splits`` — add a stock split (object or list): ``{"ticker": "SPY",
  "execution_date": "2025-11-10", "split_from": 1, "split_to": 4}``; from then on Polygon's
  ``/v3/reference/splits`` lists it and ``adjusted=true`` aggregates are adjusted for it (see
  ``splits.py``). ``GET`` lists the splits, ``DELETE [?ticker=T]`` forgets them.

* ``POST /_emulator/lifecycles`` — when a ticker trades (object or list): ``{"ticker": "ACME",
  "listed_from": "2026-12-10", "delisted_after": null, "halted": ["2026-12-15"]}`` (see
  ``data.Lifecycle``); ``GET`` lists them, ``DELETE [?ticker=T]`` forgets them.
* ``GET /_emulator/requests`` — provider requests per route and ticker since the last reset
  (``{"polygon": {"SPY": 3}, "tradier": {...}}``; the reference and grouped daily endpoints
  count under ``polygon``, keyed by their ``ticker`` query, ``*`` without one).
* ``POST /_emulator/tickers`` — ``{"tickers": ["ACME", ...]}``: stock tickers a grouped daily
  answer lists besides the real-data ones and those any request has named since the last
  reset (see ``grouped.py``); ``GET`` lists them all, ``DELETE`` forgets the named and
  registered ones.

Polygon's ``GET /v3/reference/splits``, ``/v3/reference/dividends`` (see ``dividends.py``)
and ``/v2/aggs/grouped/locale/us/market/stocks/{date}`` (see ``grouped.py``) share the
``polygon`` route: same key, rate window, faults and counters as the aggregates.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from . import alpaca, dividends, grouped, polygon, sessions, splits, tradier
from .data import BarStore, Lifecycle
from .state import EmulatorState, Fault, RuntimeConfig

API_KEY_ENV = "SWIFTBOLT_EMULATOR_API_KEY"
TRADIER_TOKEN_ENV = "SWIFTBOLT_EMULATOR_TRADIER_TOKEN"
ALPACA_KEY_ID_ENV = "SWIFTBOLT_EMULATOR_ALPACA_KEY_ID"
ALPACA_SECRET_KEY_ENV = "SWIFTBOLT_EMULATOR_ALPACA_SECRET_KEY"
_RAW_RECEIVE = "swiftbolt.emulator.raw_receive"


@dataclass
class EmulatorSettings:
    """Emulator configuration.

    ``api_key``: expected Polygon key (None: any non-empty key is accepted).
    ``tradier_token``: expected Tradier bearer token (None: falls back to ``api_key``).
    ``alpaca_key_id``/``alpaca_secret_key``: expected Alpaca ``APCA-API-KEY-ID`` /
    ``APCA-API-SECRET-KEY`` (None: each falls back to ``api_key``).
    ``rate_limit``/``rate_window_s``: N accepted requests per rolling W seconds, per provider
    route over all clients (None: unlimited). ``retry_after``: send ``Retry-After`` on 429.
    ``page_size``: server-forced maximum of aggregated bars per Polygon page (and of bars, over
    all symbols, per Alpaca page).
    """

    api_key: str | None = None
    rate_limit: int | None = None
    rate_window_s: float = 60
    retry_after: bool = False
    page_size: int | None = None
    tradier_token: str | None = None
    alpaca_key_id: str | None = None
    alpaca_secret_key: str | None = None

    @classmethod
    def from_env(cls, **overrides: Any) -> EmulatorSettings:
        """Settings from ``SWIFTBOLT_EMULATOR_API_KEY`` / ``SWIFTBOLT_EMULATOR_TRADIER_TOKEN`` /
        ``SWIFTBOLT_EMULATOR_ALPACA_KEY_ID`` / ``SWIFTBOLT_EMULATOR_ALPACA_SECRET_KEY``, then
        explicit overrides (None overrides are ignored)."""
        base = cls(
            api_key=os.environ.get(API_KEY_ENV) or None,
            tradier_token=os.environ.get(TRADIER_TOKEN_ENV) or None,
            alpaca_key_id=os.environ.get(ALPACA_KEY_ID_ENV) or None,
            alpaca_secret_key=os.environ.get(ALPACA_SECRET_KEY_ENV) or None,
        )
        values = asdict(base) | {k: v for k, v in overrides.items() if v is not None}
        return cls(**values)


@dataclass(frozen=True)
class _Provider:
    name: str
    expected_key: str | None
    authenticate: Callable[[Request, str | None], Response | None]
    rate_limited: Callable[[dict[str, str]], Response]
    fault_response: Callable[[int], Response]
    serve: Callable[[Request, BarStore, RuntimeConfig], Response]


class _DisconnectResponse(Response):
    """Closes the client connection without sending anything."""

    def __init__(self) -> None:
        super().__init__(status_code=0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get(_RAW_RECEIVE, receive)
        transport = getattr(getattr(raw, "__self__", None), "transport", None)
        if transport is None:  # not uvicorn: send a truncated response instead
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", b"1000"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b'{"sta', "more_body": True})
            return
        transport.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2):
                while (await raw())["type"] != "http.disconnect":
                    pass


class _KeepRawReceive:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[_RAW_RECEIVE] = receive
        await self.app(scope, receive, send)


def _redacted_query(request: Request) -> str:
    pairs = [
        (k, "REDACTED" if k.lower() == "apikey" else v)
        for k, v in parse_qsl(request.url.query, keep_blank_values=True)
    ]
    return urlencode(pairs)


def _truncate(response: Response) -> Response:
    body = bytes(response.body)
    return Response(body[: max(1, len(body) // 2)], 200, media_type="application/json")


def _alpaca_auth(settings: EmulatorSettings) -> Callable[[Request, str | None], Response | None]:
    key_id = settings.alpaca_key_id or settings.api_key
    secret = settings.alpaca_secret_key or settings.api_key

    def authenticate(request: Request, _: str | None) -> Response | None:
        return alpaca.authenticate(request, key_id, secret)

    return authenticate


def create_app(settings: EmulatorSettings | None = None) -> Starlette:
    """Build the emulator app; ``app.state.emulator`` is the live :class:`EmulatorState`."""
    settings = settings or EmulatorSettings()
    sessions.calendar_bounds()  # load the XNYS calendar now, not inside the first request
    store = BarStore()
    state = EmulatorState(
        RuntimeConfig(
            settings.rate_limit,
            float(settings.rate_window_s),
            settings.retry_after,
            settings.page_size,
        )
    )
    book = splits.SplitBook()
    by_ticker: dict[str, dict[str, int]] = {}

    def serve_aggs(request: Request, store: BarStore, config: RuntimeConfig) -> Response:
        return polygon.serve(request, store, config, book.adjust)

    def serve_grouped(request: Request, store: BarStore, config: RuntimeConfig) -> Response:
        return grouped.serve(request, store, config, book)

    def serve_splits(request: Request, _: BarStore, config: RuntimeConfig) -> Response:
        return splits.serve(request, book, config)

    def serve_dividends(request: Request, _: BarStore, config: RuntimeConfig) -> Response:
        return dividends.serve(request, config)

    providers = {
        "polygon": _Provider("polygon", settings.api_key, polygon.authenticate,
                             polygon.rate_limited, polygon.fault_response, serve_aggs),
        "polygon_grouped": _Provider("polygon", settings.api_key, polygon.authenticate,
                                     polygon.rate_limited, polygon.fault_response,
                                     serve_grouped),
        "polygon_splits": _Provider("polygon", settings.api_key, polygon.authenticate,
                                    polygon.rate_limited, polygon.fault_response, serve_splits),
        "polygon_dividends": _Provider("polygon", settings.api_key, polygon.authenticate,
                                       polygon.rate_limited, polygon.fault_response,
                                       serve_dividends),
        "tradier": _Provider("tradier", settings.tradier_token or settings.api_key,
                             tradier.authenticate, tradier.rate_limited,
                             tradier.fault_response, tradier.serve),
        "alpaca": _Provider("alpaca", None, _alpaca_auth(settings), alpaca.rate_limited,
                            alpaca.fault_response, alpaca.serve),
        "alpaca_crypto": _Provider("alpaca", None, _alpaca_auth(settings), alpaca.rate_limited,
                                   alpaca.fault_response, alpaca.serve_crypto),
    }  # fmt: skip

    def count_ticker(request: Request, route: str) -> None:
        q = request.query_params
        raw = request.path_params.get("ticker") or q.get("symbol") or q.get("ticker")
        ticker = (raw or q.get("symbols") or "*").upper()
        counts = by_ticker.setdefault(route, {})
        counts[ticker] = counts.get(ticker, 0) + 1
        store.note(ticker.split(","))  # what a grouped daily answer lists (data.BarStore)

    async def guarded(request: Request, p: _Provider) -> Response:
        state.count_request(p.name)
        count_ticker(request, p.name)
        fault: Fault | None = None
        response = p.authenticate(request, p.expected_key)
        if response is None and (wait := state.rate_check(p.name)):
            response = p.rate_limited(state.retry_after_header(wait))
        if response is None:
            fault = state.take_fault(p.name)
            if fault is not None and fault.kind == "delay":
                await asyncio.sleep(fault.seconds)
            if fault is not None and fault.kind == "hold":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(state.released.wait(), fault.seconds)
            if fault is not None and fault.kind == "status":
                response = p.fault_response(fault.status)
            elif fault is not None and fault.kind == "disconnect":
                response = _DisconnectResponse()
            else:
                response = p.serve(request, store, state.config)
                if fault is not None and fault.kind == "malformed":
                    response = _truncate(response)
        kind = fault.kind if fault else None
        state.record(p.name, request.url.path, _redacted_query(request), response.status_code, kind)
        return response

    async def polygon_aggs(request: Request) -> Response:
        return await guarded(request, providers["polygon"])

    async def polygon_grouped(request: Request) -> Response:
        return await guarded(request, providers["polygon_grouped"])

    async def polygon_splits(request: Request) -> Response:
        return await guarded(request, providers["polygon_splits"])

    async def polygon_dividends(request: Request) -> Response:
        return await guarded(request, providers["polygon_dividends"])

    async def tradier_timesales(request: Request) -> Response:
        return await guarded(request, providers["tradier"])

    async def alpaca_bars(request: Request) -> Response:
        return await guarded(request, providers["alpaca"])

    async def alpaca_crypto_bars(request: Request) -> Response:
        return await guarded(request, providers["alpaca_crypto"])

    async def faults(request: Request) -> Response:
        if request.method == "DELETE":
            state.faults.clear()
        elif request.method == "POST":
            try:
                data = await request.json()
                items = data if isinstance(data, list) else [data]
                state.faults.extend(Fault.parse(item) for item in items)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"faults": [asdict(f) for f in state.faults]})

    async def release(_: Request) -> Response:
        state.release()
        return JSONResponse({"released": True})

    async def stats(_: Request) -> Response:
        return JSONResponse(state.stats())

    async def reset(_: Request) -> Response:
        state.reset()
        book.remove()
        store.clear_lifecycles()
        store.forget_noted()
        by_ticker.clear()
        return JSONResponse({"status": "ok"})

    async def requests_by_ticker(_: Request) -> Response:
        return JSONResponse({route: dict(sorted(c.items())) for route, c in by_ticker.items()})

    async def lifecycles(request: Request) -> Response:
        if request.method == "DELETE":
            ticker = request.query_params.get("ticker")
            if ticker:
                store.set_lifecycle(ticker, None)
            else:
                store.clear_lifecycles()
        elif request.method == "POST":
            try:
                data = await request.json()
                items = data if isinstance(data, list) else [data]
                parsed = [Lifecycle.parse(item) for item in items]
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            for ticker, life in parsed:
                store.set_lifecycle(ticker, life)
        return JSONResponse(
            {"lifecycles": {t: life.to_json() for t, life in store.lifecycles().items()}}
        )

    async def tickers(request: Request) -> Response:
        if request.method == "DELETE":
            store.forget_noted()
        elif request.method == "POST":
            try:
                data = await request.json()
            except ValueError:
                data = None
            items = data.get("tickers") if isinstance(data, dict) else data
            if not isinstance(items, list) or not all(isinstance(t, str) for t in items):
                return JSONResponse({"error": 'expected {"tickers": ["AAPL", ...]}'}, 400)
            store.note(items)
        return JSONResponse({"tickers": store.known_tickers()})

    async def admin_splits(request: Request) -> Response:
        if request.method == "DELETE":
            book.remove(request.query_params.get("ticker") or None)
        elif request.method == "POST":
            try:
                data = await request.json()
                items = data if isinstance(data, list) else [data]
                parsed = [splits.Split.parse(item) for item in items]
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            for split in parsed:
                book.add(split)
        return JSONResponse({"splits": [s.to_json() for s in book.all()]})

    async def config(request: Request) -> Response:
        if request.method == "PUT":
            try:
                data = await request.json()
                if not isinstance(data, dict):
                    raise ValueError("config is a JSON object")
                state.config.update(data)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(asdict(state.config))

    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    agg_path = "/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}"
    routes = [
        Route(agg_path, polygon_aggs, methods=["GET"]),
        Route("/v2/aggs/grouped/locale/us/market/stocks/{date}", polygon_grouped, methods=["GET"]),
        Route("/v3/reference/splits", polygon_splits, methods=["GET"]),
        Route("/v3/reference/dividends", polygon_dividends, methods=["GET"]),
        Route("/v1/markets/timesales", tradier_timesales, methods=["GET"]),
        Route("/v2/stocks/bars", alpaca_bars, methods=["GET"]),
        Route("/v1beta3/crypto/us/bars", alpaca_crypto_bars, methods=["GET"]),
        Route("/_emulator/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_emulator/release", release, methods=["POST"]),
        Route("/_emulator/stats", stats, methods=["GET"]),
        Route("/_emulator/reset", reset, methods=["POST"]),
        Route("/_emulator/config", config, methods=["GET", "PUT"]),
        Route("/_emulator/health", health, methods=["GET"]),
        Route("/_emulator/splits", admin_splits, methods=["GET", "POST", "DELETE"]),
        Route("/_emulator/lifecycles", lifecycles, methods=["GET", "POST", "DELETE"]),
        Route("/_emulator/requests", requests_by_ticker, methods=["GET"]),
        Route("/_emulator/tickers", tickers, methods=["GET", "POST", "DELETE"]),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(_KeepRawReceive)
    app.state.emulator = state
    app.state.store = store
    app.state.splits = book
    return app
