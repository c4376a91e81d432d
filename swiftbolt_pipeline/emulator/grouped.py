"""Polygon grouped daily: ``GET /v2/aggs/grouped/locale/us/market/stocks/{date}``.

* One answer per day: the official daily bar of every ticker the store knows
  (``BarStore.known_tickers``: the real-data symbols, every stock ticker a request has named
  since the last reset, and those registered with ``POST /_emulator/tickers``) that has bars
  that day, as ``{"T", "v", "vw", "o", "c", "h", "l", "t", "n"}``. The bar is exactly the
  ``/range/1/day/`` bar of that ticker and day (the aggregate of the whole extended day,
  splits applied when ``adjusted=true``); only ``t`` differs, as on Polygon: 16:00
  America/New_York of the day instead of midnight.
* A day without a session (weekend, holiday), a day not begun yet, or one no known ticker
  traded answers ``queryCount`` and ``resultsCount`` 0 and no ``results`` key. Bars starting
  after "now" never count, so today's answer grows during the day.
* ``adjusted`` (default true) and ``include_otc`` (accepted, no OTC tickers here) take
  ``true``/``false``; anything else, or a malformed date, is 400. Never paginated.
* Fast for thousands of tickers: a finished day's unadjusted bar is computed once per ticker,
  day and lifecycle and then served from memory.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .aggregate import Aggregates, Row, aggregate_daily, rows
from .data import BarStore, Lifecycle
from .polygon import error, request_id
from .sessions import Session, day_start_ms, local_ms, now_ms, session
from .splits import SplitBook
from .state import RuntimeConfig


def serve(request: Request, store: BarStore, config: RuntimeConfig, book: SplitBook) -> Response:
    raw = request.path_params["date"]
    try:
        day = date.fromisoformat(raw)
    except ValueError:
        return error(400, f"Could not parse the date '{raw}'. Use YYYY-MM-DD.")
    flags: dict[str, bool] = {}
    for name, default in (("adjusted", "true"), ("include_otc", "false")):
        value = request.query_params.get(name, default).lower()
        if value not in ("true", "false"):
            return error(400, f"{name} must be true or false")
        flags[name] = value == "true"
    body: dict[str, Any] = {
        "queryCount": 0,
        "resultsCount": 0,
        "adjusted": flags["adjusted"],
        "status": "OK",
        "request_id": request_id(),
    }
    s = session(day)
    now = now_ms(config.now)
    if s is None or now < s.ext_start_ms:
        return JSONResponse(body)
    label = local_ms(day, 16, 0)
    results = []
    for ticker in store.known_tickers():
        bar = daily_bar(store, ticker, s, now, book if flags["adjusted"] else None)
        if bar is None:
            continue
        _, o, h, low, c, v, vw, n = bar  # not the range endpoint's midnight label: 16:00
        results.append(
            {"T": ticker, "v": v, "vw": vw, "o": o, "c": c, "h": h, "l": low, "t": label, "n": n}
        )
    if results:
        body["queryCount"] = body["resultsCount"] = body["count"] = len(results)
        body["results"] = results
    return JSONResponse(body)


def daily_bar(
    store: BarStore, ticker: str, s: Session, now: int, book: SplitBook | None
) -> Row | None:
    """``ticker``'s official daily bar on session ``s`` as ``/range/1/day/`` computes it
    (None: no bars). Unadjusted bars of finished days come from the cache; a day still
    running, or a ticker with splits, is computed from its base bars as the range endpoint
    does (adjusting base bars, then aggregating, rounds exactly as it does)."""
    if now >= s.ext_end_ms and (book is None or not book.for_ticker(ticker)):
        return _finished_day(store, ticker, s, store.lifecycle(ticker))
    bars = store.bars(ticker, day_start_ms(s.day), min(s.ext_end_ms, now + 1))
    if book is not None:
        bars = book.adjust(ticker, bars)
    return _only_row(aggregate_daily(bars))


@lru_cache(maxsize=262_144)
def _finished_day(
    store: BarStore, ticker: str, s: Session, lifecycle: Lifecycle | None
) -> Row | None:
    """The unadjusted daily aggregate of a finished day; ``lifecycle`` is part of the key, so
    a lifecycle set or removed later is never answered from a stale entry."""
    del lifecycle
    return _only_row(aggregate_daily(store.day_bars(ticker, s)))


def _only_row(daily: Aggregates) -> Row | None:
    return rows(daily)[0] if len(daily) else None
