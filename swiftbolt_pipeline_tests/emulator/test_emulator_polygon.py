from __future__ import annotations

import csv
import gzip
import io
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import polars as pl
import pytest

from swiftbolt_pipeline.emulator.data import REAL_BARS
from swiftbolt_pipeline_tests.emulator.emulator_helpers import KEY, aggs


def ms(y: int, mo: int, d: int, h: int, mi: int = 0) -> int:
    return int(datetime(y, mo, d, h, mi, tzinfo=UTC).timestamp() * 1000)


def expected_15min(ticker: str, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    df = (
        pl.read_csv(REAL_BARS.read_bytes(), columns=["ticker", "t", "o", "h", "l", "c", "v"])
        .filter((pl.col("ticker") == ticker) & pl.col("t").is_between(start_ms, end_ms - 1))
        .sort("t")
        .with_columns(
            bucket=(pl.col("t") // 900_000) * 900_000,
            tp=(pl.col("h") + pl.col("l") + pl.col("c")) / 3,
        )
        .group_by("bucket", maintain_order=True)
        .agg(
            o=pl.col("o").first(),
            h=pl.col("h").max(),
            l=pl.col("l").min(),
            c=pl.col("c").last(),
            v=pl.col("v").sum(),
            vw=(pl.col("tp") * pl.col("v")).sum() / pl.col("v").sum(),
            vols=pl.col("v"),
        )
    )
    return df.to_dicts()


def test_real_data_15min_matches_independent_aggregation(emu: str) -> None:
    body = aggs(emu, "SPY", "2025-06-02", "2025-06-02").json()
    bars = body["results"]
    regular = [b for b in bars if ms(2025, 6, 2, 13, 30) <= b["t"] < ms(2025, 6, 2, 20)]
    assert len(regular) == 26
    assert regular[0]["t"] == ms(2025, 6, 2, 13, 30)
    expected = expected_15min("SPY", ms(2025, 6, 2, 4), ms(2025, 6, 3, 4))
    assert [b["t"] for b in bars] == [e["bucket"] for e in expected]
    for got, exp in zip(bars, expected, strict=True):
        for f in "ohlc":
            assert got[f] == pytest.approx(exp[f], abs=1e-9)
        assert got["v"] == exp["v"] and isinstance(got["v"], int)
        assert got["vw"] == pytest.approx(exp["vw"], abs=2e-3)
        assert got["l"] <= got["vw"] <= got["h"]
        assert got["n"] == sum(max(1, round(v / 100)) for v in exp["vols"])
    assert body["resultsCount"] == body["count"] == len(bars)
    assert body["status"] == "OK" and body["ticker"] == "SPY" and body["adjusted"] is True
    assert body["queryCount"] == 5 * sum(len(e["vols"]) for e in expected)
    assert "next_url" not in body


def test_the_packaged_real_bars_are_served(emu: str) -> None:
    """The demo's first bar: SPY 09:30-09:45 ET on 2026-02-09, from the file's first three
    regular 5-minute rows (read here with gzip and csv), is what the HTTP endpoint serves."""
    open_et = datetime(2026, 2, 9, 9, 30, tzinfo=ZoneInfo("America/New_York"))
    first = int(open_et.timestamp() * 1000)
    with gzip.open(io.BytesIO(REAL_BARS.read_bytes()), "rt", newline="") as fh:
        rows = [
            r
            for r in csv.DictReader(fh)
            if r["ticker"] == "SPY" and 0 <= int(r["t"]) - first < 900_000
        ]
    assert [int(r["t"]) - first for r in rows] == [0, 300_000, 600_000]
    bars = {b["t"]: b for b in aggs(emu, "SPY", "2026-02-09", "2026-02-09").json()["results"]}
    got = bars[first]
    assert got["o"] == float(rows[0]["o"]) == 689.42
    assert got["h"] == max(float(r["h"]) for r in rows)
    assert got["l"] == min(float(r["l"]) for r in rows)
    assert got["c"] == float(rows[-1]["c"])
    assert got["v"] == sum(int(r["v"]) for r in rows)


def test_dst_week_real_and_generated(emu: str) -> None:
    real = aggs(emu, "SPY", "2025-10-30", "2025-11-04").json()["results"]
    by_t = {b["t"]: b for b in real}
    days = {datetime.fromtimestamp(t / 1000, UTC).date() for t in by_t}
    assert days == {date(2025, 10, 30), date(2025, 10, 31), date(2025, 11, 3), date(2025, 11, 4)}
    for open_ms in (ms(2025, 10, 31, 13, 30), ms(2025, 11, 3, 14, 30)):  # EDT, then EST
        slots = [open_ms + k * 900_000 for k in range(26)]
        assert all(t in by_t for t in slots)
        assert min(by_t[t]["v"] for t in slots) > 100_000  # regular session volume
        hour_before = [b["v"] for t, b in by_t.items() if open_ms - 3_600_000 <= t < open_ms]
        assert sum(hour_before) < by_t[open_ms]["v"]  # pre-market is thin
    gen = aggs(emu, "GENA", "2025-10-31", "2025-11-03", mult=1, limit=50000).json()["results"]
    fri = [b["t"] for b in gen if b["t"] < ms(2025, 11, 1, 12)]
    mon = [b["t"] for b in gen if b["t"] > ms(2025, 11, 2, 12)]
    assert ms(2025, 10, 31, 8) <= min(fri) and max(fri) < ms(2025, 11, 1, 0)  # 04-20 ET, EDT
    assert ms(2025, 11, 3, 9) <= min(mon) and max(mon) < ms(2025, 11, 4, 1)  # 04-20 ET, EST
    assert ms(2025, 10, 31, 13, 30) in fri and ms(2025, 11, 3, 14, 30) in mon


def test_early_close_real_data(emu: str) -> None:
    bars = aggs(emu, "SPY", "2025-11-28", "2025-11-28").json()["results"]
    open_ms, close_ms = ms(2025, 11, 28, 14, 30), ms(2025, 11, 28, 18)
    regular = [b for b in bars if open_ms <= b["t"] < close_ms]
    assert len(regular) == 14 and regular[-1]["t"] == ms(2025, 11, 28, 17, 45)
    after = [b for b in bars if b["t"] >= close_ms]
    assert all(b["v"] < 1000 for b in after)  # only tiny post-close prints


def test_early_close_generated(emu: str) -> None:
    bars = aggs(emu, "GENB", "2025-11-28", "2025-11-28", mult=1, limit=50000).json()["results"]
    close_ms = ms(2025, 11, 28, 18)
    regular = [b for b in bars if ms(2025, 11, 28, 14, 30) <= b["t"] < close_ms]
    assert len(regular) >= 200  # 210 regular minutes, nearly all traded
    assert max(b["t"] for b in bars) < ms(2025, 11, 28, 22)  # extended ends 17:00 ET
    assert any(b["t"] >= close_ms for b in bars)


def _pages(emu: str, first: httpx.Response, header_auth: bool) -> list[dict[str, Any]]:
    pages = [first.json()]
    while "next_url" in pages[-1]:
        url = pages[-1]["next_url"]
        assert "apiKey" not in url and KEY not in url
        if header_auth:
            r = httpx.get(url, headers={"Authorization": f"Bearer {KEY}"})
        else:
            r = httpx.get(f"{url}&apiKey={KEY}")
        assert r.status_code == 200, r.text
        pages.append(r.json())
        assert len(pages) < 100
    return pages


@pytest.mark.parametrize("header_auth", [True, False])
def test_pagination_limit_counts_base_minutes_real(emu: str, header_auth: bool) -> None:
    big = aggs(emu, "SPY", "2025-06-02", "2025-06-13", limit=50000).json()
    assert "next_url" not in big and big["resultsCount"] == 10 * 26
    pages = _pages(emu, aggs(emu, "SPY", "2025-06-02", "2025-06-13", limit=1000), header_auth)
    assert len(pages) >= 4  # 10 sessions x 390 base minutes / 1000
    for p in pages:
        assert p["queryCount"] <= 1000
        assert p["queryCount"] == 15 * p["resultsCount"]  # 3 five-minute bars x 5 each
    union = [b for p in pages for b in p["results"]]
    assert union == big["results"]
    nxt = pages[0]["next_url"]
    assert httpx.get(nxt).status_code == 401


def test_pagination_generated_and_desc(emu: str) -> None:
    big = aggs(emu, "GENC", "2025-03-03", "2025-03-12", limit=50000).json()
    asc = _pages(emu, aggs(emu, "GENC", "2025-03-03", "2025-03-12", limit=1000), True)
    desc = _pages(emu, aggs(emu, "GENC", "2025-03-03", "2025-03-12", limit=1000, sort="desc"), True)
    assert len(asc) > 3 and len(desc) > 3
    assert all(p["queryCount"] <= 1000 for p in asc + desc)
    assert [b for p in asc for b in p["results"]] == big["results"]
    assert [b for p in desc for b in p["results"]] == big["results"][::-1]


def test_server_forced_page_size(emu: str) -> None:
    httpx.put(f"{emu}/_emulator/config", json={"page_size": 10}).raise_for_status()
    first = aggs(emu, "GEND", "2025-03-03", "2025-03-04", limit=50000)
    pages = _pages(emu, first, True)
    assert all(p["resultsCount"] <= 10 for p in pages)
    httpx.put(f"{emu}/_emulator/config", json={"page_size": None}).raise_for_status()
    big = aggs(emu, "GEND", "2025-03-03", "2025-03-04", limit=50000).json()
    assert len(pages) == -(-big["resultsCount"] // 10)
    assert [b for p in pages for b in p["results"]] == big["results"]


def test_unknown_ticker_and_errors(emu: str) -> None:
    r = aggs(emu, "ZZNOPE", "2025-06-02", "2025-06-06")
    body = r.json()
    assert r.status_code == 200 and body["status"] == "OK"
    assert body["resultsCount"] == 0 and "results" not in body and "next_url" not in body
    r = httpx.get(f"{emu}/v2/aggs/ticker/SPY/range/1/week/2025-06-02/2025-06-13?apiKey={KEY}")
    assert r.status_code == 400 and r.json()["status"] == "ERROR"
    r = httpx.get(f"{emu}/v2/aggs/ticker/SPY/range/2/day/2025-06-02/2025-06-13?apiKey={KEY}")
    assert r.status_code == 400 and r.json()["status"] == "ERROR"
    assert aggs(emu, "SPY", "2025-13-02", "2025-06-03").status_code == 400
    weekend = aggs(emu, "GENE", "2025-06-07", "2025-06-08").json()
    assert weekend["resultsCount"] == 0 and "results" not in weekend


def test_auth(emu: str) -> None:
    url = f"{emu}/v2/aggs/ticker/SPY/range/15/minute/2025-06-02/2025-06-02"
    r = httpx.get(url)
    assert r.status_code == 401
    assert r.json()["error"] == "API Key was not provided" and r.json()["status"] == "ERROR"
    r = httpx.get(url, params={"apiKey": "wrong"})
    assert r.status_code == 401 and r.json()["error"] == "Unknown API Key"
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(url, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert httpx.get(url, params={"apiKey": KEY}).status_code == 200


def test_nothing_after_now(emu: str, monkeypatch: pytest.MonkeyPatch) -> None:
    now = datetime.fromisoformat("2025-06-02T10:07:00-04:00")
    monkeypatch.setenv("SWIFTBOLT_NOW", now.isoformat())
    now_ms = int(now.timestamp() * 1000)
    for ticker in ("SPY", "GENF"):
        body = aggs(emu, ticker, "2025-06-02", "2025-06-06").json()
        ts = [b["t"] for b in body["results"]]
        assert max(ts) <= now_ms and max(ts) == ms(2025, 6, 2, 14)  # the 10:00 ET bucket
        assert "next_url" not in body
    before = now - timedelta(days=1)
    monkeypatch.setenv("SWIFTBOLT_NOW", before.isoformat())
    assert aggs(emu, "SPY", "2025-06-02", "2025-06-02").json()["resultsCount"] == 0


def test_millisecond_bounds_are_inclusive_bar_starts(emu: str) -> None:
    day = aggs(emu, "GEND", "2025-03-03", "2025-03-03").json()["results"]
    start, end = day[3]["t"], day[9]["t"]
    got = aggs(emu, "GEND", str(start + 1), str(end)).json()["results"]
    assert got == day[4:10]
    assert aggs(emu, "GEND", str(start), "2025-03-03").json()["results"] == day[3:]


def test_next_url_base_setting(emu: str) -> None:
    url = f"{emu}/_emulator/config"
    conf = {"page_size": 5, "next_url_base": "https://api.massive.com/"}
    assert httpx.put(url, json=conf).json()["next_url_base"] == "https://api.massive.com"
    body = aggs(emu, "GEND", "2025-03-03", "2025-03-03").json()
    assert body["next_url"].startswith("https://api.massive.com/v2/aggs/ticker/GEND/range/15/")
    for bad in ("api.massive.com", "ftp://x.test", "https://x.test/path", 5):
        r = httpx.put(url, json={"next_url_base": bad})
        assert r.status_code == 400 and "next_url_base" in r.json()["error"]
    httpx.put(url, json={"next_url_base": None}).raise_for_status()
    body = aggs(emu, "GEND", "2025-03-03", "2025-03-03").json()
    assert body["next_url"].startswith(f"{emu}/v2/aggs/ticker/GEND/")
