"""`universe_d1_bars` through Dagster's helpers, against the emulator over HTTP and a real
PostgreSQL. Expected bars are computed here from the emulator's base bars (as
test_daily_assets does), requests are counted at the emulator."""

from __future__ import annotations

from datetime import date
from typing import Any

import dagster as dg
import httpx
import psycopg
import pytest

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.models import Provider
from swiftbolt_pipeline.defs.assets.universe import universe_run_config
from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.ingest.universe_daily import (
    DailySource,
    fetch_universe_daily,
    plan_sources,
)
from swiftbolt_pipeline.names import UNIVERSE_D1_BARS, universe_range_tags
from swiftbolt_pipeline.providers.http import UnlimitedLimiter
from swiftbolt_pipeline.providers.polygon import PolygonClient
from swiftbolt_pipeline.services.universe import register_universe
from swiftbolt_pipeline.storage import universes
from swiftbolt_pipeline_tests.conftest import EMULATOR_KEY
from swiftbolt_pipeline_tests.defs.test_daily_assets import _close, _official, _roll_up, _stored
from swiftbolt_pipeline_tests.providers.helpers import fake_clock
from swiftbolt_pipeline_tests.reliability.helpers import emulator_requests, reset_emulator

REAL = ["SPY", "QQQ", "AAPL", "MSFT", "NVDA"]
DAYS = calendar.sessions_between(date(2026, 2, 9), date(2026, 3, 9))
GENERATED = [f"GEN{i:02d}" for i in range(20)]
HALTED = "GEN07", date(2026, 2, 18)


def _run(name: str, provider: str, days: list[date] = DAYS) -> dg.ExecuteInProcessResult:
    defs = build_definitions(Settings.from_env())
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    with dg.instance_for_test() as instance:
        register_universe(instance, name)
        return dg.materialize(
            assets,
            instance=instance,
            resources=dict(defs.resources or {}),
            selection=[UNIVERSE_D1_BARS],
            run_config=universe_run_config(provider, [UNIVERSE_D1_BARS]),
            tags=universe_range_tags(name, days[0], days[-1]),
        )


def _metadata(result: dg.ExecuteInProcessResult, days: list[date] = DAYS) -> dict[str, Any]:
    events = result.get_asset_materialization_events()
    assert len(events) == len(days)  # one event per universe x day, whatever the members
    return {k: v.value for k, v in events[0].materialization.metadata.items()}


def _first_last(days: list[date] = DAYS) -> tuple[str, str]:
    return days[0].isoformat(), days[-1].isoformat()


@pytest.mark.slow  # 20 day partitions: Dagster's bookkeeping alone takes ~10 s
def test_a_broad_universe_costs_one_grouped_request_per_session(
    pipeline_env: dict[str, str], conn: psycopg.Connection, emulator: str
) -> None:
    assert len(DAYS) == 20
    members = [*REAL, *GENERATED, "ZZNOPE"]  # 26 listed: per-symbol would be 26 requests
    universes.set_members(conn, "broad", members)
    conn.commit()
    reset_emulator(emulator)
    # The generated tickers exist at the emulator once registered (as an m15 fetch would).
    httpx.post(f"{emulator}/_emulator/tickers", json={"tickers": GENERATED}).raise_for_status()
    ticker, halted = HALTED
    life = {"ticker": ticker, "halted": [halted.isoformat()]}
    httpx.post(f"{emulator}/_emulator/lifecycles", json=life).raise_for_status()

    result = _run("broad", "polygon")

    assert result.success
    assert emulator_requests(emulator) == len(DAYS)  # one grouped request per session
    paths = httpx.get(f"{emulator}/_emulator/stats").json()["log"]
    assert {p["path"].rsplit("/", 1)[0] for p in paths} == {
        "/v2/aggs/grouped/locale/us/market/stocks"
    }
    metadata = _metadata(result)
    assert metadata["requests"] == metadata["planned_requests"] == len(DAYS)
    assert metadata["source"] == "polygon grouped"
    assert metadata["failed_symbols"] == 1
    assert metadata["failures_by_code"] == "SYMBOL_NOT_FOUND=1"
    first, last = _first_last()
    for symbol in [*REAL, *GENERATED]:
        expected = _official(symbol, first, last)
        if symbol == ticker:  # no bar the day it was halted
            expected = [row for row in expected if row[0].date() != halted]
        assert _stored(conn, symbol, "d1") == expected, symbol
    assert metadata["rows"] == 25 * len(DAYS) - 1
    # The halted day is recorded as answered without a bar; the unknown ticker has nothing.
    confirmed = conn.execute(
        """SELECT s.ticker, count(*), sum(c.bars) FROM confirmed_sessions c
           JOIN symbols s ON s.id = c.symbol_id WHERE c.timeframe = 'd1'
           AND s.ticker IN (%s, 'SPY', 'ZZNOPE') GROUP BY 1 ORDER BY 1""",
        (ticker,),
    ).fetchall()
    assert confirmed == [(ticker, len(DAYS), len(DAYS) - 1), ("SPY", len(DAYS), len(DAYS))]
    ledger = conn.execute(
        """SELECT count(*), sum(actual_cost), sum(rows_written) FROM job_runs
           WHERE run_id = %s AND symbol = '*' AND timeframe = 'd1' AND status = 'success'""",
        (result.run_id,),
    ).fetchone()
    assert ledger == (len(DAYS), len(DAYS), 25 * len(DAYS) - 1)


def test_grouped_over_fewer_sessions_than_members(
    pipeline_env: dict[str, str], conn: psycopg.Connection, emulator: str
) -> None:
    days = DAYS[:4]  # 4 grouped requests < 5 per-symbol ones
    universes.set_members(conn, "real", REAL)
    conn.commit()
    reset_emulator(emulator)
    result = _run("real", "polygon", days)
    assert result.success
    assert emulator_requests(emulator) == len(days)
    metadata = _metadata(result, days)
    assert (metadata["source"], metadata["requests"]) == ("polygon grouped", len(days))
    first, last = _first_last(days)
    for symbol in REAL:
        assert _stored(conn, symbol, "d1") == _official(symbol, first, last), symbol


def test_a_small_universe_asks_per_symbol_when_that_is_fewer_requests(
    pipeline_env: dict[str, str], conn: psycopg.Connection, emulator: str
) -> None:
    universes.set_members(conn, "megacaps", REAL)
    conn.commit()
    # 5 members x 8 sessions on Polygon: 5 range requests, not 8 grouped ones; Alpaca asks
    # for all 5 at once. (Few sessions: each day partition costs Dagster bookkeeping.)
    for provider, requests, days in (("polygon", 5, DAYS[-8:]), ("alpaca", 1, DAYS[-5:])):
        reset_emulator(emulator)
        result = _run("megacaps", provider, days)
        assert result.success
        assert emulator_requests(emulator, provider) == requests
        metadata = _metadata(result, days)
        first, last = _first_last(days)
        assert metadata["source"] == f"{provider} per-symbol"
        assert metadata["requests"] == requests
        for symbol in REAL:
            stored = [r for r in _stored(conn, symbol, "d1") if r[0].date() >= days[0]]
            assert stored == _official(symbol, first, last), symbol
        # Mar 3-9 lie in the weeks of Mar 2 and Mar 9 and in March: rolled up for each member.
        assert (metadata["w1_rows"], metadata["mo1_rows"]) == (2 * len(REAL), len(REAL))

    # w1/mo1 as the watchlist's are, computed here by a plain loop over the stored d1. The
    # runs stored Feb 26 - Mar 9; Feb 26-27's week began on Feb 23 and their month on Feb 2,
    # neither stored: left out, not partial.
    iso_week = lambda d: d.isocalendar()[:2]  # noqa: E731
    month = lambda d: (d.year, d.month)  # noqa: E731
    for symbol in REAL:
        d1 = [r for r in _stored(conn, symbol, "d1") if r[0].date() >= date(2026, 3, 2)]
        assert _close(_stored(conn, symbol, "w1"), _roll_up(d1, iso_week)), symbol
        assert _close(_stored(conn, symbol, "mo1"), _roll_up(d1, month)), symbol


@pytest.mark.parametrize(
    ("providers", "members", "sessions", "expected"),
    [
        # 26 members x 20 sessions on Polygon: 20 grouped requests beat 26 per-symbol ones.
        ((Provider.POLYGON,), 26, 20, DailySource(Provider.POLYGON, True, 20)),
        ((Provider.POLYGON,), 5, 20, DailySource(Provider.POLYGON, False, 5)),
        # 120 members x 20 sessions: Alpaca's 3 batches (1,000 bars each, one page) win.
        ((Provider.POLYGON, Provider.ALPACA), 120, 20, DailySource(Provider.ALPACA, False, 3)),
        # 5,000 members x 250 sessions: 100 batches x 2 pages (12,500 bars) = 200 < 250.
        ((Provider.POLYGON, Provider.ALPACA), 5000, 250, DailySource(Provider.ALPACA, False, 200)),
        # x 500 sessions: 100 x 3 pages = 300 < 500 grouped; x 20 members: 1 < 20.
        ((Provider.POLYGON, Provider.ALPACA), 5000, 500, DailySource(Provider.ALPACA, False, 300)),
        # A tie keeps the configured order, grouped first.
        ((Provider.POLYGON,), 20, 20, DailySource(Provider.POLYGON, True, 20)),
    ],
)
def test_the_cheapest_way_serves_first(
    providers: tuple[Provider, ...], members: int, sessions: int, expected: DailySource
) -> None:
    plan = plan_sources(providers, members, sessions)
    assert plan[0] == expected
    assert [way.requests for way in plan] == sorted(way.requests for way in plan)
    assert len(plan) == len(providers) + (Provider.POLYGON in providers)


def test_an_outage_hands_the_sessions_left_to_the_next_way(
    pipeline_env: dict[str, str], conn: psycopg.Connection, emulator: str
) -> None:
    """Polygon grouped serves the first session, then fails (503 until retries run out): the
    sessions left go to the next cheapest way, Polygon per symbol, and nothing is lost."""
    members = [*REAL, "GEN00"]  # 4 grouped requests < 6 per-symbol ones
    universes.set_members(conn, "outage", members)
    ids = universes.members(conn, "outage")
    conn.commit()
    days = DAYS[:4]
    reset_emulator(emulator)
    httpx.post(f"{emulator}/_emulator/tickers", json={"tickers": ["GEN00"]}).raise_for_status()
    forwarded = httpx.Client(base_url=emulator)
    seen: list[str] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if len(seen) in (2, 3):  # the second session's request and its one retry
            return httpx.Response(503, json={"status": "ERROR"})
        answer = forwarded.get(
            request.url.path,
            params=request.url.params,
            headers={"Authorization": request.headers["Authorization"]},
        )
        return httpx.Response(answer.status_code, content=answer.content)  # fmt: skip

    def client(_: Provider) -> PolygonClient:
        return PolygonClient(
            emulator, EMULATOR_KEY, UnlimitedLimiter(), fake_clock(),
            transport=httpx.MockTransport(flaky), max_attempts=2, backoff_base_s=0.0,
        )  # fmt: skip

    run = fetch_universe_daily(
        conn, [Provider.POLYGON], ids, days, client, client, run_id="outage-run"
    )
    forwarded.close()
    assert [str(way) for way in run.used] == ["polygon grouped", "polygon per-symbol"]
    assert run.stats.requests == 1 + 2 + len(members) == len(seen)
    assert all(r.error is None for r in run.results)
    first, last = _first_last(days)
    for symbol in members:
        assert _stored(conn, symbol, "d1") == _official(symbol, first, last), symbol
    ledger = conn.execute(
        """SELECT symbol, range_start, status, error_code FROM job_runs
           WHERE run_id = 'outage-run' AND symbol = '*' ORDER BY id"""
    ).fetchall()
    assert ledger == [
        ("*", days[0], "success", None), ("*", days[1], "failed", "PROVIDER_UNAVAILABLE"),
    ]  # fmt: skip
