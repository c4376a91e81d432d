"""Sensors, schedules and the coverage report, through Dagster's own test contexts."""

from __future__ import annotations

import time
import uuid
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg
import psycopg
import pytest
from dagster._core.execution.backfill import PartitionBackfill

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.defs.jobs import BARS_JOB
from swiftbolt_pipeline.defs.resources import WarehouseResource
from swiftbolt_pipeline.defs.schedules import (
    finalize_previous_session_schedule,
    today_intraday_schedule,
)
from swiftbolt_pipeline.defs.sensors import coverage_gap_sensor, watchlist_sensor
from swiftbolt_pipeline.defs.settings import PipelineSettings
from swiftbolt_pipeline.names import range_tags
from swiftbolt_pipeline.services.coverage import coverage_report
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline_tests.defs.test_m15_asset import _run

ET = ZoneInfo("America/New_York")


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def _sensor(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, db_url: str):
    # As a context manager: it closes what evaluating the sensor opened (left to the garbage
    # collector, that closing would later restore a disposed instance as Dagster's current).
    with dg.build_sensor_context(
        instance=instance,
        resources={
            "warehouse": WarehouseResource(database_url=db_url),
            "pipeline": PipelineSettings.from_settings(Settings.from_env()),
        },
        definitions=build_definitions(Settings.from_env()),
    ) as context:
        return sensor(context)


def _queue(instance: dg.DagsterInstance, tags: dict[str, str], status: dg.DagsterRunStatus) -> None:
    instance.add_run(
        dg.DagsterRun(job_name=BARS_JOB, run_id=str(uuid.uuid4()), status=status, tags=tags)
    )


def test_watchlist_sensor_adds_and_removes_symbol_partitions(
    pipeline_env: dict[str, str], conn: psycopg.Connection, instance: dg.DagsterInstance
) -> None:
    watchlist.add(conn, ["AAPL", "MSFT"])
    watchlist.ensure(conn, ["IBM"])  # known to the archive but not watched
    result = _sensor(watchlist_sensor, instance, pipeline_env["DATABASE_URL"])
    assert isinstance(result, dg.SensorResult)
    (request,) = result.dynamic_partitions_requests or []
    assert isinstance(request, dg.AddDynamicPartitionsRequest)
    assert sorted(request.partition_keys) == ["AAPL", "MSFT"]
    instance.add_dynamic_partitions("symbols", ["AAPL", "MSFT"])

    assert isinstance(
        _sensor(watchlist_sensor, instance, pipeline_env["DATABASE_URL"]), dg.SkipReason
    )

    watchlist.remove(conn, ["MSFT"])
    result = _sensor(watchlist_sensor, instance, pipeline_env["DATABASE_URL"])
    assert isinstance(result, dg.SensorResult)
    (request,) = result.dynamic_partitions_requests or []
    assert isinstance(request, dg.DeleteDynamicPartitionsRequest)
    assert list(request.partition_keys) == ["MSFT"]


def _backfill(request: dg.RunRequest) -> tuple[str, str, str, int, str, list[str]]:
    """A sensor's backfill request: symbol, first and last partition, partition count (per
    asset), priority, assets."""
    subset = request.asset_graph_subset
    assert subset is not None, "a plain run request, not a backfill"
    keys = sorted({str(key) for _, key in subset.iterate_asset_partitions()})
    assets = sorted(key.to_user_string() for key in subset.asset_keys)
    assert subset.num_partitions_and_non_partitioned_assets == len(keys) * len(assets)
    symbol = request.tags["swiftbolt/symbol"]
    assert all(key.endswith(f"|{symbol}") for key in keys)
    return symbol, keys[0], keys[-1], len(keys), request.tags["dagster/priority"], assets


def _submit(instance: dg.DagsterInstance, request: dg.RunRequest) -> None:
    """Store the backfill as the sensor daemon does with the request (its backfill daemon
    has not launched a run for it yet)."""
    assert request.asset_graph_subset is not None
    instance.add_backfill(
        PartitionBackfill.from_asset_graph_subset(
            backfill_id=uuid.uuid4().hex[:8],
            backfill_timestamp=time.time(),
            tags=request.tags,
            dynamic_partitions_store=instance,
            asset_graph_subset=request.asset_graph_subset,
            title=None,
            description=None,
            run_config=None,
        )
    )


ALL = ["h1_bars", "h4_bars", "m15_bars"]
DERIVED = ["h1_bars", "h4_bars"]


def test_coverage_gap_sensor_requests_one_backfill_per_contiguous_range(
    pipeline_env: dict[str, str], conn: psycopg.Connection, instance: dg.DagsterInstance
) -> None:
    # Now = 2026-03-20 12:00 ET; a 30-day window holds 2026-02-18 .. 2026-03-20 (today, whose
    # first bars are complete, so it is fetched too — from Tradier).
    watchlist.add(conn, ["SPY"], window_days=30, priority=1)
    watchlist.add(conn, ["QQQ"], window_days=30, priority=5)
    instance.add_dynamic_partitions("symbols", ["QQQ", "SPY"])
    filled = calendar.sessions_between(date(2026, 3, 2), date(2026, 3, 6))
    outcome = _run("SPY", filled, instance, selection=["m15_bars", "h4_bars"])
    assert outcome.success, outcome.error

    result = _sensor(coverage_gap_sensor, instance, pipeline_env["DATABASE_URL"])
    assert isinstance(result, dg.SensorResult)
    assert [_backfill(r) for r in result.run_requests or []] == [
        ("QQQ", "2026-02-18|QQQ", "2026-03-20|QQQ", 23, "5", ALL),  # higher priority first
        ("SPY", "2026-02-18|SPY", "2026-02-27|SPY", 8, "1", ALL),
        # m15 and h4 are stored, h1 is not: derived again from m15, no request.
        ("SPY", "2026-03-02|SPY", "2026-03-06|SPY", 5, "1", DERIVED),
        ("SPY", "2026-03-09|SPY", "2026-03-20|SPY", 10, "1", ALL),
    ]


def test_a_requested_backfill_is_in_flight_before_its_run_exists(
    pipeline_env: dict[str, str], conn: psycopg.Connection, instance: dg.DagsterInstance
) -> None:
    (spy,) = watchlist.add(conn, ["SPY"], window_days=5)
    instance.add_dynamic_partitions("symbols", ["SPY"])
    result = _sensor(coverage_gap_sensor, instance, pipeline_env["DATABASE_URL"])
    assert isinstance(result, dg.SensorResult)
    (request,) = result.run_requests or []
    assert _backfill(request) == ("SPY", "2026-03-16|SPY", "2026-03-20|SPY", 5, "0", ALL)
    _submit(instance, request)

    # The next tick sees the backfill (no run yet) and requests nothing more.
    result = _sensor(coverage_gap_sensor, instance, pipeline_env["DATABASE_URL"])
    assert isinstance(result, dg.SkipReason)
    report = coverage_report(
        conn,
        instance,
        Settings.from_env(),
        symbol="SPY",
        symbol_id=spy.id,
        timeframe=Timeframe.M15,
        window_days=5,
    ).to_json()
    assert report["status"] == "backfill_running"
    assert report["backfill_progress"]["queued_slices"] == 5


def test_today_is_not_a_gap_before_its_first_bar_completes(
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SWIFTBOLT_NOW", "2026-03-20T09:44:00-04:00")
    watchlist.add(conn, ["SPY"], window_days=3)
    instance.add_dynamic_partitions("symbols", ["SPY"])
    result = _sensor(coverage_gap_sensor, instance, pipeline_env["DATABASE_URL"])
    assert isinstance(result, dg.SensorResult)
    assert [_backfill(r)[2] for r in result.run_requests or []] == ["2026-03-19|SPY"]


def test_coverage_gap_sensor_adds_a_new_symbol_as_a_partition_in_the_same_tick(
    pipeline_env: dict[str, str], conn: psycopg.Connection, instance: dg.DagsterInstance
) -> None:
    watchlist.add(conn, ["NVDA"], window_days=5)
    result = _sensor(coverage_gap_sensor, instance, pipeline_env["DATABASE_URL"])
    assert isinstance(result, dg.SensorResult)
    (add,) = result.dynamic_partitions_requests or []
    assert isinstance(add, dg.AddDynamicPartitionsRequest)
    assert list(add.partition_keys) == ["NVDA"]
    assert [r.tags["swiftbolt/symbol"] for r in result.run_requests or []] == ["NVDA"]


def test_coverage_gap_sensor_leaves_inflight_ranges_and_failed_symbols_alone(
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spy, qqq, iwm = watchlist.add(conn, ["SPY", "QQQ", "IWM"], window_days=30)
    instance.add_dynamic_partitions("symbols", ["IWM", "QQQ", "SPY"])
    _queue(
        instance,
        range_tags("SPY", "SPY", date(2026, 2, 18), date(2026, 3, 19)),
        dg.DagsterRunStatus.NOT_STARTED,  # queued without a code location
    )
    now = Settings.from_env().now()
    # QQQ's last fetch failed a minute ago, IWM's eleven minutes ago (on the program's clock).
    for symbol, ago in ((qqq, 1), (iwm, 11)):
        watchlist.record_outcome(
            conn,
            symbol.id,
            error_code="PROVIDER_UNAVAILABLE",
            now=now - timedelta(minutes=ago),
            retry_after=now - timedelta(minutes=ago - 10),
        )
    conn.commit()

    def requested() -> list[tuple[str, str]]:
        result = _sensor(coverage_gap_sensor, instance, pipeline_env["DATABASE_URL"])
        assert isinstance(result, dg.SensorResult)
        return [_backfill(r)[1:3] for r in result.run_requests or []]

    assert requested() == [
        ("2026-02-18|IWM", "2026-03-20|IWM"),
        ("2026-03-20|SPY", "2026-03-20|SPY"),
    ]
    # Ten minutes after its failure QQQ is due again.
    monkeypatch.setenv("SWIFTBOLT_NOW", (now + timedelta(minutes=9, seconds=1)).isoformat())
    assert ("2026-02-18|QQQ", "2026-03-20|QQQ") in requested()
    assert spy.ticker == "SPY"


def test_coverage_report_counts_running_and_queued_slices(
    pipeline_env: dict[str, str], conn: psycopg.Connection, instance: dg.DagsterInstance
) -> None:
    (spy,) = watchlist.add(conn, ["SPY"], window_days=30)
    # Dagster orders dynamic partitions as they were added, not alphabetically.
    instance.add_dynamic_partitions("symbols", ["TSLA", "SPY", "AAPL"])
    filled = calendar.sessions_between(date(2026, 3, 2), date(2026, 3, 6))
    assert _run("SPY", filled, instance, selection=["m15_bars", "h1_bars"]).success
    _queue(
        instance,
        range_tags("SPY", "SPY", date(2026, 2, 18), date(2026, 2, 27)),
        dg.DagsterRunStatus.STARTED,
    )
    _queue(
        instance,
        # A multi-symbol run: TSLA, SPY and AAPL in the partitions' order.
        range_tags("TSLA", "AAPL", date(2026, 3, 9), date(2026, 3, 13)),
        dg.DagsterRunStatus.NOT_STARTED,  # queued without a code location
    )
    report = coverage_report(
        conn,
        instance,
        Settings.from_env(),
        symbol="SPY",
        symbol_id=spy.id,
        timeframe=Timeframe.H1,
        window_days=30,
    ).to_json()
    assert report == {
        "symbol": "SPY",
        "timeframe": "h1",
        "window_days": 30,
        "status": "backfill_running",
        "backfill_progress": {
            "total_slices": 23,  # 2026-02-18 .. 2026-03-20 (today)
            "completed_slices": 5,
            "running_slices": 8,
            "queued_slices": 5,
            "progress_percent": 21.7,
            "bars_written": 35,
        },
        "gaps": [
            {"start": "2026-02-18", "end": "2026-02-27", "sessions": 8},
            {"start": "2026-03-09", "end": "2026-03-20", "sessions": 10},
        ],
    }


def _schedule(schedule: dg.ScheduleDefinition, instance: dg.DagsterInstance, at: datetime):
    with dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=at,
        resources={"pipeline": PipelineSettings.from_settings(Settings.from_env())},
    ) as context:
        return schedule(context)


@pytest.mark.parametrize(
    ("at", "runs"),
    [
        (datetime(2026, 3, 11, 9, 30, tzinfo=ET), False),  # first bar not complete yet
        (datetime(2026, 3, 11, 9, 45, tzinfo=ET), True),
        (datetime(2026, 3, 11, 16, 15, tzinfo=ET), True),  # the last bar, just complete
        (datetime(2026, 3, 11, 16, 30, tzinfo=ET), False),
        (datetime(2025, 11, 28, 12, 0, tzinfo=ET), True),  # early close
        (datetime(2025, 11, 28, 13, 30, tzinfo=ET), False),
        (datetime(2025, 11, 27, 11, 0, tzinfo=ET), False),  # Thanksgiving
    ],
)
def test_today_schedule_runs_only_while_the_session_is_open(
    monkeypatch: pytest.MonkeyPatch, instance: dg.DagsterInstance, at: datetime, runs: bool
) -> None:
    monkeypatch.delenv("SWIFTBOLT_NOW", raising=False)
    monkeypatch.setenv("TRADIER_TOKEN", "token")
    instance.add_dynamic_partitions("symbols", ["SPY", "AAPL", "QQQ"])
    result = _schedule(today_intraday_schedule, instance, at)
    if not runs:
        assert isinstance(result, dg.SkipReason)
        return
    assert isinstance(result, dg.RunRequest)
    day = at.date().isoformat()
    # First to last partition in Dagster's order (as added): every symbol.
    assert result.tags["dagster/asset_partition_range_start"] == f"{day}|SPY"
    assert result.tags["dagster/asset_partition_range_end"] == f"{day}|QQQ"


def test_today_schedule_skips_without_an_intraday_provider(
    monkeypatch: pytest.MonkeyPatch, instance: dg.DagsterInstance
) -> None:
    monkeypatch.delenv("SWIFTBOLT_NOW", raising=False)
    monkeypatch.delenv("TRADIER_TOKEN", raising=False)
    instance.add_dynamic_partitions("symbols", ["SPY"])
    result = _schedule(today_intraday_schedule, instance, datetime(2026, 3, 11, 11, tzinfo=ET))
    assert isinstance(result, dg.SkipReason)
    assert "TRADIER_TOKEN" in (result.skip_message or "")


def test_finalize_schedule_targets_the_previous_session_where_it_is_not_final(
    monkeypatch: pytest.MonkeyPatch,
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    instance: dg.DagsterInstance,
) -> None:
    monkeypatch.setenv("SWIFTBOLT_NOW", "2026-01-20T06:00:00-05:00")
    monkeypatch.setenv("SWIFTBOLT_HISTORY_START", "2025-12-01")
    watchlist.add(conn, ["SPY", "QQQ", "AAPL"])
    # Not alphabetical: a range runs in Dagster's order of the partitions, as added.
    instance.add_dynamic_partitions("symbols", ["SPY", "QQQ", "AAPL"])
    friday = date(2026, 1, 16)
    assert _run("QQQ", [friday], instance).success  # QQQ already holds its final bars

    def finalize() -> dg.RunRequest | dg.SkipReason:
        # Monday 2026-01-20 06:00: the previous session is Friday 2026-01-16 (MLK day between).
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=datetime(2026, 1, 20, 6, 0, tzinfo=ET),
            resources={
                "warehouse": WarehouseResource(database_url=pipeline_env["DATABASE_URL"]),
                "pipeline": PipelineSettings.from_settings(Settings.from_env()),
            },
        ) as context:
            return finalize_previous_session_schedule(context)

    result = finalize()
    assert isinstance(result, dg.RunRequest)
    assert result.tags["dagster/asset_partition_range_start"] == "2026-01-16|SPY"
    assert result.tags["dagster/asset_partition_range_end"] == "2026-01-16|AAPL"
    assert result.tags["swiftbolt/missing-only"] == "true"  # QQQ, inside the range, is skipped
    for symbol in ("AAPL", "SPY"):
        assert _run(symbol, [friday], instance).success
    assert isinstance(finalize(), dg.SkipReason)
