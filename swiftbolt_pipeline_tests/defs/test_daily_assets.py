"""`d1_bars`, `w1_bars`, `mo1_bars` through Dagster's helpers, against the emulator over HTTP
and a real PostgreSQL. Expected values are computed here, independently: the official daily
bar from the emulator's base bars (extended hours included), w1/mo1 by a plain loop over the
stored d1 rows."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg
import httpx
import psycopg
import pytest

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.defs.assets.daily import check_official_vs_m15
from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.emulator.data import BarStore
from swiftbolt_pipeline.emulator.sessions import NY, local_ms, sessions_between
from swiftbolt_pipeline.emulator.sessions import session as emulator_session
from swiftbolt_pipeline.services.coverage import coverage_report
from swiftbolt_pipeline.services.launch import RunOutcome, materialize_years, register_symbols
from swiftbolt_pipeline_tests.api.conftest import BASE_URL, TestClient, make_app
from swiftbolt_pipeline_tests.reliability.helpers import (
    emulator_requests,
    materialize,
    reset_emulator,
)

YEARS = [2021, 2022, 2023, 2024, 2025, 2026]  # TEST_NOW 2026-03-20: 5 years back is 2021-03-20
DAILY = ("d1_bars", "w1_bars", "mo1_bars")


def _materialize(instance: dg.DagsterInstance, symbol: str, years: list[int]) -> RunOutcome:
    defs = build_definitions(Settings.from_env())
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    register_symbols(instance, [symbol])
    return materialize_years(
        instance, assets, dict(defs.resources or {}), symbols=[symbol], years=years,
        selection=list(DAILY),
    )  # fmt: skip


def _sessions(first: str, last: str) -> list[tuple[date, datetime]]:
    """(day, regular open in UTC) of every XNYS session, from the emulator's own calendar."""
    lo = local_ms(date.fromisoformat(first), 0, 0)
    hi = local_ms(date.fromisoformat(last), 23, 0)
    return [
        (s.day, datetime.fromtimestamp(s.open_ms / 1000, UTC)) for s in sessions_between(lo, hi)
    ]


def _official(symbol: str, first: str, last: str) -> list[tuple[Any, ...]]:
    """The emulator's official daily bars, by hand from its base bars (all of the day's)."""
    store = BarStore()
    out = []
    for day, opened in _sessions(first, last):
        bars = store.day_bars(symbol, emulator_session(day))  # type: ignore[arg-type]
        volume = int(bars.v.sum())
        vwap = float(round(float((bars.v * bars.vw).sum()) / volume, 4))
        vwap = min(max(vwap, float(bars.l.min())), float(bars.h.max()))
        out.append(
            (opened, round(float(bars.o[0]), 4), round(float(bars.h.max()), 4),
             round(float(bars.l.min()), 4), round(float(bars.c[-1]), 4), volume,
             round(vwap, 4), int(bars.n.sum()))
        )  # fmt: skip
    return out


def _stored(conn: psycopg.Connection, symbol: str, timeframe: str) -> list[tuple[Any, ...]]:
    rows = conn.execute(
        """SELECT ts, open, high, low, close, volume, vwap, trade_count
           FROM get_chart_data_v2(%s, %s, '2000-01-01', '2100-01-01')""",
        (symbol, timeframe),
    ).fetchall()
    conn.commit()
    return rows


def _roll_up(d1: list[tuple[Any, ...]], key: Any) -> list[tuple[Any, ...]]:
    """A plain loop: d1 rows grouped by `key(day)`, open first, close last, high max, low min,
    volume and trade_count summed, vwap volume-weighted."""
    groups: dict[Any, list[tuple[Any, ...]]] = defaultdict(list)
    for row in d1:
        groups[key(row[0].astimezone(NY).date())].append(row)
    out = []
    for rows in groups.values():
        volume = sum(r[5] for r in rows)
        out.append(
            (rows[0][0], rows[0][1], max(r[2] for r in rows), min(r[3] for r in rows),
             rows[-1][4], volume, sum(r[6] * r[5] for r in rows) / volume,
             sum(r[7] for r in rows))
        )  # fmt: skip
    return out


def _close(a: list[tuple[Any, ...]], b: list[tuple[Any, ...]]) -> bool:
    return len(a) == len(b) and all(
        x[:6] == y[:6] and x[7] == y[7] and x[6] == pytest.approx(y[6], rel=1e-9)
        for x, y in zip(a, b, strict=True)
    )


def test_five_years_of_official_daily_bars_in_at_most_two_requests(
    pipeline_env: dict[str, str], emulator: str, conn: psycopg.Connection
) -> None:
    reset_emulator(emulator)
    with dg.instance_for_test() as instance:
        outcome = _materialize(instance, "SPY", YEARS)
        assert outcome.success, outcome.error
        assert len(instance.get_runs()) == 1
        checks = {(c.asset, c.name): c for c in outcome.checks}
        # No m15 stored yet: nothing to compare, nothing failed.
        assert checks[("d1_bars", "official_d1_vs_derived_from_m15")].passed
        assert checks[("d1_bars", "daily_fetch_complete")].passed
        for asset in DAILY:
            assert len(instance.get_materialized_partitions(dg.AssetKey(asset))) == len(YEARS)
    assert emulator_requests(emulator) <= 2

    d1 = _stored(conn, "SPY", "d1")
    # Every session from 5 years before "now" (2026-03-20) through the last one before today.
    assert d1 == _official("SPY", "2021-03-22", "2026-03-19")
    assert len(d1) > 1250

    iso_week = lambda d: d.isocalendar()[:2]  # noqa: E731
    month = lambda d: (d.year, d.month)  # noqa: E731
    assert _close(_stored(conn, "SPY", "w1"), _roll_up(d1, iso_week))
    # March 2021 began before the daily depth (2021-03-20): left out, not a partial month.
    assert _close(_stored(conn, "SPY", "mo1"), _roll_up(d1, month)[1:])
    assert _stored(conn, "SPY", "mo1")[0][0] == datetime.fromisoformat("2021-04-01T13:30+00:00")

    # The API serves the same rows.
    app = make_app(pipeline_env["DATABASE_URL"], None)
    with TestClient(app, base_url=BASE_URL) as client:
        for timeframe in ("d1", "w1", "mo1"):
            answer = client.get(
                "/v1/bars",
                params={"symbol": "SPY", "timeframe": timeframe,
                        "start": "2021-01-01T00:00:00Z", "end": "2026-03-20T00:00:00Z"},
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
            served = [(b["open"], b["close"], b["volume"]) for b in answer.json()["bars"]]
            assert served == [(r[1], r[4], r[5]) for r in _stored(conn, "SPY", timeframe)]

    # Coverage: ten years asked, the sessions before the daily depth are no gap.
    symbol_id = conn.execute("SELECT id FROM symbols WHERE ticker = 'SPY'").fetchone()
    assert symbol_id is not None
    for timeframe in (Timeframe.D1, Timeframe.W1, Timeframe.MO1):
        report = coverage_report(
            conn, None, Settings.from_env(), symbol="SPY", symbol_id=symbol_id[0],
            timeframe=timeframe, window_days=3660,
        )  # fmt: skip
        assert report.status == "coverage_complete", report.gaps
        assert len(report.sessions) == len(d1)


def test_official_d1_vs_m15_check_passes_on_real_data_and_fails_on_a_tampered_close(
    pipeline_env: dict[str, str], conn: psycopg.Connection
) -> None:
    # Real data around MSFT's two largest post-market moves (2025-10-29 +3.1%, 2026-01-28
    # +4.7% after earnings): the official close includes them, the 16:00 m15 close does not.
    m15_days = calendar.sessions_between(date(2025, 10, 20), date(2026, 2, 6))
    with dg.instance_for_test() as instance:
        assert materialize("MSFT", m15_days, instance).success
        outcome = _materialize(instance, "MSFT", [2025, 2026])
        check = next(c for c in outcome.checks if c.name == "official_d1_vs_derived_from_m15")
        assert check.passed, check.metadata
        assert check.metadata["sessions_compared"] == len(m15_days)

        conn.execute(
            """UPDATE ohlc_bars_v2 SET close = close * 1.08, high = high * 1.08
               WHERE timeframe = 'd1' AND ts = '2025-12-10 14:30+00'
                 AND symbol_id = (SELECT id FROM symbols WHERE ticker = 'MSFT')"""
        )
        conn.commit()
        ids = dict(conn.execute("SELECT ticker, id FROM symbols").fetchall())
        result = check_official_vs_m15(conn, {"MSFT": m15_days}, ids)
        assert not result.passed
        assert result.metadata["mismatched_sessions"].value == 1
        assert result.metadata["first_mismatches"].value == "MSFT 2025-12-10"


def test_alpaca_serves_the_same_official_daily_bars(
    pipeline_env: dict[str, str], emulator: str, monkeypatch: pytest.MonkeyPatch,
    conn: psycopg.Connection,
) -> None:  # fmt: skip
    monkeypatch.setenv("SWIFTBOLT_HISTORY_PROVIDERS", "alpaca")
    reset_emulator(emulator)
    with dg.instance_for_test() as instance:
        assert _materialize(instance, "AAPL", [2025, 2026]).success
    stats = httpx.get(f"{emulator}/_emulator/stats").json()["requests"]
    assert stats.get("alpaca") == 1 and not stats.get("polygon")
    assert _stored(conn, "AAPL", "d1") == _official("AAPL", "2025-01-02", "2026-03-19")
