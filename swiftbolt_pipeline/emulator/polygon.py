"""Polygon aggregates: ``GET /v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{from}/{to}``.

* ``from``/``to``: ``YYYY-MM-DD`` (whole America/New_York days, inclusive) or epoch ms
  (inclusive bar starts, whole bars: an ms ``from`` inside a bar's span starts at the next
  bar, an ms ``to`` inside one ends with that whole bar).
* ``limit`` (default 5000, max 50000) counts **base minute aggregates**: a page holds as many
  whole aggregated bars as fit in ``limit`` base minutes, where a generated 1-minute bar counts 1
  and a real-data 5-minute bar counts 5 (always at least one bar per page). The runtime
  setting ``page_size`` additionally caps a page at that many aggregated bars.
* When bars remain, ``next_url`` = ``{base}/v2/aggs/ticker/T/range/M/minute/{from}/{to}?cursor=..``
  with the next page's bounds in ms in the path (asc: new ``from``; desc: new ``to``) and no
  API key. The cursor is base64url of ``limit=..&sort=..&adjusted=..``. The runtime setting
  ``next_url_base`` makes ``{base}`` another host, as the real API names ``api.massive.com``.
* Timespans: ``N/minute`` and ``1/day`` (others: 400). Bars starting after "now" never appear.
* ``1/day``: the official daily bar, the aggregate of ALL the day's base bars (04:00-20:00 ET,
  extended hours included), ``t`` = 00:00 America/New_York of that day in epoch ms, as Polygon
  labels daily bars. ``from``/``to`` select whole days (an ms bound selects the day it falls
  in); ``limit`` counts each day as one base aggregate, so 5 years fit one page.
* ``adjusted=true`` (the default) applies the splits added at runtime (see ``splits.py``): bars
  before a split's execution date have prices / ratio and volume * ratio. ``adjusted=false``
  serves the bars unadjusted.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .aggregate import AggregateWalk, bars_json, page_by_base_minutes
from .data import Bars, BarStore, is_listed
from .sessions import MINUTE_MS, NY, day_start_ms, now_ms
from .state import RuntimeConfig

DEFAULT_LIMIT = 5000
MAX_LIMIT = 50000
TIMESPANS = ("second", "minute", "hour", "day", "week", "month", "quarter", "year")
RATE_LIMIT_MESSAGE = (
    "You've exceeded the maximum requests per minute, please wait or upgrade your subscription"
    " to continue. https://polygon.io/pricing"
)
# A desc page's next `to` is a daily bar's `t` + DAY_MS - 1: inside that day even on a 23-hour DST
# day, and a daily range's `to` stands for its whole day.
DAY_MS = 24 * 3600 * 1000
_RESULT_KEYS = ("v", "vw", "o", "c", "h", "l", "t", "n")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class BadRequest(ValueError):
    pass


def request_id() -> str:
    return uuid.uuid4().hex


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"status": "ERROR", "request_id": request_id(), "error": message}
    return JSONResponse(body, status_code=status, headers=headers)


def api_key(request: Request) -> str | None:
    key = request.query_params.get("apiKey")
    if key:
        return key
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


def authenticate(request: Request, expected: str | None) -> Response | None:
    key = api_key(request)
    if not key:
        return error(401, "API Key was not provided")
    if expected is not None and key != expected:
        return error(401, "Unknown API Key")
    return None


def rate_limited(headers: dict[str, str]) -> Response:
    return error(429, RATE_LIMIT_MESSAGE, headers)


def fault_response(status: int) -> Response:
    return error(status, f"Injected fault: HTTP {status}")


def _bound(raw: str, is_from: bool) -> int:
    if _DATE.match(raw):
        try:
            d = date.fromisoformat(raw)
        except ValueError as exc:
            raise BadRequest(f"Could not parse the date '{raw}'") from exc
        return day_start_ms(d) if is_from else day_start_ms(d + timedelta(days=1)) - 1
    if raw.isdigit():
        return int(raw)
    name = "from" if is_from else "to"
    raise BadRequest(f"Could not parse the time parameter: '{name}'. Use YYYY-MM-DD or ms.")


def _ny_day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, NY).date()


def _cursor_params(cursor: str | None) -> dict[str, str]:
    if not cursor:
        return {}
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = base64.urlsafe_b64decode(padded.encode()).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest("Invalid cursor") from exc
    return {k: v[-1] for k, v in parse_qs(decoded).items()}


def _params(request: Request) -> tuple[bool, str, int, str | None]:
    q = request.query_params
    cur = _cursor_params(q.get("cursor"))
    adjusted_raw = q.get("adjusted", cur.get("adjusted", "true")).lower()
    if adjusted_raw not in ("true", "false"):
        raise BadRequest("adjusted must be true or false")
    sort = q.get("sort", cur.get("sort", "asc")).lower()
    if sort not in ("asc", "desc"):
        raise BadRequest("sort must be asc or desc")
    limit_raw = q.get("limit", cur.get("limit", str(DEFAULT_LIMIT)))
    if not limit_raw.isdigit() or int(limit_raw) < 1:
        raise BadRequest("limit must be a positive integer")
    return adjusted_raw == "true", sort, min(int(limit_raw), MAX_LIMIT), q.get("cursor")


Adjust = Callable[[str, Bars], Bars]


def serve(
    request: Request, store: BarStore, config: RuntimeConfig, adjust: Adjust | None = None
) -> Response:
    """Aggregates; ``adjust(ticker, base_bars)`` applies corporate actions when adjusted."""
    p = request.path_params
    ticker: str = p["ticker"].upper()
    timespan: str = p["timespan"]
    try:
        mult_raw: str = p["multiplier"]
        if not mult_raw.isdigit() or int(mult_raw) < 1:
            raise BadRequest("multiplier must be a positive integer")
        multiplier = int(mult_raw)
        if timespan not in TIMESPANS:
            raise BadRequest(f"Could not parse the time parameter: 'timespan' ({timespan!r})")
        daily = timespan == "day"
        if timespan != "minute" and not (daily and multiplier == 1):
            raise BadRequest(
                f"{multiplier} {timespan} is not supported by the emulator (N minute, 1 day)"
            )
        start, end = _bound(p["from"], True), _bound(p["to"], False)
        width = multiplier * MINUTE_MS
        if daily:  # whole days: an ms bound stands for the day it falls in
            start = day_start_ms(_ny_day(start))
            end = day_start_ms(_ny_day(end) + timedelta(days=1)) - 1
        elif p["from"].isdigit():  # from the first bar starting at or after `from`
            start = -(-start // width) * width
        if not daily and p["to"].isdigit():  # to the end of the last bar starting at or before `to`
            end = (end // width) * width + width - 1
        adjusted, sort, limit, _ = _params(request)
    except BadRequest as exc:
        return error(400, str(exc))

    body: dict[str, Any] = {
        "ticker": ticker,
        "queryCount": 0,
        "resultsCount": 0,
        "adjusted": adjusted,
        "status": "OK",
        "request_id": request_id(),
        "count": 0,
    }
    stop = min(end, now_ms(config.now)) + 1  # bar starts <= to and <= now
    if not is_listed(ticker) or stop <= start:
        return JSONResponse(body)

    def fetch(lo: int, hi: int) -> Bars:
        base = store.bars(ticker, lo, hi)
        return adjust(ticker, base) if adjusted and adjust is not None else base

    page, nxt = page_by_base_minutes(
        AggregateWalk(fetch, None if daily else multiplier, start, stop, sort == "desc"),
        limit,
        config.page_size,
    )
    count = len(page)
    results = None
    if count:
        results = bars_json(page, _RESULT_KEYS)
        body["queryCount"] = int(page.base.sum())
        body["resultsCount"] = body["count"] = count
    if nxt is not None:
        span = DAY_MS - 1 if daily else multiplier * MINUTE_MS - 1
        new_from, new_to = (nxt, end) if sort == "asc" else (start, nxt + span)
        adj = "true" if adjusted else "false"
        cursor = (
            base64.urlsafe_b64encode(
                urlencode({"limit": limit, "sort": sort, "adjusted": adj}).encode()
            )
            .decode()
            .rstrip("=")
        )
        query = urlencode({"cursor": cursor, "adjusted": adj, "sort": sort, "limit": limit})
        base = config.next_url_base or str(request.base_url).rstrip("/")
        body["next_url"] = (
            f"{base}/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{new_from}/{new_to}"
            f"?{query}"
        )
    if results is None:
        return JSONResponse(body)
    # The bars are encoded as one array (bars_json), spliced into the envelope.
    return Response(
        json.dumps(body)[:-1] + f', "results": {results}}}', media_type="application/json"
    )
