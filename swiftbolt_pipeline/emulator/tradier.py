"""Tradier time & sales: ``GET /v1/markets/timesales``.

Query: ``symbol``, ``interval`` (``1min``/``5min``/``15min``, default ``1min``), ``start`` and
``end`` (naive America/New_York ``YYYY-MM-DD HH:MM``; whole interval bars whose start lies in
``[start, end]``; defaults: the current day 00:00 and "now"), ``session_filter`` (``all``
default, ``open`` = regular session only). Bars whose start is after "now" are never served; the
in-progress bar is included like the real API. Quirks kept: one bar is an object rather than a
list, and no data is ``{"series": "null"}`` (a string, as the real API answers). ``price`` is
``(high + low) / 2``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from .aggregate import aggregate, rows
from .data import BarStore, is_listed
from .sessions import MINUTE_MS, NY, now_ms, sessions_between
from .state import RuntimeConfig

INTERVALS = {"1min": 1, "5min": 5, "15min": 15}
NO_DATA = {"series": "null"}
_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S")


def authenticate(request: Request, expected: str | None) -> Response | None:
    auth = request.headers.get("authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    if not token or (expected is not None and token != expected):
        return PlainTextResponse("Invalid Access Token", status_code=401)
    return None


def rate_limited(headers: dict[str, str]) -> Response:
    body = {
        "fault": {
            "faultstring": "Rate limit quota violation. Quota limit exceeded.",
            "detail": {"errorcode": "policies.ratelimit.QuotaViolation"},
        }
    }
    return JSONResponse(body, status_code=429, headers=headers)


def fault_response(status: int) -> Response:
    return PlainTextResponse(f"Injected fault: HTTP {status}", status_code=status)


def _bad(message: str) -> Response:
    return JSONResponse({"errors": {"error": [message]}}, status_code=400)


def _parse_local(raw: str) -> int | None:
    raw = raw.strip()
    for fmt in (*_FORMATS, "%Y-%m-%d"):
        try:
            dt = datetime.strptime(raw, fmt)
        except ValueError:
            continue
        return int(dt.replace(tzinfo=NY).timestamp() * 1000)
    return None


def serve(request: Request, store: BarStore, config: RuntimeConfig) -> Response:
    q = request.query_params
    symbol = q.get("symbol", "").strip().upper()
    if not symbol:
        return _bad("Missing required parameter: symbol")
    interval = q.get("interval", "1min")
    if interval not in INTERVALS:
        return _bad(f"Invalid interval {interval!r}; supported: {', '.join(INTERVALS)}")
    session_filter = q.get("session_filter", "all")
    if session_filter not in ("all", "open"):
        return _bad("session_filter must be all or open")
    now = now_ms(config.now)
    today = datetime.fromtimestamp(now / 1000, NY).strftime("%Y-%m-%d")
    start = _parse_local(q.get("start") or today)
    end = now if not q.get("end") else _parse_local(q.get("end", ""))
    if start is None or end is None:
        return _bad("start/end must be YYYY-MM-DD HH:MM")
    width = INTERVALS[interval] * MINUTE_MS
    first = -(-start // width) * width  # bars whose start lies in [start, end] (and <= now)
    stop = min((end // width) * width + width, now + 1)
    if not is_listed(symbol) or stop <= first:
        return JSONResponse(NO_DATA)
    bars = store.bars(symbol, first, stop)
    if session_filter == "open" and len(bars):
        ss = sessions_between(first, stop)
        opens = np.array([s.open_ms for s in ss], dtype=np.int64)
        closes = np.array([s.close_ms for s in ss], dtype=np.int64)
        i = np.searchsorted(opens, bars.t, side="right") - 1
        ok = (i >= 0) & (bars.t < closes[np.maximum(i, 0)])
        bars = bars.take(ok)
    aggs = aggregate(bars, INTERVALS[interval])
    if len(aggs) == 0:
        return JSONResponse(NO_DATA)
    data: list[dict[str, Any]] = [
        {
            "time": datetime.fromtimestamp(t / 1000, NY).strftime("%Y-%m-%dT%H:%M:%S"),
            "timestamp": t // 1000,
            "price": round((h + low) / 2, 4),
            "open": o,
            "high": h,
            "low": low,
            "close": c,
            "volume": v,
            "vwap": vw,
        }
        for t, o, h, low, c, v, vw, _ in rows(aggs)
    ]
    return JSONResponse({"series": {"data": data[0] if len(data) == 1 else data}})
