"""Staying right in operation: per-symbol outcomes, provisional rows that leave, dead symbols
that stop costing requests, coverage per timeframe, unconfigured providers skipped.

Runs go through the real sensors and `bars_job` as the daemon launches them (the request's
tags and asset selection), against the emulator and a real PostgreSQL, with the program's
clock moved through SWIFTBOLT_NOW."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import dagster as dg
import httpx
import psycopg
import pytest

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.defs.jobs import BARS_JOB
from swiftbolt_pipeline.defs.resources import WarehouseResource
from swiftbolt_pipeline.defs.sensors import coverage_gap_sensor
from swiftbolt_pipeline.defs.settings import PipelineSettings
from swiftbolt_pipeline.names import range_tags, year_range_tags
from swiftbolt_pipeline.services.coverage import coverage_report
from swiftbolt_pipeline.services.launch import as_single_run, register_symbols
from swiftbolt_pipeline.services.webhook import deliver_pending
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline_tests.receiver import Receiver
from swiftbolt_pipeline_tests.reliability.helpers import emulator_requests, reset_emulator

ET = ZoneInfo("America/New_York")


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def fresh_emulator(emulator: str) -> Iterator[str]:
    reset_emulator(emulator)
    yield emulator
    reset_emulator(emulator)


def _at(monkeypatch: pytest.MonkeyPatch, when: datetime) -> None:
    monkeypatch.setenv("SWIFTBOLT_NOW", when.isoformat())


def _tick(instance: dg.DagsterInstance, db_url: str) -> list[dg.RunRequest]:
    """One evaluation of the real gap sensor; its new symbols become partitions. Each
    requested backfill comes back as the one run the daemon launches for it."""
    with dg.build_sensor_context(
        instance=instance,
        resources={
            "warehouse": WarehouseResource(database_url=db_url),
            "pipeline": PipelineSettings.from_settings(Settings.from_env()),
        },
        definitions=build_definitions(Settings.from_env()),
    ) as context:
        result = coverage_gap_sensor(context)
    if isinstance(result, dg.SkipReason):
        return []
    assert isinstance(result, dg.SensorResult)
    for request in result.dynamic_partitions_requests or []:
        assert isinstance(request, dg.AddDynamicPartitionsRequest)
        register_symbols(instance, list(request.partition_keys))
    return [as_single_run(request) for request in result.run_requests or []]


def _launch(instance: dg.DagsterInstance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """A requested run of `bars_job`, as the daemon launches it: its tags and selection."""
    defs = build_definitions(Settings.from_env())
    job = defs.resolve_job_def(BARS_JOB)
    return job.execute_in_process(
        instance=instance,
        tags=request.tags,
        asset_selection=list(request.asset_selection) if request.asset_selection else None,
        raise_on_error=False,
    )


def _range(request: dg.RunRequest) -> tuple[str, str, bool]:
    """(first day, last day, fetches from providers) of a requested run."""
    start = request.tags["dagster/asset_partition_range_start"].split("|")[0]
    end = request.tags["dagster/asset_partition_range_end"].split("|")[0]
    selection = request.asset_selection
    return start, end, selection is None or dg.AssetKey("m15_bars") in selection


def _count(conn: psycopg.Connection, sql: str, *params: Any) -> int:
    row = conn.execute(sql, params).fetchone()
    conn.commit()
    assert row is not None
    return int(row[0])


def _bars(conn: psycopg.Connection, ticker: str, timeframe: str, where: str = "true") -> int:
    return _count(
        conn,
        f"""SELECT count(*) FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
            WHERE s.ticker = %s AND b.timeframe = %s AND {where}""",
        ticker,
        timeframe,
    )


def test_one_failing_symbol_never_blocks_the_others(
    pipeline_env: dict[str, str], conn: psycopg.Connection, instance: dg.DagsterInstance
) -> None:
    days = calendar.sessions_between(date(2026, 3, 2), date(2026, 3, 6))
    register_symbols(instance, ["SPY", "ZZNOPE"])
    request = dg.RunRequest(tags=range_tags("SPY", "ZZNOPE", days[0], days[-1]))
    result = _launch(instance, request)
    assert result.success
    # SPY is stored and derived although ZZNOPE (unknown to the provider) failed.
    assert _bars(conn, "SPY", "m15") == 5 * 26
    assert (_bars(conn, "SPY", "h1"), _bars(conn, "SPY", "h4")) == (5 * 7, 5 * 2)
    assert _bars(conn, "ZZNOPE", "m15") == 0
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert not checks["fetch_complete"].passed
    zz = next(s for s in watchlist.list_symbols(conn, active_only=False) if s.ticker == "ZZNOPE")
    assert zz.not_found_streak == 1 and zz.retry_after is not None


def test_provisional_rows_of_a_past_session_are_refilled_once_the_finalize_is_overdue(
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    fresh_emulator: str,
) -> None:
    day = date(2026, 3, 4)  # a Wednesday: today's session from Tradier at noon
    monkeypatch.setenv("SWIFTBOLT_HISTORY_START", day.isoformat())
    watchlist.add(conn, ["SPY"], window_days=5)
    conn.commit()
    _at(monkeypatch, datetime(2026, 3, 4, 12, 0, tzinfo=ET))
    (today,) = _tick(instance, pipeline_env["DATABASE_URL"])
    assert _launch(instance, today).success
    assert _bars(conn, "SPY", "m15", "is_intraday") == 10  # 09:30 .. 11:45
    assert _bars(conn, "SPY", "h1", "is_intraday") == 3  # 09:30, 10:30 and the partial 11:30

    # The next morning before the finalize is due: provisional rows are left to it.
    _at(monkeypatch, datetime(2026, 3, 5, 5, 0, tzinfo=ET))
    assert _tick(instance, pipeline_env["DATABASE_URL"]) == []
    # The finalize failed (or never ran): at 07:00 the session is a gap, fetched from history.
    _at(monkeypatch, datetime(2026, 3, 5, 7, 0, tzinfo=ET))
    (refill,) = _tick(instance, pipeline_env["DATABASE_URL"])
    assert _range(refill) == ("2026-03-04", "2026-03-04", True)
    before = emulator_requests(fresh_emulator)
    assert _launch(instance, refill).success
    assert emulator_requests(fresh_emulator) - before == 1
    assert _bars(conn, "SPY", "m15", "is_intraday") == 0
    assert _bars(conn, "SPY", "m15") == 26
    assert _bars(conn, "SPY", "h1", "NOT is_intraday") == 7
    assert _tick(instance, pipeline_env["DATABASE_URL"]) == []


def test_a_dead_symbol_is_parked_after_a_bounded_cost(
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    fresh_emulator: str,
) -> None:
    monkeypatch.delenv("TRADIER_TOKEN")  # history only: today waits for the history provider
    start = datetime(2026, 3, 10, 12, 0, tzinfo=ET)
    _at(monkeypatch, start)
    watchlist.add(conn, ["ZZDEAD"], window_days=20)
    conn.commit()
    url = pipeline_env["DATABASE_URL"]
    ranges = []
    for minutes in range(0, 60, 5):  # a tick every five minutes for an hour
        _at(monkeypatch, start + timedelta(minutes=minutes))
        for request in _tick(instance, url):
            ranges.append(_range(request))
            assert _launch(instance, request).success is False  # it is the only symbol
    # The whole window once, then a one-session probe after each 10-minute cooldown.
    assert ranges == [
        ("2026-02-18", "2026-03-09", True),
        ("2026-03-09", "2026-03-09", True),
        ("2026-03-09", "2026-03-09", True),
    ]
    assert emulator_requests(fresh_emulator) == 3
    (dead,) = watchlist.parked(conn)
    assert dead.ticker == "ZZDEAD" and not dead.is_active
    assert dead.parked_reason is not None and "SYMBOL_NOT_FOUND" in dead.parked_reason
    assert [s.ticker for s in watchlist.list_symbols(conn)] == []
    conn.commit()
    with Receiver() as receiver:  # one alert for the parking, none for the failures before it
        deliver_pending(conn, receiver.url, [])
    assert [(m["kind"], m["subject"]) for m in receiver.messages()] == [("symbol_parked", "ZZDEAD")]
    # Adding it again un-parks it.
    (again,) = watchlist.add(conn, ["ZZDEAD"], window_days=20)
    assert again.is_active and again.parked_reason is None and again.not_found_streak == 0


def test_a_halted_session_is_confirmed_empty_not_a_gap(
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    fresh_emulator: str,
) -> None:
    halted = date(2026, 3, 4)
    httpx.post(
        f"{fresh_emulator}/_emulator/lifecycles",
        json={"ticker": "HALTX", "halted": [halted.isoformat()], "listed_from": "2026-02-24"},
    ).raise_for_status()
    monkeypatch.delenv("TRADIER_TOKEN")
    _at(monkeypatch, datetime(2026, 3, 10, 12, 0, tzinfo=ET))
    (symbol,) = watchlist.add(conn, ["HALTX"], window_days=20)
    conn.commit()
    (request,) = _tick(instance, pipeline_env["DATABASE_URL"])
    assert _launch(instance, request).success
    confirmed = dict(
        conn.execute(
            "SELECT day, bars FROM confirmed_sessions WHERE symbol_id = %s", (symbol.id,)
        ).fetchall()
    )
    # Before the listing and on the halt the provider served nothing: confirmed empty.
    assert {d for d, n in confirmed.items() if n == 0} == {
        *calendar.sessions_between(date(2026, 2, 18), date(2026, 2, 23)),
        halted,
    }
    # The official daily bars: none before the listing and on the halt, both answered.
    daily = build_definitions(Settings.from_env()).resolve_job_def("daily_job")
    assert daily.execute_in_process(
        instance=instance, tags=year_range_tags("HALTX", "HALTX", 2026, 2026)
    ).success
    for timeframe in (tf for tf in Timeframe if tf is not Timeframe.M5):  # m5 is opt-in
        report = coverage_report(
            conn,
            instance,
            Settings.from_env(),
            symbol="HALTX",
            symbol_id=symbol.id,
            timeframe=timeframe,
            window_days=20,
        )
        assert report.status == "coverage_complete", (timeframe, report.gaps)
    requests = emulator_requests(fresh_emulator)
    assert _tick(instance, pipeline_env["DATABASE_URL"]) == []
    assert emulator_requests(fresh_emulator) == requests == 2  # m15 and d1, one each


def test_partial_raw_sessions_are_fetched_and_missing_derived_bars_derived(
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    fresh_emulator: str,
) -> None:
    monkeypatch.delenv("TRADIER_TOKEN")
    _at(monkeypatch, datetime(2026, 3, 10, 12, 0, tzinfo=ET))
    watchlist.add(conn, ["QQQ"], window_days=10)
    conn.commit()
    url = pipeline_env["DATABASE_URL"]
    (first,) = _tick(instance, url)
    assert _launch(instance, first).success
    assert _tick(instance, url) == []
    # Damage: a partial m15 session (5 bars gone) and a missing h4 bar on another day.
    conn.execute(
        """DELETE FROM ohlc_bars_v2 WHERE timeframe = 'm15' AND ts IN (
               SELECT ts FROM ohlc_bars_v2 WHERE timeframe = 'm15'
                  AND (ts AT TIME ZONE 'America/New_York')::date = '2026-03-03'
               ORDER BY ts LIMIT 5)"""
    )
    conn.execute(
        """DELETE FROM ohlc_bars_v2 WHERE timeframe = 'h4'
           AND ts = '2026-03-05 13:30:00-05'::timestamptz"""
    )
    conn.commit()
    requests = _tick(instance, url)
    assert sorted(_range(r) for r in requests) == [
        ("2026-03-03", "2026-03-03", True),
        ("2026-03-05", "2026-03-05", False),  # derived again from m15: no request
    ]
    before = emulator_requests(fresh_emulator)
    for request in requests:
        assert _launch(instance, request).success
    assert emulator_requests(fresh_emulator) - before == 1
    assert _bars(conn, "QQQ", "m15") == 6 * 26 and _bars(conn, "QQQ", "h4") == 6 * 2
    assert _tick(instance, url) == []


def test_without_an_intraday_provider_today_waits_for_history(
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TRADIER_TOKEN")
    _at(monkeypatch, datetime(2026, 3, 10, 12, 0, tzinfo=ET))
    days = calendar.sessions_between(date(2026, 3, 9), date(2026, 3, 10))
    register_symbols(instance, ["SPY"])
    request = dg.RunRequest(tags=range_tags("SPY", "SPY", days[0], days[-1]))
    result = _launch(instance, request)
    assert result.success
    assert _bars(conn, "SPY", "m15") == 26  # yesterday from history; today skipped
    assert _count(conn, "SELECT count(*) FROM ohlc_bars_v2 WHERE provider = 'tradier'") == 0
    event = instance.get_latest_materialization_event(dg.AssetKey("m15_bars"))
    assert event is not None and event.asset_materialization is not None
    assert event.asset_materialization.metadata["providers_unavailable"].value == "tradier"
    # Coverage does not expect today's session without a provider for it.
    (spy,) = watchlist.add(conn, ["SPY"], window_days=1)
    report = coverage_report(
        conn,
        instance,
        Settings.from_env(),
        symbol="SPY",
        symbol_id=spy.id,
        timeframe=Timeframe.H1,
        window_days=1,
    )
    assert report.sessions == [date(2026, 3, 9)] and report.status == "coverage_complete"


def test_a_run_whose_worker_died_is_failed_and_frees_its_pool_slot(
    pipeline_env: dict[str, str], conn: psycopg.Connection, instance: dg.DagsterInstance
) -> None:
    """A SIGKILLed worker (or one cut off by a database restart) leaves its run STARTED with
    its pool slot claimed: the gap sensor finds it dead through its abandoned ledger rows."""
    storage = instance.event_log_storage
    storage.set_concurrency_slots("polygon", 1)
    runs = {}
    for name in ("dead", "alive"):
        run_id = str(uuid.uuid4())
        instance.add_run(
            dg.DagsterRun(job_name=BARS_JOB, run_id=run_id, status=dg.DagsterRunStatus.STARTED)
        )
        runs[name] = run_id
    storage.claim_concurrency_slot("polygon", runs["dead"], "m15_bars")
    for name, status in (("dead", "abandoned"), ("alive", "running")):
        conn.execute(
            """INSERT INTO job_runs (run_id, provider, symbol, timeframe, range_start, range_end,
                                     status, expected_cost)
               VALUES (%s, 'polygon', 'SPY', 'm15', '2026-03-02', '2026-03-06', %s, 1)""",
            (runs[name], status),
        )
    conn.commit()
    _tick(instance, pipeline_env["DATABASE_URL"])
    statuses = {name: instance.get_run_by_id(run_id) for name, run_id in runs.items()}
    assert {n: r.status for n, r in statuses.items() if r} == {
        "dead": dg.DagsterRunStatus.FAILURE,
        "alive": dg.DagsterRunStatus.STARTED,  # its fetch's session is live (this one)
    }
    assert storage.get_concurrency_info("polygon").active_slot_count == 0


def test_todays_refresh_of_many_symbols_holds_a_few_database_connections(
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One intraday client for the whole run, not one (with its limiter and breaker
    connections) per symbol: 45 symbols used to exhaust PostgreSQL's 100 connections."""
    _at(monkeypatch, datetime(2026, 3, 11, 11, 5, tzinfo=ET))
    symbols = sorted(f"T{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(30))
    register_symbols(instance, symbols)
    database = conn.execute("SELECT current_database()").fetchone()
    assert database is not None
    peak, done = [0], threading.Event()

    def sample() -> None:
        with psycopg.connect(pipeline_env["DATABASE_URL"], autocommit=True) as watcher:
            while not done.is_set():
                row = watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", database
                ).fetchone()
                peak[0] = max(peak[0], row[0] if row else 0)
                time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        request = dg.RunRequest(
            tags=range_tags(symbols[0], symbols[-1], date(2026, 3, 11), date(2026, 3, 11))
        )
        assert _launch(instance, request).success
    finally:
        done.set()
        sampler.join()
    assert _count(conn, "SELECT count(*) FROM ohlc_bars_v2 WHERE timeframe = 'm15'") == 30 * 6
    # This test's own two, the sampler, the run's warehouse, limiter and breaker: not 2 x 30.
    assert peak[0] <= 8, peak[0]
