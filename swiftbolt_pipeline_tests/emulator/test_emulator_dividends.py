"""`/v3/reference/dividends` in the emulator against pages recorded from the real API: the same
keys, value types, order and paging, optional fields omitted when unknown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from swiftbolt_pipeline_tests.emulator.emulator_helpers import KEY

RECORDED = Path(__file__).parent / "recorded"
AAPL_PAGE = json.loads((RECORDED / "polygon_dividends_AAPL.json").read_text())
NO_CURRENCY_PAGE = json.loads((RECORDED / "polygon_dividends_no_currency.json").read_text())
REQUIRED = {"ticker", "ex_dividend_date", "cash_amount", "dividend_type"}


def _dividends(base: str, **params: Any) -> httpx.Response:
    params.setdefault("apiKey", KEY)
    return httpx.get(f"{base}/v3/reference/dividends", params=params, timeout=30)


def _types(result: dict[str, Any]) -> dict[str, type]:
    return {k: type(v) for k, v in result.items()}


def test_aapl_pages_equal_the_recorded_page(emu: str) -> None:
    # The recorded page is AAPL's 10 newest dividends up to 2023-08-11, Polygon's default order.
    first = _dividends(emu, ticker="AAPL", **{"ex_dividend_date.lte": "2023-08-11", "limit": 6})
    assert first.status_code == 200
    page = first.json()
    assert set(page) == set(AAPL_PAGE)  # results, status, request_id, next_url
    assert page["status"] == "OK" and len(page["request_id"]) == 32
    cursor = urlsplit(page["next_url"])
    assert cursor.path == "/v3/reference/dividends" and KEY not in page["next_url"]
    rest = httpx.get(f"{page['next_url']}&apiKey={KEY}", timeout=30).json()
    assert "next_url" not in rest
    served = page["results"] + rest["results"]
    assert served == AAPL_PAGE["results"]
    assert [list(r) for r in served] == [list(r) for r in AAPL_PAGE["results"]]  # key order


def test_every_result_has_the_recorded_fields_and_types(emu: str) -> None:
    recorded = _types(AAPL_PAGE["results"][0])
    seen: set[str] = set()
    for ticker in ("SPY", "QQQ", "AAPL", "MSFT", "NVDA"):
        body = _dividends(emu, ticker=ticker, limit=1000).json()
        assert body["results"], ticker
        for result in body["results"]:
            assert result["ticker"] == ticker
            assert REQUIRED <= set(result) <= set(recorded)
            assert all(recorded[k] is t for k, t in _types(result).items()), result
            seen |= set(recorded) - set(result)
        dates = [r["ex_dividend_date"] for r in body["results"]]
        assert dates == sorted(dates, reverse=True)
    # As in the recorded pages: funds without a declaration date, a result without currency.
    assert {"declaration_date", "currency"} <= seen
    assert all("currency" not in r for r in NO_CURRENCY_PAGE["results"])


def test_ascending_order_and_an_unknown_ticker(emu: str) -> None:
    body = _dividends(emu, ticker="SPY", order="asc", sort="ex_dividend_date").json()
    dates = [r["ex_dividend_date"] for r in body["results"]]
    assert dates == sorted(dates)
    empty = _dividends(emu, ticker="ZZZZ").json()
    assert empty["results"] == [] and "next_url" not in empty


def test_dividends_need_the_key_and_count_on_the_polygon_route(emu: str) -> None:
    assert _dividends(emu, ticker="SPY", apiKey="wrong").status_code == 401
    assert _dividends(emu, ticker="SPY", limit="x").status_code == 400
    counts = httpx.get(f"{emu}/_emulator/requests").json()
    assert counts["polygon"]["SPY"] == 2
