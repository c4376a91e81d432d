"""History provider routing: fallback on outage, automatic recovery, fail fast on an open
breaker, Alpaca multi-symbol batches, against the emulator and a real PostgreSQL."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from datetime import date
from typing import Any
from urllib.parse import parse_qs

import dagster as dg
import httpx
import psycopg
import pytest

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.clock import SystemClock
from swiftbolt_pipeline.core.errors import PROVIDER_UNAVAILABLE, ProviderError
from swiftbolt_pipeline.core.models import Provider
from swiftbolt_pipeline.defs.assets.m15 import plan_run_config
from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.defs.resources import AlpacaResource, PolygonResource
from swiftbolt_pipeline.ingest.history import HistoryTask
from swiftbolt_pipeline.ingest.store import SymbolIngest
from swiftbolt_pipeline.names import partition_key
from swiftbolt_pipeline.providers.alpaca import AlpacaClient
from swiftbolt_pipeline.providers.http import RequestStats, UnlimitedLimiter
from swiftbolt_pipeline.providers.polygon import PolygonClient
from swiftbolt_pipeline.services.launch import RunOutcome, register_symbols
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline.storage.breaker import PostgresCircuitBreaker
from swiftbolt_pipeline_tests.conftest import EMULATOR_KEY
from swiftbolt_pipeline_tests.realdata import regular_m15
from swiftbolt_pipeline_tests.reliability.helpers import (
    emulator_requests,
    ingest_history_routed,
    inject,
    reset_emulator,
    served_bars,
    stored_m15,
)

WEEK = calendar.sessions_between(date(2025, 6, 2), date(2025, 6, 6))


def _run(
    symbols: Sequence[str],
    days: Sequence[date],
    instance: dg.DagsterInstance,
    *,
    provider: str | None = None,
) -> RunOutcome:
    """One in-process run of m15_bars over `symbols` x `days` (symbols registered in this order,
    so the partition range covers exactly them); retry backoff scaled down."""
    defs = build_definitions(Settings.from_env())
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    resources: dict[str, Any] = dict(defs.resources or {})
    settings = Settings.from_env()
    common = {
        "warehouse": resources["warehouse"],
        "breaker_cooldown_s": settings.breaker_cooldown_s,
        "backoff_base_s": 0.01,
    }
    resources["polygon"] = PolygonResource(
        api_key=dg.EnvVar("POLYGON_API_KEY"), base_url=settings.polygon_base_url, **common
    )
    resources["alpaca"] = AlpacaResource(
        key_id=dg.EnvVar("ALPACA_KEY_ID"),
        secret_key=dg.EnvVar("ALPACA_SECRET_KEY"),
        base_url=settings.alpaca_base_url,
        **common,
    )
    register_symbols(instance, list(symbols))
    tags = {
        "dagster/asset_partition_range_start": partition_key(symbols[0], days[0]),
        "dagster/asset_partition_range_end": partition_key(symbols[-1], days[-1]),
    }
    result = dg.materialize(
        assets,
        instance=instance,
        resources=resources,
        selection=["m15_bars"],
        raise_on_error=False,
        tags=tags,
        run_config=plan_run_config(provider) if provider else None,
    )
    error = None
    if not result.success:
        failure = next(e for e in result.all_events if e.is_step_failure)
        info = failure.step_failure_data.error
        assert info is not None
        while info.cause is not None:
            info = info.cause
        error = info.message
    return RunOutcome(tuple(symbols), result.run_id, result.success, len(days), error)


def _metadata(instance: dg.DagsterInstance) -> dict[str, Any]:
    event = instance.get_latest_materialization_event(dg.AssetKey("m15_bars"))
    assert event is not None and event.asset_materialization is not None
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def _providers(conn: psycopg.Connection, symbol: str) -> dict[str, int]:
    rows = conn.execute(
        """SELECT b.provider, count(*) FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
           WHERE s.ticker = %s GROUP BY 1""",
        (symbol,),
    ).fetchall()
    conn.commit()
    return dict(rows)


def _breaker(conn: psycopg.Connection, provider: str) -> str:
    row = conn.execute(
        "SELECT state FROM provider_breakers WHERE provider = %s", (provider,)
    ).fetchone()
    conn.commit()
    return row[0] if row else "closed"


def _expected(symbol: str, days: Sequence[date]) -> list[tuple[Any, ...]]:
    return list(
        regular_m15(symbol, days[0], days[-1])
        .select("ts", "open", "high", "low", "close", "volume")
        .iter_rows()
    )


@pytest.fixture
def fresh_emulator(emulator: str) -> Any:
    reset_emulator(emulator)
    yield emulator
    reset_emulator(emulator)


def test_outage_flips_to_the_fallback_and_back(
    pipeline_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    conn: psycopg.Connection,
    fresh_emulator: str,
) -> None:
    monkeypatch.setenv("SWIFTBOLT_HISTORY_PROVIDERS", "polygon,alpaca")
    monkeypatch.setenv("SWIFTBOLT_BREAKER_COOLDOWN_S", "0.5")
    inject(fresh_emulator, {"route": "polygon", "kind": "status", "status": 503, "count": 100})
    with dg.instance_for_test() as instance:
        outage = _run(["AAPL"], WEEK, instance)
        assert outage.success, outage.error
        metadata = _metadata(instance)
        assert (metadata["provider"], metadata["fallback_used"]) == ("alpaca", True)
        assert metadata["providers_unavailable"] == "polygon"
        assert metadata["history_providers"] == "polygon,alpaca"
        assert _providers(conn, "AAPL") == {"alpaca": 5 * 26}
        assert stored_m15(conn, "AAPL") == _expected("AAPL", WEEK)
        assert _breaker(conn, "polygon") == "open"
        # 5 attempts at Polygon (the breaker opened on the 5th), then one Alpaca request.
        assert emulator_requests(fresh_emulator, "polygon") == 5
        assert emulator_requests(fresh_emulator, "alpaca") == 1
        ledger = conn.execute(
            "SELECT provider, status, error_code, actual_cost FROM job_runs ORDER BY id"
        ).fetchall()
        assert ledger == [
            ("polygon", "failed", "PROVIDER_UNAVAILABLE", 5),
            ("alpaca", "success", None, 1),
        ]
        conn.commit()

        # Polygon is back; after the cooldown the probe succeeds and the next run uses it.
        reset_emulator(fresh_emulator)
        time.sleep(0.6)
        recovered = _run(["AAPL"], WEEK, instance)
        assert recovered.success, recovered.error
        metadata = _metadata(instance)
        assert (metadata["provider"], metadata["fallback_used"]) == ("polygon", False)
        assert metadata["providers_unavailable"] == "-"
    assert _providers(conn, "AAPL") == {"polygon": 5 * 26}
    assert stored_m15(conn, "AAPL") == _expected("AAPL", WEEK)
    assert _breaker(conn, "polygon") == "closed"
    assert emulator_requests(fresh_emulator, "polygon") == 1
    assert emulator_requests(fresh_emulator, "alpaca") == 0


def _open_breaker(db_url: str, provider: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        breaker = PostgresCircuitBreaker(conn, provider, cooldown_s=60)
        for _ in range(5):
            breaker.failure()


def test_open_breaker_without_fallback_fails_fast(
    pipeline_env: dict[str, str], db_url: str, conn: psycopg.Connection, fresh_emulator: str
) -> None:
    _open_breaker(db_url, "polygon")
    with dg.instance_for_test() as instance:
        outcome = _run(["MSFT"], WEEK, instance)
    assert not outcome.success
    assert outcome.error is not None and "PROVIDER_UNAVAILABLE" in outcome.error
    assert "circuit breaker open" in outcome.error
    assert emulator_requests(fresh_emulator, "polygon") == 0
    assert emulator_requests(fresh_emulator, "alpaca") == 0
    assert conn.execute("SELECT provider, error_code, actual_cost FROM job_runs").fetchall() == [
        ("polygon", "PROVIDER_UNAVAILABLE", 0)
    ]
    assert conn.execute("SELECT count(*) FROM ohlc_bars_v2").fetchone() == (0,)


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        ("tradier", "unknown history provider(s) 'tradier'; choose from polygon, alpaca"),
        ("polygon,alpaca", "run config provider takes one provider, not 'polygon,alpaca'"),
    ],
)
def test_run_config_provider_names_one_history_provider(
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    fresh_emulator: str,
    provider: str,
    message: str,
) -> None:
    with dg.instance_for_test() as instance:
        outcome = _run(["MSFT"], WEEK, instance, provider=provider)
    assert not outcome.success
    assert outcome.error is not None and message in outcome.error
    assert emulator_requests(fresh_emulator, "polygon") == 0
    assert conn.execute("SELECT count(*) FROM job_runs").fetchone() == (0,)


def test_open_breaker_goes_straight_to_the_fallback(
    pipeline_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    db_url: str,
    conn: psycopg.Connection,
    fresh_emulator: str,
) -> None:
    monkeypatch.setenv("SWIFTBOLT_HISTORY_PROVIDERS", "polygon,alpaca")
    _open_breaker(db_url, "polygon")
    with dg.instance_for_test() as instance:
        outcome = _run(["MSFT", "NVDA"], WEEK, instance)
        assert outcome.success, outcome.error
        assert _metadata(instance)["provider"] == "alpaca"
    # No request to Polygon, and both symbols in one Alpaca batch.
    assert emulator_requests(fresh_emulator, "polygon") == 0
    assert emulator_requests(fresh_emulator, "alpaca") == 1
    for symbol in ("MSFT", "NVDA"):
        assert _providers(conn, symbol) == {"alpaca": 5 * 26}
        assert stored_m15(conn, symbol) == _expected(symbol, WEEK)


def test_unconfigured_fallback_fails_with_provider_unavailable(
    pipeline_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    db_url: str,
    fresh_emulator: str,
) -> None:
    monkeypatch.setenv("SWIFTBOLT_HISTORY_PROVIDERS", "polygon,alpaca")
    _open_breaker(db_url, "polygon")
    with dg.instance_for_test() as instance:
        defs = build_definitions(Settings.from_env())
        assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
        resources: dict[str, Any] = dict(defs.resources or {})
        resources["alpaca"] = AlpacaResource(warehouse=resources["warehouse"])
        register_symbols(instance, ["MSFT"])
        result = dg.materialize(
            assets,
            instance=instance,
            resources=resources,
            selection=["m15_bars"],
            raise_on_error=False,
            tags={
                "dagster/asset_partition_range_start": partition_key("MSFT", WEEK[0]),
                "dagster/asset_partition_range_end": partition_key("MSFT", WEEK[-1]),
            },
        )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert failure.step_failure_data.error is not None
    text = str(failure.step_failure_data.error.to_string())
    assert "PROVIDER_UNAVAILABLE" in text and "not configured" in text
    assert emulator_requests(fresh_emulator, "polygon") == 0


def _regular(bars: list[dict[str, Any]], days: Sequence[date]) -> list[tuple[Any, ...]]:
    bounds = [(calendar.session(d).open, calendar.session(d).close) for d in days]
    rows = []
    for b in bars:
        if any(o.timestamp() * 1000 <= b["t"] < c.timestamp() * 1000 for o, c in bounds):
            rows.append((b["t"], b["o"], b["h"], b["l"], b["c"], b["v"]))
    return rows


def _as_served(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [
        (int(r[0].timestamp() * 1000), float(r[1]), float(r[2]), float(r[3]), float(r[4]), r[5])
        for r in rows
    ]


@pytest.mark.slow
def test_sixty_symbols_go_in_two_alpaca_batches(
    pipeline_env: dict[str, str], conn: psycopg.Connection, fresh_emulator: str
) -> None:
    days = calendar.sessions_between(date(2025, 6, 2), date(2025, 6, 13))  # 10 sessions
    listed = [f"Q{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(59)]
    symbols = sorted([*listed, "ZZNOPE"])
    assert symbols[-1] == "ZZNOPE"
    # The plan: symbols in order, 50 per request; each request's `limit` (10000 bars over all
    # its symbols) forces ceil(bars / 10000) pages. Bars per symbol from Polygon's answer.
    served = {s: served_bars(fresh_emulator, s, days[0], days[-1]) for s in listed}
    served["ZZNOPE"] = []
    reset_emulator(fresh_emulator)
    chunks = [symbols[:50], symbols[50:]]
    pages = [max(1, math.ceil(sum(len(served[s]) for s in chunk) / 10_000)) for chunk in chunks]
    assert pages[0] > 1  # the shared limit really forces pages

    with dg.instance_for_test() as instance:
        outcome = _run(symbols, days, instance, provider="alpaca")
        # Only the unlisted symbol fails, by name: the others are stored (and derived).
        assert outcome.success, outcome.error
        assert _metadata(instance)["failed_symbols"] == "ZZNOPE"

    assert emulator_requests(fresh_emulator, "alpaca") == sum(pages)
    assert emulator_requests(fresh_emulator, "polygon") == 0
    log = httpx.get(f"{fresh_emulator}/_emulator/stats").json()["log"]
    firsts = [
        parse_qs(e["query"])["symbols"][0].split(",")
        for e in log
        if e["path"] == "/v2/stocks/bars" and "page_token" not in e["query"]
    ]
    assert firsts == chunks  # two batches: 50 + 10 symbols
    cost = conn.execute(
        """SELECT count(*), sum(expected_cost), sum(actual_cost), count(DISTINCT provider)
           FROM job_runs"""
    ).fetchone()
    assert cost == (60, 2, sum(pages), 1)
    rows = conn.execute(
        """SELECT s.ticker, count(*), min(b.provider), max(b.provider)
           FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id GROUP BY 1"""
    ).fetchall()
    assert {r[0] for r in rows} == set(listed)
    for ticker, count, low, high in rows:
        assert (low, high) == ("alpaca", "alpaca")
        assert count == len(_regular(served[ticker], days)), ticker
    for ticker in (symbols[0], symbols[49], symbols[50], symbols[58]):
        assert _as_served(stored_m15(conn, ticker)) == _regular(served[ticker], days), ticker
    failed = conn.execute(
        "SELECT symbol, status, rows_written FROM job_runs WHERE symbol = 'ZZNOPE'"
    ).fetchall()
    assert failed == [("ZZNOPE", "success", 0)]  # the fetch worked; the ticker has no bars


class _PolygonDownAfterFirstWindow(PolygonClient):
    """Serves the first window, then is unavailable, as an outage in the middle of a range."""

    calls = 0

    def iter_m15_pages(
        self, ticker: str, first: date, last: date, stats: RequestStats, **kwargs: Any
    ) -> Any:
        self.calls += 1
        if self.calls > 1:
            raise ProviderError(PROVIDER_UNAVAILABLE, "server error (HTTP 503)", provider="polygon")
        return super().iter_m15_pages(ticker, first, last, stats, **kwargs)


def test_fallback_takes_only_the_remaining_windows(
    pipeline_env: dict[str, str], conn: psycopg.Connection, fresh_emulator: str
) -> None:
    days = calendar.sessions_between(date(2025, 6, 2), date(2025, 9, 30))
    polygon = _PolygonDownAfterFirstWindow(
        fresh_emulator, EMULATOR_KEY, UnlimitedLimiter(), SystemClock()
    )
    alpaca = AlpacaClient(
        fresh_emulator, EMULATOR_KEY, EMULATOR_KEY, UnlimitedLimiter(), SystemClock()
    )
    clients: dict[Provider, Any] = {Provider.POLYGON: polygon, Provider.ALPACA: alpaca}
    try:
        ids = watchlist.ensure(conn, ["SPY"])
        conn.commit()
        results: list[SymbolIngest] = ingest_history_routed(
            conn,
            (Provider.POLYGON, Provider.ALPACA),
            clients.__getitem__,
            run_id="routing",
            tasks=[HistoryTask("SPY", ids["SPY"], days)],
        )
    finally:
        polygon.close()
        alpaca.close()
    (result,) = results
    assert (result.providers, result.unavailable, result.fallback_used) == (
        (Provider.POLYGON, Provider.ALPACA),
        ["polygon"],
        True,
    )
    per_provider = conn.execute(
        """SELECT provider, min((ts AT TIME ZONE 'America/New_York')::date),
                  max((ts AT TIME ZONE 'America/New_York')::date) FROM ohlc_bars_v2
           GROUP BY 1 ORDER BY 2"""
    ).fetchall()
    assert [r[0] for r in per_provider] == ["polygon", "alpaca"]
    assert per_provider[0][1] == days[0] and per_provider[1][2] == days[-1]
    # Contiguous: the fallback starts at the session after the last one Polygon committed.
    between = calendar.sessions_between(per_provider[0][2], per_provider[1][1])
    assert between == [per_provider[0][2], per_provider[1][1]]
    assert stored_m15(conn, "SPY") == _expected("SPY", days)
    assert conn.execute("SELECT count(*) FROM provider_checkpoints").fetchone() == (0,)
    assert conn.execute(
        "SELECT provider, status, error_code FROM job_runs ORDER BY id"
    ).fetchall() == [
        ("polygon", "success", None),
        ("polygon", "failed", "PROVIDER_UNAVAILABLE"),
        ("alpaca", "success", None),
    ]


def test_bad_provider_tag_fails_the_run(
    pipeline_env: dict[str, str], conn: psycopg.Connection, fresh_emulator: str
) -> None:
    with dg.instance_for_test() as instance:
        outcome = _run(["SPY"], WEEK, instance, provider="nope")
    assert not outcome.success and outcome.error is not None
    assert "unknown history provider" in outcome.error
    assert emulator_requests(fresh_emulator, "polygon") == 0
