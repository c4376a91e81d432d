"""resample / regular_session against a plain per-row reference and invariants."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from swiftbolt_pipeline.core.calendar import Session, session, sessions_between
from swiftbolt_pipeline.core.models import BAR_SCHEMA, Timeframe
from swiftbolt_pipeline.core.resample import regular_session, resample

Row = dict[str, Any]
WIDTH = {
    Timeframe.M15: timedelta(minutes=15),
    Timeframe.H1: timedelta(hours=1),
    Timeframe.H4: timedelta(hours=4),
    Timeframe.D1: timedelta(days=1),
}
MAX_BUCKETS = {Timeframe.H1: (7, 4), Timeframe.H4: (2, 1), Timeframe.D1: (1, 1)}
DERIVED = (Timeframe.H1, Timeframe.H4, Timeframe.D1)

# Early closes, both DST changes (and the sessions either side), then a spread of ordinary days.
SPECIAL_DAYS = [
    date(2025, 11, 28),
    date(2024, 7, 3),
    date(2025, 12, 24),
    date(2025, 10, 31),
    date(2025, 11, 3),
    date(2025, 3, 7),
    date(2025, 3, 10),
    date(2024, 11, 4),
    date(2026, 3, 9),
]
POOL = SPECIAL_DAYS + sessions_between(date(2024, 1, 2), date(2026, 3, 12))[::7]


# ---------------------------------------------------------------- reference (one row at a time)


def _session_of(ts: datetime, sessions: Sequence[Session]) -> Session | None:
    for s in sessions:
        if s.open <= ts < s.close:
            return s
    return None


def reference_regular(rows: Sequence[Row], sessions: Sequence[Session]) -> list[Row]:
    return [row for row in rows if _session_of(row["ts"], sessions) is not None]


def reference_resample(
    rows: Sequence[Row], timeframe: Timeframe, sessions: Sequence[Session]
) -> list[Row]:
    width = WIDTH[timeframe]
    buckets: dict[datetime, list[Row]] = {}
    for row in rows:
        s = _session_of(row["ts"], sessions)
        if s is None:
            continue
        start = s.open + ((row["ts"] - s.open) // width) * width
        buckets.setdefault(start, []).append(row)
    out: list[Row] = []
    for start in sorted(buckets):
        bars = sorted(buckets[start], key=lambda r: r["ts"])
        known = [(r["vwap"], r["volume"]) for r in bars if r["vwap"] is not None]
        weight = sum(v for _, v in known)
        if not known:
            vwap = None
        elif weight > 0:
            vwap = sum(p * v for p, v in known) / weight
        else:
            vwap = sum(p for p, _ in known) / len(known)
        counts = [r["trade_count"] for r in bars if r["trade_count"] is not None]
        out.append(
            {
                "ts": start,
                "open": bars[0]["open"],
                "high": max(r["high"] for r in bars),
                "low": min(r["low"] for r in bars),
                "close": bars[-1]["close"],
                "volume": sum(r["volume"] for r in bars),
                "vwap": vwap,
                "trade_count": sum(counts) if counts else None,
            }
        )
    return out


# ---------------------------------------------------------------- helpers


def frame(rows: Sequence[Row]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=BAR_SCHEMA)


def assert_rows_equal(actual: list[Row], expected: list[Row]) -> None:
    assert [r["ts"] for r in actual] == [r["ts"] for r in expected]
    for got, want in zip(actual, expected, strict=True):
        for key in ("open", "high", "low", "close", "volume", "trade_count"):
            assert got[key] == want[key], (got["ts"], key)
        if want["vwap"] is None:
            assert got["vwap"] is None, got["ts"]
        else:
            assert math.isclose(got["vwap"], want["vwap"], rel_tol=1e-9), got["ts"]


@st.composite
def bar_cases(draw: st.DrawFn) -> tuple[list[Row], list[Session]]:
    """m15 rows for 1-4 sessions, shuffled: random missing regular bars, random extended-hours
    bars, sometimes bars of a session not passed in, sometimes starts off the 15' grid.

    Hypothesis draws the structure (days, densities, null rates); the bar values come from a
    drawn seed, which keeps an example to a few dozen draws instead of thousands.
    """
    days = draw(st.lists(st.sampled_from(POOL), min_size=1, max_size=4, unique=True))
    sessions = [session(d) for d in days]
    stray = draw(st.sampled_from([None, date(2025, 6, 2), date(2025, 11, 26)]))
    covered = sessions + ([session(stray)] if stray and stray not in days else [])
    density = st.tuples(
        st.sampled_from([1.0, 0.9, 0.5, 0.1, 0.0]),  # regular-hours bars kept
        st.sampled_from([0.0, 0.3, 1.0]),  # extended-hours bars kept
        st.booleans(),  # start times off the 15-minute grid
    )
    shapes = draw(st.lists(density, min_size=len(covered), max_size=len(covered)))
    vwap_null, count_null = (
        draw(st.sampled_from([0.0, 0.2, 1.0])),
        draw(st.sampled_from([0.0, 0.5])),
    )
    volumes = draw(st.sampled_from([(0,), (0, 0, 1, 100, 12_345, 2_000_000), (1, 1_000_000)]))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))

    def price() -> float:
        return rng.randint(1, 1_000_000) / 100

    rows: list[Row] = []
    for s, (regular_p, extended_p, offgrid) in zip(covered, shapes, strict=True):
        ts = s.extended_open
        while ts < s.extended_close:
            keep = regular_p if s.open <= ts < s.close else extended_p
            if rng.random() < keep:
                jitter = timedelta(minutes=rng.choice([0, 1, 5, 14]) if offgrid else 0)
                rows.append(
                    {
                        "ts": ts + jitter,
                        "open": price(),
                        "high": price(),
                        "low": price(),
                        "close": price(),
                        "volume": rng.choice(volumes),
                        "vwap": None if rng.random() < vwap_null else price(),
                        "trade_count": None if rng.random() < count_null else rng.randint(0, 9999),
                    }
                )
            ts += timedelta(minutes=15)
    rng.shuffle(rows)
    return rows, sessions


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- properties


@SETTINGS
@given(case=bar_cases(), timeframe=st.sampled_from([*DERIVED, Timeframe.M15]))
def test_resample_equals_reference(case: tuple[list[Row], list[Session]], timeframe: Timeframe):
    rows, sessions = case
    out = resample(frame(rows), timeframe, sessions)
    assert out.schema == pl.Schema(BAR_SCHEMA)
    assert_rows_equal(out.to_dicts(), reference_resample(rows, timeframe, sessions))


@SETTINGS
@given(case=bar_cases())
def test_regular_session_keeps_exactly_regular_rows_in_order(
    case: tuple[list[Row], list[Session]],
):
    rows, sessions = case
    out = regular_session(frame(rows), sessions)
    assert out.to_dicts() == frame(reference_regular(rows, sessions)).to_dicts()


@SETTINGS
@given(case=bar_cases())
def test_per_session_invariants(case: tuple[list[Row], list[Session]]):
    """Checked against the input directly, without the reference implementation."""
    rows, sessions = case
    for timeframe in DERIVED:
        out = resample(frame(rows), timeframe, sessions).to_dicts()
        assert [r["ts"] for r in out] == sorted({r["ts"] for r in out}), "sorted and unique"
        for s in sessions:
            regular = sorted(
                (r for r in rows if s.open <= r["ts"] < s.close), key=lambda r: r["ts"]
            )
            mine = [r for r in out if s.open <= r["ts"] < s.close]
            full, early = MAX_BUCKETS[timeframe]
            assert len(mine) <= (early if s.is_early_close else full)
            if not regular:
                assert mine == []
                continue
            assert sum(r["volume"] for r in mine) == sum(r["volume"] for r in regular)
            assert max(r["high"] for r in mine) == max(r["high"] for r in regular)
            assert min(r["low"] for r in mine) == min(r["low"] for r in regular)
            assert mine[0]["open"] == regular[0]["open"]
            assert mine[-1]["close"] == regular[-1]["close"]
            width = WIDTH[timeframe]
            for bar in mine:
                offset = bar["ts"] - s.open
                assert offset % width == timedelta(0), "ts is a bucket start"
                end = min(bar["ts"] + width, s.close)
                assert any(bar["ts"] <= r["ts"] < end for r in regular), "no bucket without input"
        in_any = [r for r in out if any(s.open <= r["ts"] < s.close for s in sessions)]
        assert in_any == out, "no output outside the given sessions"


@SETTINGS
@given(a=bar_cases(), b=bar_cases(), timeframe=st.sampled_from(DERIVED))
def test_by_column_equals_per_symbol_calls(
    a: tuple[list[Row], list[Session]], b: tuple[list[Row], list[Session]], timeframe: Timeframe
):
    sessions = a[1] + [s for s in b[1] if s not in a[1]]
    both = pl.concat(
        [
            frame(b[0]).with_columns(pl.lit("ZZB").alias("symbol")),
            frame(a[0]).with_columns(pl.lit("AAA").alias("symbol")),
        ]
    ).sample(fraction=1.0, shuffle=True, seed=7)
    out = resample(both, timeframe, sessions, by="symbol")
    assert out.columns == ["symbol", *BAR_SCHEMA]
    expected = pl.concat(
        [
            resample(frame(a[0]), timeframe, sessions).select(
                pl.lit("AAA").alias("symbol"), pl.all()
            ),
            resample(frame(b[0]), timeframe, sessions).select(
                pl.lit("ZZB").alias("symbol"), pl.all()
            ),
        ]
    )
    assert out.to_dicts() == expected.to_dicts()


# ---------------------------------------------------------------- examples


def _bar(ts: datetime, **values: Any) -> Row:
    row: Row = {
        "ts": ts,
        "open": 10.0,
        "high": 11.0,
        "low": 9.0,
        "close": 10.5,
        "volume": 100,
        "vwap": 10.0,
        "trade_count": 5,
    }
    row.update(values)
    return row


def test_full_day_buckets_are_session_anchored_and_last_h1_is_half_hour():
    s = session(date(2025, 11, 3))  # first Monday after the fall DST change: 14:30 UTC open
    rows = [_bar(s.open + timedelta(minutes=15 * k), volume=k + 1) for k in range(26)]
    h1 = resample(frame(rows), Timeframe.H1, [s])
    assert h1["ts"].to_list() == [
        datetime(2025, 11, 3, 14, 30, tzinfo=UTC) + timedelta(hours=k) for k in range(7)
    ]
    assert h1["volume"].to_list() == [10, 26, 42, 58, 74, 90, 51]  # last bucket: 2 bars
    h4 = resample(frame(rows), Timeframe.H4, [s])
    assert h4["ts"].to_list() == [s.open, s.open + timedelta(hours=4)]
    assert h4["volume"].to_list() == [sum(range(1, 17)), sum(range(17, 27))]
    d1 = resample(frame(rows), Timeframe.D1, [s])
    assert d1.to_dicts() == [
        {
            "ts": s.open,
            "open": 10.0,
            "high": 11.0,
            "low": 9.0,
            "close": 10.5,
            "volume": sum(range(1, 27)),
            "vwap": 10.0,
            "trade_count": 130,
        }
    ]


def test_ts_is_bucket_start_even_when_first_bar_is_missing():
    s = session(date(2025, 3, 10))  # first Monday after the spring DST change: 13:30 UTC open
    rows = [_bar(s.open + timedelta(minutes=45)), _bar(s.open + timedelta(minutes=300))]
    h1 = resample(frame(rows), Timeframe.H1, [s])
    assert h1["ts"].to_list() == [
        datetime(2025, 3, 10, 13, 30, tzinfo=UTC),
        datetime(2025, 3, 10, 18, 30, tzinfo=UTC),
    ]
    h4 = resample(frame(rows), Timeframe.H4, [s])
    assert h4["ts"].to_list() == [s.open, s.open + timedelta(hours=4)]


def test_early_close_has_four_h1_and_one_h4():
    s = session(date(2024, 7, 3))
    rows = [_bar(s.open + timedelta(minutes=15 * k)) for k in range(-4, 20)]  # pre + post
    assert len(regular_session(frame(rows), [s])) == 14
    h1 = resample(frame(rows), Timeframe.H1, [s])
    assert [t.strftime("%H:%M") for t in h1["ts"].to_list()] == ["13:30", "14:30", "15:30", "16:30"]
    assert h1["volume"].to_list() == [400, 400, 400, 200]
    h4 = resample(frame(rows), Timeframe.H4, [s])
    assert h4["ts"].to_list() == [s.open]
    assert h4["volume"].to_list() == [1400]


def test_open_close_follow_ts_not_input_order():
    s = session(date(2025, 6, 2))
    rows = [
        _bar(s.open + timedelta(minutes=30), open=3.0, close=30.0),
        _bar(s.open, open=1.0, close=10.0),
        _bar(s.open + timedelta(minutes=15), open=2.0, close=20.0),
    ]
    out = resample(frame(rows), Timeframe.H1, [s]).row(0, named=True)
    assert (out["open"], out["close"]) == (1.0, 30.0)


def test_vwap_and_trade_count_edge_cases():
    s = session(date(2025, 6, 2))
    t = [s.open + timedelta(minutes=15 * k) for k in range(26)]
    rows = [
        # bucket 1: weighted, a null vwap ignored (its volume too)
        _bar(t[0], vwap=10.0, volume=100),
        _bar(t[1], vwap=20.0, volume=300),
        _bar(t[2], vwap=None, volume=1_000),
        # bucket 2: zero volume -> plain mean
        _bar(t[4], vwap=10.0, volume=0),
        _bar(t[5], vwap=13.0, volume=0),
        # bucket 3: no vwap, no trade count -> null
        _bar(t[8], vwap=None, trade_count=None),
        # bucket 4: some trade counts unknown -> sum of the known ones
        _bar(t[12], trade_count=None),
        _bar(t[13], trade_count=7),
    ]
    out = resample(frame(rows), Timeframe.H1, [s])
    assert out["vwap"].to_list() == [17.5, 11.5, None, 10.0]
    assert out["trade_count"].to_list() == [15, 10, None, 7]
    assert out["volume"].to_list() == [1_400, 0, 100, 200]


def test_empty_and_no_session_inputs_give_empty_bar_frames():
    s = session(date(2025, 6, 2))
    empty = pl.DataFrame(schema=BAR_SCHEMA)
    for timeframe in DERIVED:
        assert resample(empty, timeframe, [s]).schema == pl.Schema(BAR_SCHEMA)
        assert resample(empty, timeframe, [s]).is_empty()
        assert resample(frame([_bar(s.open)]), timeframe, []).is_empty()
        other_day = frame([_bar(session(date(2025, 6, 3)).open)])
        assert resample(other_day, timeframe, [s]).is_empty()
    assert regular_session(empty, [s]).is_empty()
    with_symbol = empty.with_columns(pl.lit("X").alias("symbol"))
    assert resample(with_symbol, Timeframe.H1, [s], by="symbol").columns == ["symbol", *BAR_SCHEMA]


def test_session_list_duplicates_are_harmless():
    s = session(date(2025, 6, 2))
    rows = [_bar(s.open), _bar(s.open + timedelta(hours=2))]
    assert resample(frame(rows), Timeframe.D1, [s, s])["volume"].to_list() == [200]


@pytest.mark.parametrize("unit", ["ms", "ns"])
def test_other_time_units_are_accepted(unit: str):
    s = session(date(2025, 6, 2))
    rows = frame([_bar(s.open), _bar(s.open + timedelta(minutes=15))])
    cast = rows.with_columns(pl.col("ts").cast(pl.Datetime(unit, "UTC")))  # type: ignore[arg-type]
    assert resample(cast, Timeframe.H1, [s]).equals(resample(rows, Timeframe.H1, [s]))
