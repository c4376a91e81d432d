"""Alpaca market data v2, multi-symbol bars: ``GET /v2/stocks/bars``.

* Auth: headers ``APCA-API-KEY-ID`` and ``APCA-API-SECRET-KEY``. Missing or wrong credentials
  answer **403** ``{"message": "forbidden"}``, as Alpaca's market data endpoints do.
* ``symbols``: comma-separated, at most 50 distinct symbols (more: 400). Symbols are served in
  sorted order, each symbol's bars together (Alpaca's multi-symbol order); a symbol without bars
  in the range, or unlisted (``ZZ*``), is simply absent from ``bars``.
* ``timeframe``: ``{N}Min`` / ``{N}T`` with N in 1..59, buckets aligned to the clock and built from
  the same base bars as the Polygon handler (extended hours included), so a 15-minute bar has the
  same values here and there. ``1Day`` (or ``1D``) is the official daily bar, the aggregate of
  the day's base bars (extended hours included), with ``t`` = 00:00 America/New_York in UTC
  (``2025-06-02T04:00:00Z``), as Alpaca labels daily bars. Hour/Week/Month timeframes are
  valid Alpaca syntax the emulator does not serve (400); anything else is
  ``422 {"code": 42210000, "message": "invalid timeframe"}``.
* ``start`` / ``end``: RFC 3339 with an offset (or a bare ``YYYY-MM-DD`` = 00:00 UTC); bars whose
  start lies in ``[start, end]``. Defaults: today 00:00 America/New_York and "now". ``end``
  before ``start``: 422. Bars starting after "now" never appear (the bar in progress does).
* ``limit`` (1..10000, default 1000) counts **bars across all symbols** in one page; the runtime
  ``page_size`` setting caps a page further. When bars remain, ``next_page_token`` is an opaque
  token; send it back as ``page_token`` with the other parameters unchanged. Else it is null.
* ``adjustment`` (raw/split/dividend/all), ``feed``, ``sort`` (asc/desc: time order within each
  symbol), ``asof``, ``currency`` are accepted; any other parameter is a 400, like Alpaca.
* Bars: ``{"t": "2025-06-02T13:30:00Z", "o", "h", "l", "c", "v", "n", "vw"}``.

Crypto bars, ``GET /v1beta3/crypto/us/bars`` (``serve_crypto``): the same handler over slash
pairs such as ``BTC/USD``, served 24/7 from ``crypto.py``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import UTC, date, datetime, timedelta
from functools import partial

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .aggregate import Aggregates, AggregateWalk, bars_json, bucket_start, bucket_step
from .crypto import alpaca_crypto_symbol
from .data import Bars, BarStore
from .sessions import MINUTE_MS, NY, day_start_ms, now_ms
from .state import RuntimeConfig

KEY_ID_HEADER = "APCA-API-KEY-ID"
SECRET_HEADER = "APCA-API-SECRET-KEY"
MAX_SYMBOLS = 50
DEFAULT_LIMIT = 1000
MAX_LIMIT = 10000
ADJUSTMENTS = ("raw", "split", "dividend", "all")
FEEDS = ("sip", "iex", "delayed_sip", "otc", "boats", "overnight")
PARAMS = frozenset(
    {"symbols", "timeframe", "start", "end", "limit", "adjustment", "feed", "sort",
     "page_token", "asof", "currency"}
)  # fmt: skip
BAD_REQUEST_CODE = 40010000
UNPROCESSABLE_CODE = 42210000
TOO_MANY_CODE = 42910000
_TIMEFRAME = re.compile(r"^([1-9]\d*)(Min|T|Hour|H|Day|D|Week|W|Month|M)$")
_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9./:-]{0,20}$")


class BadRequest(ValueError):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    code = {400: BAD_REQUEST_CODE, 422: UNPROCESSABLE_CODE, 429: TOO_MANY_CODE}.get(
        status, status * 100000
    )
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


def authenticate(
    request: Request, expected_key_id: str | None, expected_secret: str | None
) -> Response | None:
    key_id = request.headers.get(KEY_ID_HEADER, "").strip()
    secret = request.headers.get(SECRET_HEADER, "").strip()
    if (
        not key_id
        or not secret
        or (expected_key_id is not None and key_id != expected_key_id)
        or (expected_secret is not None and secret != expected_secret)
    ):
        return JSONResponse({"message": "forbidden"}, status_code=403)
    return None


def rate_limited(headers: dict[str, str]) -> Response:
    return error(429, "too many requests.", headers)


def fault_response(status: int) -> Response:
    return error(status, f"Injected fault: HTTP {status}")


# ---------------------------------------------------------------- parameters


def _timeframe_minutes(raw: str) -> int | None:
    """Minutes of an ``NMin`` timeframe; None for ``1Day``/``1D`` (the official daily bar)."""
    m = _TIMEFRAME.match(raw)
    if m is None:
        raise BadRequest("invalid timeframe", 422)
    amount, unit = int(m.group(1)), m.group(2)
    if unit in ("Day", "D") and amount == 1:
        return None
    if unit not in ("Min", "T"):
        raise BadRequest(f"timeframe {raw!r} is not supported by the emulator (use NMin)")
    if amount > 59:
        raise BadRequest("invalid timeframe", 422)
    return amount


def _instant(raw: str, name: str) -> int:
    raw = raw.strip()
    try:
        if len(raw) == 10:
            d = date.fromisoformat(raw)
            return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)
        dt = datetime.fromisoformat(raw)
    except ValueError:
        dt = None
    if dt is None or dt.tzinfo is None:
        raise BadRequest(f"invalid {name}: {raw!r} is not an RFC-3339 time")
    return int(dt.timestamp() * 1000)


def _symbols(raw: str) -> list[str]:
    symbols = sorted({s.strip().upper() for s in raw.split(",") if s.strip()})
    if not symbols:
        raise BadRequest("missing symbols")
    for s in symbols:
        if not _SYMBOL.match(s):
            raise BadRequest(f"invalid symbol: {s!r}")
    if len(symbols) > MAX_SYMBOLS:
        raise BadRequest(f"too many symbols: {len(symbols)} (max {MAX_SYMBOLS})")
    return symbols


def _limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise BadRequest(f"invalid limit: must be an integer between 1 and {MAX_LIMIT}")
    return int(raw)


def encode_token(symbol: str, t_ms: int) -> str:
    return base64.urlsafe_b64encode(f"{symbol}|{t_ms}".encode()).decode().rstrip("=")


def decode_token(token: str, symbols: list[str]) -> tuple[str, int]:
    """(symbol, bar start) where the next page starts; the symbol must be one requested."""
    try:
        padded = token + "=" * (-len(token) % 4)
        symbol, t_raw = base64.urlsafe_b64decode(padded.encode()).decode().split("|")
        t_ms = int(t_raw)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("invalid page token") from None
    if symbol not in symbols:
        raise BadRequest("invalid page token")
    return symbol, t_ms


def _ny_day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, NY).date()


_BAR_KEYS = ("t", "o", "h", "l", "c", "v", "n", "vw")


# ---------------------------------------------------------------- the handler


def serve(request: Request, store: BarStore, config: RuntimeConfig) -> Response:
    q = request.query_params
    now = now_ms(config.now)
    try:
        unexpected = sorted(set(q.keys()) - PARAMS)
        if unexpected:
            raise BadRequest(f"unexpected parameter(s): {', '.join(unexpected)}")
        symbols = _symbols(q.get("symbols", ""))
        if "timeframe" not in q:
            raise BadRequest("missing timeframe", 422)
        minutes = _timeframe_minutes(q["timeframe"])
        today = datetime.fromtimestamp(now / 1000, NY).date()
        start = (
            _instant(q["start"], "start")
            if q.get("start")
            else int(datetime(today.year, today.month, today.day, tzinfo=NY).timestamp() * 1000)
        )
        end = _instant(q["end"], "end") if q.get("end") else now
        if end < start:
            raise BadRequest("end should not be before start", 422)
        limit = _limit(q.get("limit"))
        if q.get("adjustment", "raw") not in ADJUSTMENTS:
            raise BadRequest(f"invalid adjustment: {q.get('adjustment')!r}")
        if q.get("feed", "sip") not in FEEDS:
            raise BadRequest(f"invalid feed: {q.get('feed')!r}")
        sort = q.get("sort", "asc")
        if sort not in ("asc", "desc"):
            raise BadRequest("invalid sort: must be asc or desc")
        token = decode_token(q["page_token"], symbols) if q.get("page_token") else None
    except BadRequest as exc:
        return error(exc.status, str(exc))

    if minutes is None:  # days whose midnight (their bar's `t`) lies in [start, end]
        first = day_start_ms(_ny_day(start - 1) + timedelta(days=1))
        stop = min(day_start_ms(_ny_day(end) + timedelta(days=1)), now + 1)
    else:
        width = minutes * MINUTE_MS
        first = -(-start // width) * width  # buckets whose start lies in [start, end], <= now
        stop = min((end // width) * width + width, now + 1)
    room = limit if config.page_size is None else min(limit, max(1, config.page_size))
    descending = sort == "desc"
    page: dict[str, str] = {}  # symbol -> its bars as a JSON array
    next_token: str | None = None
    begin = symbols.index(token[0]) if token else 0
    for symbol in symbols[begin:]:
        resume = token[1] if token is not None and symbol == token[0] else None
        lo, hi = first, stop
        if resume is not None:  # from the page token's bucket on: earlier pages served the rest
            if descending:
                hi = min(stop, bucket_step(bucket_start(resume, minutes), minutes, 1))
            else:
                lo = max(first, bucket_start(resume, minutes))
        walk = AggregateWalk(partial(store.bars, symbol), minutes, lo, hi, descending)
        taken: list[Aggregates] = []
        while (aggs := walk.next(room)) is not None:
            if resume is not None:
                aggs = aggs.take(aggs.t <= resume if descending else aggs.t >= resume)
            served = aggs.take(slice(0, room))
            if len(served):
                taken.append(served)
                room -= len(served)
            if len(served) < len(aggs):  # the page is full: the next page starts here
                next_token = encode_token(symbol, int(aggs.t[len(served)]))
                break
        if taken:
            page[symbol] = bars_json(Aggregates.concat(taken), _BAR_KEYS, rfc3339=True)
        if next_token is not None:
            break
    bars = ",".join(f"{json.dumps(symbol)}:{rows}" for symbol, rows in page.items())
    body = f'{{"bars":{{{bars}}},"next_page_token":{json.dumps(next_token)}}}'
    return Response(body, media_type="application/json")


class _CryptoPairs(BarStore):
    """The bar store seen through Alpaca's crypto names: ``BTC/USD`` is the ``X:BTCUSD`` pair;
    a name without a slash is no pair (no bars)."""

    def __init__(self, store: BarStore) -> None:
        super().__init__()
        self._store = store

    def bars(self, ticker: str, start_ms: int, end_ms: int) -> Bars:
        if "/" not in ticker:
            return Bars.empty()
        return self._store.bars(alpaca_crypto_symbol(ticker), start_ms, end_ms)


def serve_crypto(request: Request, store: BarStore, config: RuntimeConfig) -> Response:
    """``GET /v1beta3/crypto/us/bars``: the same parameters, paging and bar shape as the stock
    bars (``adjustment``/``feed`` are not crypto parameters; accepted, ignored), keyed by the
    slash pair (``BTC/USD``); bars every UTC minute, 24/7 (see ``crypto.py``)."""
    return serve(request, _CryptoPairs(store), config)
