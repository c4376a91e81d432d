"""Splits in the emulator: `/v3/reference/splits` in Polygon's format, the admin API, and the
split adjustment of `adjusted=true` aggregates."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from swiftbolt_pipeline_tests.emulator.emulator_helpers import KEY, aggs

SPLIT = {"ticker": "GENR", "execution_date": "2025-06-04", "split_from": 1, "split_to": 4}


def _splits(base: str, **params: Any) -> httpx.Response:
    params.setdefault("apiKey", KEY)
    return httpx.get(f"{base}/v3/reference/splits", params=params, timeout=30)


def _add(base: str, body: Any) -> httpx.Response:
    return httpx.post(f"{base}/_emulator/splits", json=body)


def _bars(base: str, ticker: str, day: str, adjusted: str) -> list[dict[str, Any]]:
    r = aggs(base, ticker, day, day, adjusted=adjusted, limit=50000)
    assert r.status_code == 200
    assert "next_url" not in r.json()
    return r.json()["results"]


def test_no_splits_is_an_ok_empty_list(emu: str) -> None:
    r = _splits(emu, ticker="GENR")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "OK" and body["results"] == [] and body["request_id"]
    assert "next_url" not in body


def test_splits_need_the_key(emu: str) -> None:
    r = httpx.get(f"{emu}/v3/reference/splits", params={"ticker": "GENR"})
    assert r.status_code == 401 and r.json()["status"] == "ERROR"
    r = httpx.get(
        f"{emu}/v3/reference/splits",
        params={"ticker": "GENR"},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert r.status_code == 200


def test_added_split_is_listed_in_polygon_format(emu: str) -> None:
    r = _add(emu, [SPLIT, {**SPLIT, "ticker": "spy", "execution_date": "2025-07-01"}])
    assert r.status_code == 200 and len(r.json()["splits"]) == 2
    (split,) = _splits(emu, ticker="GENR").json()["results"]
    assert split == {
        "execution_date": "2025-06-04",
        "id": split["id"],
        "split_from": 1,
        "split_to": 4,
        "ticker": "GENR",
    }
    assert isinstance(split["id"], str) and split["id"].startswith("E")
    assert [s["ticker"] for s in _splits(emu, ticker="SPY").json()["results"]] == ["SPY"]
    assert _splits(emu, ticker="GENR", **{"execution_date.gte": "2025-06-05"}).json() | {
        "request_id": "x"
    } == {"results": [], "status": "OK", "request_id": "x"}
    assert (
        len(_splits(emu, ticker="GENR", **{"execution_date.lte": "2025-06-04"}).json()["results"])
        == 1
    )
    assert len(_splits(emu, **{"execution_date": "2025-07-01"}).json()["results"]) == 1
    assert _splits(emu, reverse_split="true").json()["results"] == []
    assert _splits(emu, **{"execution_date.gte": "June"}).status_code == 400


def test_pagination_follows_next_url_without_the_key(emu: str) -> None:
    days = ["2024-05-01", "2024-09-03", "2025-01-06", "2025-06-04", "2025-10-01"]
    assert _add(emu, [{**SPLIT, "execution_date": d} for d in days]).status_code == 200
    seen: list[str] = []
    r = _splits(emu, ticker="GENR", limit=2, order="desc")
    pages = 1
    while True:
        body = r.json()
        seen.extend(s["execution_date"] for s in body["results"])
        if "next_url" not in body:
            break
        assert KEY not in body["next_url"] and "apiKey" not in body["next_url"]
        assert body["next_url"].startswith(f"{emu}/v3/reference/splits?cursor=")
        r = httpx.get(body["next_url"], headers={"Authorization": f"Bearer {KEY}"})
        pages += 1
    assert pages == 3
    assert seen == sorted(days, reverse=True)
    # The runtime page size caps reference pages too.
    httpx.put(f"{emu}/_emulator/config", json={"page_size": 4}).raise_for_status()
    assert len(_splits(emu, ticker="GENR", limit=1000).json()["results"]) == 4


def test_split_requests_share_the_polygon_route(emu: str) -> None:
    httpx.put(f"{emu}/_emulator/config", json={"rate_limit": 2}).raise_for_status()
    assert aggs(emu, "GENR", "2025-06-02", "2025-06-02").status_code == 200
    assert _splits(emu, ticker="GENR").status_code == 200
    r = _splits(emu, ticker="GENR")
    assert r.status_code == 429
    stats = httpx.get(f"{emu}/_emulator/stats").json()
    assert stats["requests"]["polygon"] == 3
    assert [e["path"] for e in stats["log"]][-1] == "/v3/reference/splits"
    httpx.put(f"{emu}/_emulator/config", json={"rate_limit": None}).raise_for_status()
    httpx.post(
        f"{emu}/_emulator/faults", json={"route": "polygon", "kind": "status", "status": 502}
    ).raise_for_status()
    assert _splits(emu, ticker="GENR").status_code == 502


@pytest.mark.parametrize("ticker", ["GENR", "SPY"])  # generated and real data
def test_adjusted_aggregates_divide_prices_before_the_split(emu: str, ticker: str) -> None:
    before_raw = _bars(emu, ticker, "2025-06-03", "true")
    after_raw = _bars(emu, ticker, "2025-06-04", "true")
    assert _add(emu, {**SPLIT, "ticker": ticker}).status_code == 200

    before = _bars(emu, ticker, "2025-06-03", "true")
    assert len(before) == len(before_raw) > 0
    for adj, raw in zip(before, before_raw, strict=True):
        assert adj["t"] == raw["t"]
        for key in ("o", "h", "l", "c"):
            assert adj[key] == pytest.approx(raw[key] / 4, abs=1e-4)
        assert adj["vw"] == pytest.approx(raw["vw"] / 4, abs=2e-4)
        assert adj["v"] == raw["v"] * 4
        assert adj["n"] == raw["n"]
    # On and after the execution date: unchanged. Unadjusted: unchanged everywhere.
    assert _bars(emu, ticker, "2025-06-04", "true") == after_raw
    assert _bars(emu, ticker, "2025-06-03", "false") == before_raw


def test_adjustment_spans_pages_and_splits_compound(emu: str) -> None:
    raw = _bars(emu, "GENR", "2025-06-02", "false")
    _add(emu, [SPLIT, {**SPLIT, "execution_date": "2025-06-03", "split_from": 2, "split_to": 3}])
    # A 2025-06-02 bar precedes both splits: 4 * 1.5 = 6.
    first = aggs(emu, "GENR", "2025-06-02", "2025-06-02", limit=60).json()
    assert first["adjusted"] is True
    assert first["results"][0]["o"] == pytest.approx(raw[0]["o"] / 6, abs=1e-4)
    nxt = httpx.get(first["next_url"], headers={"Authorization": f"Bearer {KEY}"}).json()
    assert nxt["results"][0]["c"] == pytest.approx(raw[len(first["results"])]["c"] / 6, abs=1e-4)
    assert nxt["results"][0]["v"] == raw[len(first["results"])]["v"] * 6


def test_admin_validation_delete_and_reset(emu: str) -> None:
    for bad in (
        {**SPLIT, "execution_date": "soon"},
        {**SPLIT, "split_to": 0},
        {**SPLIT, "split_from": True},
        {**SPLIT, "split_to": 1},
        {**SPLIT, "ticker": ""},
        "GENR",
    ):
        assert _add(emu, bad).status_code == 400, bad
    assert httpx.get(f"{emu}/_emulator/splits").json() == {"splits": []}
    _add(emu, [SPLIT, {**SPLIT, "ticker": "QQQ"}]).raise_for_status()
    r = httpx.delete(f"{emu}/_emulator/splits", params={"ticker": "qqq"})
    assert [s["ticker"] for s in r.json()["splits"]] == ["GENR"]
    # Re-adding the same day replaces the ratio.
    _add(emu, {**SPLIT, "split_to": 2}).raise_for_status()
    (only,) = httpx.get(f"{emu}/_emulator/splits").json()["splits"]
    assert only["split_to"] == 2
    httpx.post(f"{emu}/_emulator/reset").raise_for_status()
    assert httpx.get(f"{emu}/_emulator/splits").json() == {"splits": []}
    assert _splits(emu, ticker="GENR").json()["results"] == []
