"""Dividends: the client against recorded Polygon pages (MockTransport), and the
corporate-actions sensor's check against the emulator over HTTP: the stored rows are the
emulator's source rows, once, however often the check runs."""

from __future__ import annotations

import json
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import errors
from swiftbolt_pipeline.defs.resources import PolygonResource, WarehouseResource
from swiftbolt_pipeline.emulator.dividends import DIVIDENDS
from swiftbolt_pipeline.ingest.corporate_actions import check_corporate_actions
from swiftbolt_pipeline.providers.http import RequestStats
from swiftbolt_pipeline.providers.polygon_reference import DividendEvent, PolygonReferenceClient
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline_tests.conftest import EMULATOR_KEY
from swiftbolt_pipeline_tests.providers.helpers import (
    BASE,
    KEY,
    CountingLimiter,
    Script,
    fake_clock,
    ok,
)

RECORDED = Path(__file__).parents[1] / "emulator" / "recorded"

SYMBOLS = ["AAPL", "NVDA", "SPY"]  # at most one tick's worth of checks

# ---------------------------------------------------------------- the client


def _recorded(name: str) -> dict[str, Any]:
    return json.loads((RECORDED / name).read_text())


def _client(script: Script) -> PolygonReferenceClient:
    return PolygonReferenceClient(
        BASE, KEY, CountingLimiter(), fake_clock(), transport=script.transport
    )


def test_client_reads_the_recorded_pages_oldest_first() -> None:
    first = _recorded("polygon_dividends_AAPL.json")
    script = Script(ok(first), ok({"results": [], "status": "OK", "request_id": "r2"}))
    stats = RequestStats()
    found = _client(script).fetch_dividends("AAPL", stats)
    assert stats.requests == 2  # the recorded next_url, followed on the configured host
    assert script.requests[0].url.params["sort"] == "ex_dividend_date"
    assert str(script.requests[1].url).startswith(f"{BASE}/v3/reference/dividends?cursor=")
    assert all(KEY not in str(r.url) for r in script.requests)
    assert [d.ex_date for d in found] == sorted(
        date.fromisoformat(r["ex_dividend_date"]) for r in first["results"]
    )
    assert found[-1] == DividendEvent(
        "AAPL", date(2023, 8, 11), 0.24, "CD", date(2023, 8, 14), date(2023, 8, 17), "USD", 4
    )


def test_client_accepts_missing_optional_fields() -> None:
    page = _recorded("polygon_dividends_no_currency.json")
    page["results"] = [page["results"][0] | {"ticker": "CSSEN"}]
    del page["results"][0]["record_date"], page["results"][0]["frequency"]
    (found,) = _client(Script(ok(page))).fetch_dividends("CSSEN", RequestStats())
    assert (found.currency, found.record_date, found.frequency) == (None, None, None)
    assert found.pay_date == date(2025, 6, 30) and found.cash_amount == 0.59375


@pytest.mark.parametrize(
    "change",
    [
        {"ex_dividend_date": None},
        {"cash_amount": "0.24"},
        {"cash_amount": -1},
        {"cash_amount": False},
        {"dividend_type": None},
        {"pay_date": "17/08/2023"},
        {"frequency": 4.5},
        {"ticker": "MSFT"},
    ],
)
def test_client_refuses_malformed_dividends(change: dict[str, Any]) -> None:
    page = _recorded("polygon_dividends_AAPL.json")
    del page["next_url"]
    page["results"][0] |= change
    with pytest.raises(errors.ProviderError) as caught:
        _client(Script(ok(page))).fetch_dividends("AAPL", RequestStats())
    assert caught.value.code == errors.MALFORMED_RESPONSE


# ---------------------------------------------------------------- the check, over HTTP


def _expected() -> list[tuple]:
    """The emulator's source rows as the table should hold them, sorted like the query."""
    out = []
    for d in DIVIDENDS:
        if d.ticker in SYMBOLS:
            out.append(
                (d.ticker, d.ex_dividend_date, d.dividend_type, d.record_date, d.pay_date,
                 Decimal(str(d.cash_amount)), d.currency, d.frequency)
            )  # fmt: skip
    return sorted(out, key=lambda r: (r[0], r[1], r[2]))


def _stored(conn: psycopg.Connection) -> list[tuple]:
    return conn.execute(
        """SELECT symbol, ex_date, type, record_date, pay_date, cash_amount, currency, frequency
             FROM dividends ORDER BY symbol, ex_date, type"""
    ).fetchall()


def _dividend_requests(emulator: str) -> int:
    log = httpx.get(f"{emulator}/_emulator/stats").json()["log"]
    return sum(1 for entry in log if entry["path"] == "/v3/reference/dividends")


def test_a_check_stores_each_dividend_once(
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    emulator: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    watchlist.add(conn, SYMBOLS)
    conn.commit()
    httpx.post(f"{emulator}/_emulator/reset").raise_for_status()
    warehouse = WarehouseResource(database_url=pipeline_env["DATABASE_URL"])
    polygon = PolygonResource(
        api_key=EMULATOR_KEY,
        base_url=pipeline_env["POLYGON_BASE_URL"],
        warehouse=warehouse,
        backoff_base_s=0.01,
    )
    expected = _expected()
    assert len(expected) == 14 + 4 + 3

    settings = Settings.from_env()
    counts = check_corporate_actions(conn, polygon, settings)
    assert (counts.checked, counts.failed, counts.dividends) == (3, 0, len(expected))
    assert counts.requests == 6  # splits and dividends, one page each
    assert _stored(conn) == expected
    first_fetch = conn.execute("SELECT max(fetched_at) FROM dividends").fetchone()

    # A day later the symbols are due again; pages of 2 make the check follow next_url.
    httpx.put(f"{emulator}/_emulator/config", json={"page_size": 2}).raise_for_status()
    try:
        later = settings.now() + timedelta(days=1, minutes=1)
        monkeypatch.setenv("SWIFTBOLT_NOW", later.isoformat())
        counts = check_corporate_actions(conn, polygon, Settings.from_env())
    finally:
        httpx.put(f"{emulator}/_emulator/config", json={"page_size": None}).raise_for_status()
    assert (counts.checked, counts.dividends) == (3, len(expected))
    assert _dividend_requests(emulator) == 3 + (7 + 2 + 2)  # first run, then ceil(n / 2) pages
    assert _stored(conn) == expected
    assert conn.execute("SELECT max(fetched_at) FROM dividends").fetchone() != first_fetch
    found = conn.execute(
        """SELECT ticker, status, dividends_found FROM corporate_action_checks
            ORDER BY ticker"""
    ).fetchall()
    assert found == [("AAPL", "ok", 14), ("NVDA", "ok", 4), ("SPY", "ok", 3)]
