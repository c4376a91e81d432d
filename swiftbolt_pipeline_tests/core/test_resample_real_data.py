"""resample on the real 5-minute bars (SPY QQQ AAPL MSFT NVDA, 2025-05-12..2026-03-12).

The m15 input is built from the 5-minute file with polars; every expected value is computed
separately in plain Python from the CSV rows on the US/Eastern wall clock (zoneinfo), so the
UTC/session arithmetic under test is not reused to produce its own expectations.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import polars as pl
import pytest

from swiftbolt_pipeline.core.calendar import session, sessions_between
from swiftbolt_pipeline.core.models import BAR_SCHEMA, Timeframe
from swiftbolt_pipeline.core.resample import regular_session, resample
from swiftbolt_pipeline.emulator.data import REAL_BARS

ET = ZoneInfo("America/New_York")
TICKERS = ("SPY", "QQQ", "AAPL", "MSFT", "NVDA")
FIRST, LAST = date(2025, 5, 12), date(2026, 3, 12)


class Raw(NamedTuple):
    ticker: str
    local: datetime  # bar start, US/Eastern wall clock
    o: float
    h: float
    lo: float
    c: float
    v: int


@pytest.fixture(scope="module")
def raw() -> list[Raw]:
    with gzip.open(io.BytesIO(REAL_BARS.read_bytes()), "rt", newline="") as fh:
        return [
            Raw(
                r["ticker"],
                datetime.fromtimestamp(int(r["t"]) / 1000, tz=UTC).astimezone(ET),
                float(r["o"]),
                float(r["h"]),
                float(r["l"]),
                float(r["c"]),
                int(r["v"]),
            )
            for r in csv.DictReader(fh)
        ]


@pytest.fixture(scope="module")
def m15() -> pl.DataFrame:
    """5-minute bars floored to 15-minute starts (all hours kept: resample must drop extras).

    Like the emulator: vwap of a 5-minute bar = typical price (h+l+c)/3, n = max(1, v/100).
    """
    five = pl.read_csv(
        REAL_BARS.read_bytes(), schema_overrides={"vw": pl.Float64, "n": pl.Int64}
    ).with_columns(
        ts=pl.from_epoch("t", time_unit="ms").dt.replace_time_zone("UTC").dt.truncate("15m"),
        tp=(pl.col("h") + pl.col("l") + pl.col("c")) / 3,
        n=pl.max_horizontal(pl.lit(1), (pl.col("v") / 100).round().cast(pl.Int64)),
    )
    return (
        five.sort("ticker", "t")
        .group_by("ticker", "ts", maintain_order=True)
        .agg(
            open=pl.col("o").first(),
            high=pl.col("h").max(),
            low=pl.col("l").min(),
            close=pl.col("c").last(),
            volume=pl.col("v").sum(),
            vwap=(pl.col("tp") * pl.col("v")).sum() / pl.col("v").sum(),
            trade_count=pl.col("n").sum(),
        )
        .cast(dict(BAR_SCHEMA))
    )


def _expected(rows: list[Raw], ticker: str, day: date, start: time, end: time) -> dict[str, Any]:
    """The bar of `ticker` over [start, end) ET on `day`, straight from the 5-minute rows."""
    sel = [
        r
        for r in rows
        if r.ticker == ticker and r.local.date() == day and start <= r.local.time() < end
    ]
    assert sel, (ticker, day, start)
    volume = sum(r.v for r in sel)
    return {
        "ts": datetime.combine(day, start, tzinfo=ET).astimezone(UTC),
        "open": sel[0].o,
        "high": max(r.h for r in sel),
        "low": min(r.lo for r in sel),
        "close": sel[-1].c,
        "volume": volume,
        "vwap": sum((r.h + r.lo + r.c) / 3 * r.v for r in sel) / volume,
        "trade_count": sum(max(1, round(r.v / 100)) for r in sel),
    }


def _check(actual: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    assert [a["ts"] for a in actual] == [e["ts"] for e in expected]
    for a, e in zip(actual, expected, strict=True):
        for key in ("open", "high", "low", "close", "volume", "trade_count"):
            assert a[key] == e[key], (a["ts"], key)
        assert math.isclose(a["vwap"], e["vwap"], rel_tol=1e-12), a["ts"]


def _t(hhmm: str) -> time:
    return time.fromisoformat(hhmm)


H1_STARTS = ["09:30", "10:30", "11:30", "12:30", "13:30", "14:30", "15:30"]


def _one(m15: pl.DataFrame, ticker: str) -> pl.DataFrame:
    return m15.filter(pl.col("ticker") == ticker).drop("ticker")


@pytest.mark.parametrize(
    ("monday", "open_utc"),
    [(date(2025, 10, 27), time(13, 30)), (date(2025, 11, 3), time(14, 30))],
    ids=["EDT-week-before", "EST-week-after"],
)
@pytest.mark.parametrize("ticker", ["SPY", "NVDA"])
def test_dst_week_h1_values(raw, m15, monday: date, open_utc: time, ticker: str):
    days = [monday + timedelta(days=k) for k in range(5)]
    sessions = [session(d) for d in days]
    h1 = resample(_one(m15, ticker), Timeframe.H1, sessions).to_dicts()
    assert len(h1) == 35
    ends = [*H1_STARTS[1:], "16:00"]
    expected = [
        _expected(raw, ticker, d, _t(a), _t(b))
        for d in days
        for a, b in zip(H1_STARTS, ends, strict=True)
    ]
    _check(h1, expected)
    first_ts = {bar["ts"].date(): bar["ts"].time() for bar in reversed(h1)}
    assert set(first_ts.values()) == {open_utc}  # 09:30 ET in UTC that week


@pytest.mark.parametrize("ticker", TICKERS)
def test_early_close_2025_11_28(raw, m15, ticker: str):
    day = date(2025, 11, 28)
    s = session(day)
    mine = _one(m15, ticker)
    day_m15 = regular_session(mine, [s])
    assert day_m15.height == 14
    assert day_m15["ts"].min() == datetime(2025, 11, 28, 14, 30, tzinfo=UTC)
    assert day_m15["ts"].max() == datetime(2025, 11, 28, 17, 45, tzinfo=UTC)

    h1 = resample(mine, Timeframe.H1, [s]).to_dicts()
    ends = ["10:30", "11:30", "12:30", "13:00"]
    _check(
        h1,
        [_expected(raw, ticker, day, _t(a), _t(b)) for a, b in zip(H1_STARTS, ends, strict=False)],
    )
    h4 = resample(mine, Timeframe.H4, [s]).to_dicts()
    _check(h4, [_expected(raw, ticker, day, _t("09:30"), _t("13:00"))])
    d1 = resample(mine, Timeframe.D1, [s]).to_dicts()
    _check(d1, [_expected(raw, ticker, day, _t("09:30"), _t("13:00"))])
    assert d1[0]["ts"] == datetime(2025, 11, 28, 14, 30, tzinfo=UTC)


def test_early_close_drops_the_extended_bars_that_exist(raw, m15):
    """SPY traded before 09:30 and at 13:00/13:05 ET on 2025-11-28: d1 must leave both out."""
    day = date(2025, 11, 28)
    spy = [r for r in raw if r.ticker == "SPY" and r.local.date() == day]
    pre = [r for r in spy if r.local.time() < _t("09:30")]
    late = [r for r in spy if r.local.time() >= _t("13:00")]
    assert pre
    assert [r.local.time() for r in late] == [_t("13:00"), _t("13:05")]
    d1 = resample(_one(m15, "SPY"), Timeframe.D1, [session(day)])
    assert d1["volume"].to_list() == [sum(r.v for r in spy) - sum(r.v for r in pre + late)]
    assert d1["open"].to_list() == [next(r.o for r in spy if r.local.time() == _t("09:30"))]
    assert d1["close"].to_list() == [next(r.c for r in spy if r.local.time() == _t("12:55"))]


@pytest.mark.parametrize(
    ("day", "open_utc"),
    [
        (date(2026, 3, 6), datetime(2026, 3, 6, 14, 30, tzinfo=UTC)),
        (date(2026, 3, 9), datetime(2026, 3, 9, 13, 30, tzinfo=UTC)),
    ],
)
def test_spring_dst_d1(raw, m15, day: date, open_utc: datetime):
    d1 = resample(_one(m15, "QQQ"), Timeframe.D1, [session(day)]).to_dicts()
    _check(d1, [_expected(raw, "QQQ", day, _t("09:30"), _t("16:00"))])
    assert d1[0]["ts"] == open_utc


def test_whole_file_bucket_sets_and_daily_totals(raw, m15):
    """Every ticker x session in the file, all timeframes in one `by` call each."""
    sessions = [session(d) for d in sessions_between(FIRST, LAST)]
    assert len(sessions) == 210
    regular = [r for r in raw if _t("09:30") <= r.local.time() < _close_et(r.local.date())]
    minutes = {Timeframe.H1: 60, Timeframe.H4: 240, Timeframe.D1: 24 * 60}
    per_day: dict[Timeframe, dict[tuple[str, date], int]] = {}
    for timeframe, width in minutes.items():
        out = resample(m15, timeframe, sessions, by="ticker")
        assert out.columns == ["ticker", *BAR_SCHEMA]
        got = {(r["ticker"], r["ts"]): (r["volume"], r["high"], r["low"]) for r in out.to_dicts()}
        want: dict[tuple[str, datetime], list[Raw]] = defaultdict(list)
        for r in regular:
            since_open = (r.local.hour * 60 + r.local.minute) - (9 * 60 + 30)
            start = datetime.combine(r.local.date(), _t("09:30"), tzinfo=ET) + timedelta(
                minutes=since_open // width * width
            )
            want[(r.ticker, start.astimezone(UTC))].append(r)
        assert set(got) == set(want)
        for key, rows in want.items():
            expected = (sum(r.v for r in rows), max(r.h for r in rows), min(r.lo for r in rows))
            assert got[key] == expected, key
        counts: dict[tuple[str, date], int] = defaultdict(int)
        for ticker, ts in got:
            counts[(ticker, ts.astimezone(ET).date())] += 1
        per_day[timeframe] = counts

    assert len(per_day[Timeframe.D1]) == 5 * 210
    for timeframe, (full, early, partial) in {
        Timeframe.H1: (7, 4, 2),  # the last session stops at 10:30/10:35 ET
        Timeframe.H4: (2, 1, 1),
        Timeframe.D1: (1, 1, 1),
    }.items():
        for (ticker, day), count in per_day[timeframe].items():
            expected = partial if day == LAST else early if day in EARLY_CLOSES else full
            assert count == expected, (timeframe, ticker, day)


EARLY_CLOSES = {date(2025, 7, 3), date(2025, 11, 28), date(2025, 12, 24)}


def _close_et(day: date) -> time:
    return _t("13:00") if day in EARLY_CLOSES else _t("16:00")
