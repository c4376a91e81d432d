"""The crypto clients speak the providers' protocols (scripted httpx transports), and the
crypto ingest confirms empty UTC days only for a pair the provider is known to serve."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import psycopg

from swiftbolt_pipeline.core.errors import SYMBOL_NOT_FOUND
from swiftbolt_pipeline.core.models import Provider
from swiftbolt_pipeline.ingest.crypto import ingest_crypto
from swiftbolt_pipeline.providers.crypto import AlpacaCryptoClient, PolygonCryptoClient
from swiftbolt_pipeline.providers.http import RequestStats
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline_tests.providers.helpers import (
    BASE,
    KEY,
    CountingLimiter,
    Script,
    fake_clock,
    ok,
)

XMAS = int(datetime(2025, 12, 25, tzinfo=UTC).timestamp() * 1000)
BOXING_DAY_END = int(datetime(2025, 12, 27, tzinfo=UTC).timestamp() * 1000) - 1
MIN15 = 15 * 60_000


def _agg(t: int, price: float = 87000.0, volume: float = 12.6) -> dict[str, Any]:
    return {"t": t, "o": price, "h": price + 5, "l": price - 5, "c": price + 1, "v": volume,
            "vw": price, "n": 40}  # fmt: skip


def _polygon(script: Script) -> PolygonCryptoClient:
    return PolygonCryptoClient(
        BASE, KEY, CountingLimiter(), fake_clock(), transport=script.transport, rng=None
    )


def test_polygon_asks_for_utc_days_in_milliseconds_and_follows_next_url() -> None:
    script = Script(
        ok({"status": "OK", "ticker": "X:BTCUSD", "results": [_agg(XMAS)],
            "next_url": f"{BASE}/v2/aggs/ticker/X:BTCUSD/range/15/minute/{XMAS + MIN15}/"
                        f"{BOXING_DAY_END}?cursor=abc"}),
        ok({"status": "OK", "ticker": "X:BTCUSD", "results": [_agg(XMAS + MIN15)]}),
    )  # fmt: skip
    pages = list(
        _polygon(script).crypto_pages(
            "X:BTCUSD", date(2025, 12, 25), date(2025, 12, 26), RequestStats()
        )
    )
    first, second = script.requests
    assert first.url.path == f"/v2/aggs/ticker/X:BTCUSD/range/15/minute/{XMAS}/{BOXING_DAY_END}"
    assert dict(first.url.params) == {"adjusted": "true", "sort": "asc", "limit": "50000"}
    assert first.headers["authorization"] == f"Bearer {KEY}"
    assert second.url.params["cursor"] == "abc" and "apiKey" not in str(second.url)
    bars = [row for page in pages for row in page.iter_rows(named=True)]
    assert [b["ts"] for b in bars] == [
        datetime(2025, 12, 25, 0, 0, tzinfo=UTC),
        datetime(2025, 12, 25, 0, 15, tzinfo=UTC),
    ]
    assert bars[0]["volume"] == 13  # fractional coins, stored as whole units


def test_alpaca_asks_for_the_slash_pair_without_stock_parameters() -> None:
    bar = {"t": "2025-12-25T00:00:00Z", "o": 1.0, "h": 2.0, "l": 0.5, "c": 1.5, "v": 3.2,
           "n": 7, "vw": 1.2}  # fmt: skip
    script = Script(
        ok({"bars": {"BTC/USD": [bar]}, "next_page_token": "tok"}),
        ok({"bars": {"BTC/USD": [{**bar, "t": "2025-12-25T00:15:00Z"}]}, "next_page_token": None}),
    )
    client = AlpacaCryptoClient(
        BASE, "key-id", "secret", CountingLimiter(), fake_clock(), transport=script.transport
    )
    pages = list(
        client.crypto_pages("X:BTCUSD", date(2025, 12, 25), date(2025, 12, 26), RequestStats())
    )
    first, second = script.requests
    assert first.url.path == "/v1beta3/crypto/us/bars"
    assert dict(first.url.params) == {
        "symbols": "BTC/USD", "timeframe": "15Min", "start": "2025-12-25T00:00:00Z",
        "end": "2025-12-26T23:59:59Z", "limit": "10000", "sort": "asc",
    }  # fmt: skip
    assert second.url.params["page_token"] == "tok"
    assert [p.height for p in pages] == [1, 1]


class _Served:
    """A crypto client serving fixed bars, as a provider's pages would."""

    provider = Provider.POLYGON

    def __init__(self, bars: list[dict[str, Any]]) -> None:
        self.bars = bars

    def crypto_pages(self, ticker: str, first: date, last: date, stats: RequestStats) -> Any:
        stats.requests += 1
        script = Script(ok({"status": "OK", "ticker": ticker, "results": self.bars}))
        yield from _polygon(script).crypto_pages(ticker, first, last, RequestStats())


def _ingest(conn: psycopg.Connection, pair: str, bars: list[dict[str, Any]]) -> Any:
    ids = watchlist.ensure(conn, [pair])
    conn.commit()
    return ingest_crypto(
        conn, lambda _: _Served(bars), [Provider.POLYGON], run_id="test", symbol=pair,
        symbol_id=ids[pair], days=[date(2025, 12, 25), date(2025, 12, 26)],
        now=datetime(2026, 1, 2, tzinfo=UTC),
    )  # fmt: skip


def _confirmed(conn: psycopg.Connection, pair: str) -> list[tuple[date, int]]:
    rows = conn.execute(
        """SELECT c.day, c.bars FROM confirmed_sessions c JOIN symbols s ON s.id = c.symbol_id
           WHERE s.ticker = %s ORDER BY 1""",
        (pair,),
    ).fetchall()
    conn.commit()
    return [(d, n) for d, n in rows]


def test_an_empty_day_of_a_served_pair_is_confirmed_empty(conn: psycopg.Connection) -> None:
    result = _ingest(conn, "X:EMPTYUSD", [_agg(XMAS), _agg(XMAS + MIN15)])
    assert result.error is None and result.bars_written == 2
    assert _confirmed(conn, "X:EMPTYUSD") == [(date(2025, 12, 25), 2), (date(2025, 12, 26), 0)]
    # Served nothing at all the next time: SYMBOL_NOT_FOUND for this fetch (as for a stock
    # whose whole range comes back empty), and the stored final bars stay.
    again = _ingest(conn, "X:EMPTYUSD", [])
    assert again.error is not None and again.error.code == SYMBOL_NOT_FOUND
    assert _confirmed(conn, "X:EMPTYUSD") == [(date(2025, 12, 25), 2), (date(2025, 12, 26), 0)]
    stored = conn.execute(
        """SELECT count(*) FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
           WHERE s.ticker = 'X:EMPTYUSD'"""
    ).fetchone()
    conn.commit()
    assert stored == (2,)


def test_an_unknown_pair_confirms_nothing(conn: psycopg.Connection) -> None:
    result = _ingest(conn, "X:NEVERUSD", [])
    assert result.error is not None and result.error.code == SYMBOL_NOT_FOUND
    assert _confirmed(conn, "X:NEVERUSD") == []


def test_a_fetch_records_one_ledger_row_per_window(conn: psycopg.Connection) -> None:
    _ingest(conn, "X:LEDGERUSD", [_agg(XMAS)])
    rows = conn.execute(
        """SELECT provider, timeframe, range_start, range_end, expected_cost, actual_cost,
                  rows_written, status FROM job_runs WHERE symbol = 'X:LEDGERUSD'"""
    ).fetchall()
    conn.commit()
    assert rows == [("polygon", "m15", date(2025, 12, 25), date(2025, 12, 26), 1, 1, 1, "success")]
