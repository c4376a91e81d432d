"""Paging through long bar requests, checked byte for byte against the whole range.

The emulator generates a page's bars chunk by chunk; these tests page through multi-symbol
Alpaca requests (stocks and crypto, minute and daily, asc and desc, real and generated data,
a ticker with a lifecycle) and Polygon ranges, and compare every page with the pages cut from
``BarStore.bars`` + ``aggregate`` over the whole range, by the documented paging rules."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from swiftbolt_pipeline.emulator.aggregate import (
    Aggregates,
    aggregate,
    aggregate_daily,
    bars_json,
)
from swiftbolt_pipeline.emulator.alpaca import encode_token
from swiftbolt_pipeline.emulator.crypto import alpaca_crypto_symbol
from swiftbolt_pipeline.emulator.data import BarStore, Lifecycle
from swiftbolt_pipeline.emulator.sessions import MINUTE_MS, NY, day_start_ms
from swiftbolt_pipeline.emulator.splits import Split, SplitBook
from swiftbolt_pipeline_tests.emulator.emulator_helpers import KEY

HEADERS = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": KEY}
NOW = "2026-11-20T12:00:00-05:00"  # the `emu` fixture's clock
ALPACA_KEYS = ("t", "o", "h", "l", "c", "v", "n", "vw")
POLYGON_KEYS = ("v", "vw", "o", "c", "h", "l", "t", "n")
# ACME trades from 2025-03-10 through 2025-05-09, except two halted sessions.
ACME = {"ticker": "ACME", "listed_from": "2025-03-10", "delisted_after": "2025-05-09",
        "halted": ["2025-04-01", "2025-04-02"]}  # fmt: skip


def _ms(rfc3339: str) -> int:
    return int(datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp() * 1000)


def _ny_day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, NY).date()


def _whole(store: BarStore, ticker: str, minutes: int | None, first: int, stop: int) -> Aggregates:
    base = store.bars(ticker, first, stop)
    return aggregate_daily(base) if minutes is None else aggregate(base, minutes)


def expected_alpaca(
    symbols: list[str], timeframe: str, start: str, end: str, limit: int, sort: str, crypto: bool
) -> list[str]:
    """Every page's body: the bars of each symbol (sorted) over the whole range, in `sort`
    order, cut into pages of `limit` bars; a page's token names the next page's first bar."""
    store = BarStore()
    store.set_lifecycle("ACME", Lifecycle.parse(ACME)[1])
    now, lo, hi = _ms(NOW), _ms(start), _ms(end)
    minutes = None if timeframe == "1Day" else int(timeframe.removesuffix("Min"))
    if minutes is None:  # days whose New York midnight lies in [start, end], up to now
        first = day_start_ms(_ny_day(lo - 1) + timedelta(days=1))
        stop = min(day_start_ms(_ny_day(hi) + timedelta(days=1)), now + 1)
    else:  # buckets whose start lies in [start, end], up to now
        width = minutes * MINUTE_MS
        first, stop = -(-lo // width) * width, min(hi // width * width + width, now + 1)
    flat: list[tuple[str, Aggregates, int]] = []  # (symbol, its bars, index of one bar)
    for symbol in sorted(symbols):
        if crypto and "/" not in symbol:
            continue  # not a pair: no bars
        ticker = alpaca_crypto_symbol(symbol) if crypto else symbol
        aggs = _whole(store, ticker, minutes, first, stop)
        if sort == "desc":
            aggs = aggs.take(slice(None, None, -1))
        flat += [(symbol, aggs, i) for i in range(len(aggs))]
    bodies = []
    for at in range(0, max(len(flat), 1), limit):
        runs: dict[str, list[int]] = {}
        for symbol, _, i in flat[at : at + limit]:
            runs.setdefault(symbol, []).append(i)
        parts = []
        for symbol, idx in runs.items():
            aggs = next(a for s, a, _ in flat if s == symbol)
            rows = bars_json(aggs.take(slice(idx[0], idx[-1] + 1)), ALPACA_KEYS, rfc3339=True)
            parts.append(f"{json.dumps(symbol)}:{rows}")
        token = None
        if at + limit < len(flat):
            symbol, aggs, i = flat[at + limit]
            token = encode_token(symbol, int(aggs.t[i]))
        bodies.append(f'{{"bars":{{{",".join(parts)}}},"next_page_token":{json.dumps(token)}}}')
    return bodies


def served_alpaca(emu: str, path: str, params: dict[str, Any]) -> list[str]:
    bodies: list[str] = []
    token = None
    while not bodies or token:
        query = params | ({"page_token": token} if token else {})
        r = httpx.get(f"{emu}{path}", params=query, headers=HEADERS, timeout=60)
        assert r.status_code == 200, r.text
        bodies.append(r.text)
        token = r.json()["next_page_token"]
        assert len(bodies) < 100
    return bodies


ALPACA_CASES = [
    # symbols, timeframe, start, end, limit, sort
    ("GENA,GENB,GENC,GEND,GENE,ZZNOPE", "15Min", "2025-02-03T05:00:00Z", "2025-05-03T03:59:59Z",
     1000, "asc"),
    ("GENA,GENB,GENC,GEND", "15Min", "2025-02-03T05:00:00Z", "2025-05-03T03:59:59Z", 777, "desc"),
    ("SPY,QQQ,GENA", "5Min", "2026-02-23T05:00:00Z", "2026-03-21T03:59:59Z", 2000, "asc"),
    ("SPY,QQQ,GENA", "5Min", "2026-02-23T05:00:00Z", "2026-03-21T03:59:59Z", 2000, "desc"),
    ("SPY,GENB", "1Min", "2025-06-02T04:00:00Z", "2025-06-07T03:59:59Z", 700, "asc"),
    ("SPY,GENB", "2Min", "2025-06-02T04:00:00Z", "2025-06-07T03:59:59Z", 600, "desc"),
    ("GENA,GENB,GENC", "30Min", "2025-01-01T05:00:00Z", "2025-12-31T04:59:59Z", 2500, "asc"),
    ("ACME,GENA", "15Min", "2025-01-06T05:00:00Z", "2025-07-01T03:59:59Z", 900, "asc"),
    ("ACME,GENA", "15Min", "2025-01-06T05:00:00Z", "2025-07-01T03:59:59Z", 900, "desc"),
    ("GENA,GENB", "15Min", "2026-11-02T05:00:00Z", "2026-12-01T04:59:59Z", 300, "asc"),  # now
    ("AAPL,ACME,GENA", "1Day", "2024-11-20T05:00:00Z", "2026-11-20T04:59:59Z", 333, "asc"),
    ("AAPL,ACME,GENA", "1Day", "2024-11-20T05:00:00Z", "2026-11-20T04:59:59Z", 333, "desc"),
]  # fmt: skip


@pytest.mark.parametrize(("symbols", "timeframe", "start", "end", "limit", "sort"), ALPACA_CASES)
def test_alpaca_pages_equal_the_whole_range_cut(
    emu: str, symbols: str, timeframe: str, start: str, end: str, limit: int, sort: str
) -> None:
    httpx.post(f"{emu}/_emulator/lifecycles", json=ACME).raise_for_status()
    params = {"symbols": symbols, "timeframe": timeframe, "start": start, "end": end,
              "limit": limit, "sort": sort}  # fmt: skip
    expected = expected_alpaca(symbols.split(","), timeframe, start, end, limit, sort, False)
    assert len(expected) > 2
    assert served_alpaca(emu, "/v2/stocks/bars", params) == expected


@pytest.mark.parametrize(("timeframe", "sort"), [("15Min", "asc"), ("7Min", "desc")])
def test_crypto_pages_equal_the_whole_range_cut(emu: str, timeframe: str, sort: str) -> None:
    # 7 minutes do not divide a day: buckets straddle UTC midnights, as 24/7 bars do.
    symbols = "BTC/USD,ETH/USD,SOL/USD,BTCUSD"
    start, end = "2026-01-01T00:00:00Z", "2026-01-15T23:59:59Z"
    params = {"symbols": symbols, "timeframe": timeframe, "start": start, "end": end,
              "limit": 1234, "sort": sort}  # fmt: skip
    expected = expected_alpaca(symbols.split(","), timeframe, start, end, 1234, sort, True)
    assert len(expected) > 2
    assert served_alpaca(emu, "/v1beta3/crypto/us/bars", params) == expected


# ---------------------------------------------------------------- Polygon ranges


def expected_polygon(
    ticker: str, minutes: int | None, start: int, end: int, limit: int, sort: str, book: SplitBook
) -> list[tuple[list[dict[str, Any]], tuple[int, int] | None]]:
    """Every page's results and next range: as many whole bars as fit in `limit` base
    minutes (at least one); the next range starts (asc) or ends (desc) at the next bar."""
    base = book.adjust(ticker, BarStore().bars(ticker, start, min(end, _ms(NOW)) + 1))
    aggs = aggregate_daily(base) if minutes is None else aggregate(base, minutes)
    if sort == "desc":
        aggs = aggs.take(slice(None, None, -1))
    span = 24 * 3600 * 1000 - 1 if minutes is None else minutes * MINUTE_MS - 1
    pages = []
    at = 0
    while at < len(aggs):
        n, used = 0, 0
        while at + n < len(aggs) and (n == 0 or used + int(aggs.base[at + n]) <= limit):
            used += int(aggs.base[at + n])
            n += 1
        rows = json.loads(bars_json(aggs.take(slice(at, at + n)), POLYGON_KEYS))
        at += n
        nxt = None
        if at < len(aggs):
            t = int(aggs.t[at])
            nxt = (t, end) if sort == "asc" else (start, t + span)
        pages.append((rows, nxt))
    return pages


@pytest.mark.parametrize(
    ("ticker", "multiplier", "timespan", "frm", "to", "limit", "sort"),
    [
        ("GENA", 1, "minute", "2025-03-03", "2025-03-21", 2000, "asc"),
        ("GENA", 1, "minute", "2025-03-03", "2025-03-21", 2000, "desc"),
        ("SPY", 15, "minute", "2026-02-23", "2026-03-20", 2500, "asc"),  # real, then generated
        ("SPY", 15, "minute", "2026-02-23", "2026-03-20", 2500, "desc"),
        ("SPY", 1, "minute", "2025-06-02", "2025-06-06", 600, "asc"),  # 5-minute bars at 1
        # Bounds on 7-minute bucket bounds (a later page's ms bounds are moved onto them).
        ("X:BTCUSD", 7, "minute", "1767243660000", "1767848459999", 1500, "desc"),
        ("GENB", 1, "day", "2024-01-01", "2026-11-20", 200, "asc"),
        ("GENB", 1, "day", "2024-01-01", "2026-11-20", 200, "desc"),
    ],
)
def test_polygon_pages_equal_the_whole_range_cut(
    emu: str, ticker: str, multiplier: int, timespan: str, frm: str, to: str, limit: int,
    sort: str,
) -> None:  # fmt: skip
    split = {"ticker": ticker, "execution_date": "2025-03-12", "split_from": 1, "split_to": 4}
    httpx.post(f"{emu}/_emulator/splits", json=split).raise_for_status()
    book = SplitBook()
    book.add(Split.parse(split))
    start = int(frm) if frm.isdigit() else day_start_ms(date.fromisoformat(frm))
    end = int(to) if to.isdigit() else day_start_ms(date.fromisoformat(to) + timedelta(days=1)) - 1
    minutes = None if timespan == "day" else multiplier
    expected = expected_polygon(ticker, minutes, start, end, limit, sort, book)
    assert len(expected) > 2
    url = f"{emu}/v2/aggs/ticker/{ticker}/range/{multiplier}/{timespan}/{frm}/{to}"
    r = httpx.get(url, params={"limit": limit, "sort": sort, "apiKey": KEY}, timeout=60)
    for rows, nxt in expected:
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["results"] == rows
        assert body["resultsCount"] == len(rows)
        assert body["queryCount"] <= limit or len(rows) == 1
        if nxt is None:
            assert "next_url" not in body
            break
        path = urlsplit(body["next_url"]).path
        assert path.endswith(f"/range/{multiplier}/{timespan}/{nxt[0]}/{nxt[1]}")
        r = httpx.get(f"{body['next_url']}&apiKey={KEY}", timeout=60)
