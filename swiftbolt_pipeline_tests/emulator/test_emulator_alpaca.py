"""The emulator's Alpaca market data v2 multi-symbol bars endpoint, over real HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from swiftbolt_pipeline.emulator.alpaca import encode_token
from swiftbolt_pipeline_tests.emulator.emulator_helpers import KEY, aggs

HEADERS = {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": KEY}
# 2025-06-02 .. 2025-06-06 as whole New York days (EDT), the client's range shape.
WEEK: dict[str, Any] = {"start": "2025-06-02T04:00:00Z", "end": "2025-06-07T03:59:59Z"}
DAY: dict[str, Any] = {"start": "2025-06-02T04:00:00Z", "end": "2025-06-03T03:59:59Z"}


def bars(base: str, symbols: str, headers: dict[str, str] | None = None, **params: Any):
    query = {"symbols": symbols, "timeframe": "15Min", **DAY, "adjustment": "all"} | params
    return httpx.get(
        f"{base}/v2/stocks/bars",
        params={k: v for k, v in query.items() if v is not None},
        headers=HEADERS if headers is None else headers,
        timeout=30,
    )


def all_pages(base: str, symbols: str, **params: Any) -> list[dict[str, Any]]:
    pages = [bars(base, symbols, **params).json()]
    while pages[-1]["next_page_token"]:
        r = bars(base, symbols, page_token=pages[-1]["next_page_token"], **params)
        assert r.status_code == 200, r.text
        pages.append(r.json())
        assert len(pages) < 200
    return pages


def merged(pages: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for p in pages:
        for symbol, items in p["bars"].items():
            out.setdefault(symbol, []).extend(items)
    return out


def to_ms(rfc3339: str) -> int:
    assert rfc3339.endswith("Z")
    return int(datetime.fromisoformat(rfc3339).timestamp() * 1000)


def polygon_15min(base: str, ticker: str, frm: str, to: str) -> list[dict[str, Any]]:
    body = aggs(base, ticker, frm, to, limit=50000).json()
    assert "next_url" not in body
    return body.get("results", [])


def assert_same_bars(alpaca: list[dict[str, Any]], polygon: list[dict[str, Any]]) -> None:
    assert len(alpaca) == len(polygon) > 0
    for a, p in zip(alpaca, polygon, strict=True):
        assert to_ms(a["t"]) == p["t"]
        assert (a["o"], a["h"], a["l"], a["c"], a["v"], a["n"], a["vw"]) == (
            p["o"], p["h"], p["l"], p["c"], p["v"], p["n"], p["vw"],
        )  # fmt: skip


def test_auth_headers_required(emu: str) -> None:
    for headers in (
        {},
        {"APCA-API-KEY-ID": KEY},
        {"APCA-API-SECRET-KEY": KEY},
        {"APCA-API-KEY-ID": KEY, "APCA-API-SECRET-KEY": "wrong"},
        {"APCA-API-KEY-ID": "wrong", "APCA-API-SECRET-KEY": KEY},
    ):
        r = bars(emu, "SPY", headers=headers)
        assert r.status_code == 403 and r.json() == {"message": "forbidden"}
    # the Polygon ways of passing a key are not Alpaca's
    assert bars(emu, "SPY", headers={"Authorization": f"Bearer {KEY}"}).status_code == 403
    assert bars(emu, "SPY", apiKey=KEY, headers={}).status_code == 403
    assert bars(emu, "SPY").status_code == 200
    stats = httpx.get(f"{emu}/_emulator/stats").json()
    assert stats["requests"] == {"polygon": 0, "tradier": 0, "alpaca": 8}
    assert stats["by_status"] == {"403": 7, "200": 1}
    assert {e["route"] for e in stats["log"]} == {"alpaca"}


def test_real_data_equals_the_polygon_handler(emu: str) -> None:
    body = bars(emu, "SPY,QQQ", **WEEK, limit=10000).json()
    assert list(body["bars"]) == ["QQQ", "SPY"] and body["next_page_token"] is None
    for ticker in ("SPY", "QQQ"):
        assert_same_bars(
            body["bars"][ticker], polygon_15min(emu, ticker, "2025-06-02", "2025-06-06")
        )
    assert body["bars"]["SPY"][0]["t"] == "2025-06-02T13:30:00Z"  # the file: regular hours only


def test_generated_data_equals_the_polygon_handler(emu: str) -> None:
    body = bars(emu, "GENA", **WEEK, limit=10000).json()
    got = body["bars"]["GENA"]
    assert_same_bars(got, polygon_15min(emu, "GENA", "2025-06-02", "2025-06-06"))
    assert all(to_ms(b["t"]) % 900_000 == 0 for b in got)
    assert [b["t"] for b in got] == sorted(b["t"] for b in got)
    day = [b["t"] for b in got if b["t"].startswith("2025-06-02")]
    assert day[0] < "2025-06-02T13:30:00Z" < day[-1] and day[-1] >= "2025-06-02T20:00:00Z"


def test_limit_counts_bars_across_symbols_and_pages_are_continuous(emu: str) -> None:
    symbols = "GENC,GENA,ZZNOPE,GENB"
    whole = bars(emu, symbols, **WEEK, limit=10000).json()
    assert whole["next_page_token"] is None
    assert list(whole["bars"]) == ["GENA", "GENB", "GENC"]  # sorted, ZZ* absent
    total = sum(len(v) for v in whole["bars"].values())
    pages = all_pages(emu, symbols, **WEEK, limit=250)
    assert len(pages) == -(-total // 250)
    assert all(sum(len(v) for v in p["bars"].values()) == 250 for p in pages[:-1])
    assert merged(pages) == whole["bars"]  # no duplicates, no gaps, same order
    order = [s for p in pages for s in p["bars"]]
    assert [s for i, s in enumerate(order) if i == 0 or order[i - 1] != s] == list(whole["bars"])
    assert pages[-1]["next_page_token"] is None


def test_page_ending_exactly_at_a_symbol_boundary(emu: str) -> None:
    whole = bars(emu, "GENA,GENB", limit=10000).json()["bars"]
    n = len(whole["GENA"])
    first = bars(emu, "GENA,GENB", limit=n).json()
    assert first["bars"] == {"GENA": whole["GENA"]}
    assert first["next_page_token"]
    second = bars(emu, "GENA,GENB", limit=10000, page_token=first["next_page_token"]).json()
    assert second == {"bars": {"GENB": whole["GENB"]}, "next_page_token": None}
    last = bars(emu, "GENA,ZZX", limit=n).json()  # nothing after GENA: no token
    assert last == {"bars": {"GENA": whole["GENA"]}, "next_page_token": None}


def test_desc_sort_and_server_forced_page_size(emu: str) -> None:
    whole = bars(emu, "GENA,GENB", limit=10000).json()["bars"]
    desc = merged(all_pages(emu, "GENA,GENB", limit=37, sort="desc"))
    assert desc == {s: v[::-1] for s, v in whole.items()}
    httpx.put(f"{emu}/_emulator/config", json={"page_size": 40}).raise_for_status()
    pages = all_pages(emu, "GENA,GENB", limit=10000)
    assert all(sum(len(v) for v in p["bars"].values()) <= 40 for p in pages)
    assert len(pages) == -(-sum(len(v) for v in whole.values()) // 40)
    assert merged(pages) == whole


def test_symbol_count_limit(emu: str) -> None:
    fifty = [f"GS{i:02d}" for i in range(50)]
    ok = bars(emu, ",".join([*fifty, "GS00", "gs01"]), limit=10000)  # duplicates count once
    assert ok.status_code == 200
    assert len(ok.json()["bars"]) == 50
    r = bars(emu, ",".join([*fifty, "GS50"]))
    assert r.status_code == 400
    assert r.json()["code"] == 40010000 and "too many symbols" in r.json()["message"]


def test_unlisted_symbols_and_empty_ranges_answer_200(emu: str) -> None:
    r = bars(emu, "ZZNOPE,ZZTOP", **WEEK)
    assert r.status_code == 200 and r.json() == {"bars": {}, "next_page_token": None}
    weekend = bars(emu, "GENA", start="2025-06-07T04:00:00Z", end="2025-06-09T03:59:59Z")
    assert weekend.json() == {"bars": {}, "next_page_token": None}
    one = bars(emu, "GENA", start="2025-06-02T13:30:00Z", end="2025-06-02T13:30:00Z").json()
    assert [b["t"] for b in one["bars"]["GENA"]] == ["2025-06-02T13:30:00Z"]  # end inclusive
    offset = bars(emu, "GENA", start="2025-06-02T09:31:00-04:00", end="2025-06-02T10:00:00-04:00")
    assert [b["t"] for b in offset.json()["bars"]["GENA"]] == [
        "2025-06-02T13:45:00Z",
        "2025-06-02T14:00:00Z",
    ]  # only buckets starting inside [start, end]


def test_nothing_after_now(emu: str, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.fromisoformat("2025-06-02T10:07:00-04:00")
    monkeypatch.setenv("SWIFTBOLT_NOW", now.isoformat())
    body = bars(emu, "SPY,GENF", **WEEK).json()
    assert body["next_page_token"] is None
    for symbol in ("GENF", "SPY"):
        ts = [b["t"] for b in body["bars"][symbol]]
        assert max(ts) == "2025-06-02T14:00:00Z"  # the 10:00 ET bucket, still in progress
    assert_same_bars(body["bars"]["GENF"], polygon_15min(emu, "GENF", "2025-06-02", "2025-06-06"))
    now_day = bars(emu, "GENF", start=None, end=None).json()  # defaults: today 00:00 .. now
    assert now_day["bars"]["GENF"] == body["bars"]["GENF"]
    monkeypatch.setenv("SWIFTBOLT_NOW", "2025-06-01T12:00:00-04:00")
    assert bars(emu, "SPY", **WEEK).json() == {"bars": {}, "next_page_token": None}


@pytest.mark.parametrize(
    ("params", "status", "text"),
    [
        ({"timeframe": "15Minutes"}, 422, "invalid timeframe"),
        ({"timeframe": "99Min"}, 422, "invalid timeframe"),
        ({"timeframe": None}, 422, "missing timeframe"),
        ({"timeframe": "1Hour"}, 400, "not supported"),
        ({"start": "2025-06-02 04:00"}, 400, "invalid start"),
        ({"end": "yesterday"}, 400, "invalid end"),
        ({"start": "2025-06-03T00:00:00Z", "end": "2025-06-02T00:00:00Z"}, 422, "before start"),
        ({"limit": "0"}, 400, "invalid limit"),
        ({"limit": "10001"}, 400, "invalid limit"),
        ({"adjustment": "none"}, 400, "invalid adjustment"),
        ({"feed": "nasdaq"}, 400, "invalid feed"),
        ({"sort": "up"}, 400, "invalid sort"),
        ({"symbol": "SPY"}, 400, "unexpected parameter(s): symbol"),
        ({"page_token": "!!!"}, 400, "invalid page token"),
        ({"page_token": encode_token("QQQ", 1748871000000)}, 400, "invalid page token"),
    ],
)
def test_bad_parameters(emu: str, params: dict[str, Any], status: int, text: str) -> None:
    r = bars(emu, "SPY", **params)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == status * 100000 + 10000 and text in body["message"]


def test_feed_and_numbered_minute_timeframes(emu: str) -> None:
    for feed in ("iex", "sip"):
        assert bars(emu, "GENA", feed=feed).status_code == 200
    five = bars(emu, "GENA", timeframe="5Min", limit=10000).json()["bars"]["GENA"]
    assert all(to_ms(b["t"]) % 300_000 == 0 for b in five)
    fifteen_t = bars(emu, "GENA", timeframe="15T", limit=10000).json()["bars"]["GENA"]
    assert fifteen_t == bars(emu, "GENA", limit=10000).json()["bars"]["GENA"]


def test_rate_limit_is_per_route(emu: str) -> None:
    httpx.put(f"{emu}/_emulator/config", json={"rate_limit": 2, "rate_window_s": 30})
    assert [bars(emu, "GENA").status_code for _ in range(2)] == [200, 200]
    r = bars(emu, "GENA")
    assert r.status_code == 429
    assert r.json() == {"code": 42910000, "message": "too many requests."}
    assert aggs(emu, "GENA", "2025-06-02", "2025-06-02").status_code == 200  # polygon's own
    httpx.put(f"{emu}/_emulator/config", json={"retry_after": True})
    assert bars(emu, "GENA").headers["retry-after"].isdigit()
    stats = httpx.get(f"{emu}/_emulator/stats").json()
    assert stats["requests"] == {"polygon": 1, "tradier": 0, "alpaca": 4}
    assert stats["rejected_429"] == {"polygon": 0, "tradier": 0, "alpaca": 2}
    httpx.post(f"{emu}/_emulator/reset").raise_for_status()
    stats = httpx.get(f"{emu}/_emulator/stats").json()
    assert stats["requests"] == {"polygon": 0, "tradier": 0}
    assert bars(emu, "GENA").status_code == 200  # reset clears the alpaca window too


def test_faults_on_the_alpaca_route(emu: str) -> None:
    faults = [
        {"route": "alpaca", "kind": "status", "status": 503, "count": 2},
        {"route": "alpaca", "kind": "malformed"},
        {"route": "alpaca", "kind": "disconnect"},
    ]
    assert httpx.post(f"{emu}/_emulator/faults", json=faults).status_code == 200
    assert aggs(emu, "GENA", "2025-06-02", "2025-06-02").status_code == 200  # other route
    first, second = bars(emu, "GENA"), bars(emu, "GENA")
    assert (first.status_code, second.status_code) == (503, 503)
    assert first.json()["message"] == "Injected fault: HTTP 503"
    truncated = bars(emu, "GENA")
    assert truncated.status_code == 200
    with pytest.raises(ValueError):
        truncated.json()
    with pytest.raises(httpx.RemoteProtocolError):
        bars(emu, "GENA")
    assert bars(emu, "GENA").status_code == 200
    log = httpx.get(f"{emu}/_emulator/stats").json()["log"]
    assert [e.get("fault") for e in log if e["route"] == "alpaca"] == [
        "status", "status", "malformed", "disconnect", None,
    ]  # fmt: skip
    assert all(KEY not in str(e) for e in log)


def test_bar_shape(emu: str) -> None:
    for b in bars(emu, "GENA").json()["bars"]["GENA"]:
        parsed = datetime.fromisoformat(b["t"])
        assert parsed.utcoffset() == timedelta(0) and parsed.second == 0
        assert set(b) == {"t", "o", "h", "l", "c", "v", "n", "vw"}
        assert isinstance(b["v"], int) and isinstance(b["n"], int)
        assert b["l"] <= min(b["o"], b["c"]) <= max(b["o"], b["c"]) <= b["h"]
