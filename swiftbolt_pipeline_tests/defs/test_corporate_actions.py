"""Corporate actions: the splits client (MockTransport) and `corporate_actions_sensor` end to
end — a split added in the emulator re-adjusts the stored history through one bars_job run."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg
import httpx
import polars as pl
import psycopg
import pytest

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar, errors
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.defs.corporate_actions import corporate_actions_sensor
from swiftbolt_pipeline.defs.jobs import BARS_JOB
from swiftbolt_pipeline.defs.resources import PolygonResource, WarehouseResource
from swiftbolt_pipeline.defs.settings import PipelineSettings
from swiftbolt_pipeline.ingest import corporate_actions as ca_ingest
from swiftbolt_pipeline.providers.http import RequestStats
from swiftbolt_pipeline.providers.polygon_reference import PolygonReferenceClient, SplitEvent
from swiftbolt_pipeline.storage import bars as bar_store
from swiftbolt_pipeline.storage import corporate_actions as ca_store
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline_tests.conftest import EMULATOR_KEY
from swiftbolt_pipeline_tests.defs.test_m15_asset import _run
from swiftbolt_pipeline_tests.providers.helpers import (
    BASE,
    KEY,
    CountingLimiter,
    Script,
    fake_clock,
    ok,
    raw,
    status,
)

# ---------------------------------------------------------------- the splits client


def _split(day: str, split_from: float = 1, split_to: float = 4, ticker: str = "AAPL") -> dict:
    return {"execution_date": day, "id": f"E{day}", "split_from": split_from,
            "split_to": split_to, "ticker": ticker}  # fmt: skip


def _page(results: list[dict] | None, next_url: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": "OK", "request_id": "r1"}
    if results is not None:
        body["results"] = results
    if next_url:
        body["next_url"] = next_url
    return body


def _client(script: Script) -> tuple[PolygonReferenceClient, CountingLimiter]:
    limiter = CountingLimiter()
    client = PolygonReferenceClient(
        BASE + "/", KEY, limiter, fake_clock(), transport=script.transport, backoff_base_s=0.01
    )
    return client, limiter


def test_client_follows_every_page_with_the_key_in_the_header_only() -> None:
    script = Script(
        ok(_page([_split("2020-08-31")], f"{BASE}/v3/reference/splits?cursor=abc")),
        ok(_page([_split("2014-06-09", 1, 7)])),
    )
    client, limiter = _client(script)
    stats = RequestStats()
    found = client.fetch_splits("AAPL", stats, since=date(2010, 1, 1))
    assert found == [
        SplitEvent("AAPL", date(2014, 6, 9), 1.0, 7.0),
        SplitEvent("AAPL", date(2020, 8, 31), 1.0, 4.0),
    ]
    assert found[1].ratio == 4
    assert stats.requests == limiter.calls == 2
    first, second = script.requests
    assert first.url.path == "/v3/reference/splits"
    assert dict(first.url.params) == {
        "ticker": "AAPL",
        "order": "asc",
        "sort": "execution_date",
        "limit": "1000",
        "execution_date.gte": "2010-01-01",
    }
    assert str(second.url) == f"{BASE}/v3/reference/splits?cursor=abc"
    for request in script.requests:
        assert KEY not in str(request.url)
        assert request.headers["authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize("body", [_page([]), _page(None)])
def test_client_no_splits(body: dict[str, Any]) -> None:
    client, _ = _client(Script(ok(body)))
    assert client.fetch_splits("GENR", RequestStats()) == []


@pytest.mark.parametrize(
    "response",
    [
        ok({"status": "ERROR", "error": "nope"}),
        ok(["not", "an", "object"]),
        ok({"status": "OK", "results": {"a": 1}}),
        ok(_page([{"execution_date": "2020-08-31", "ticker": "AAPL", "split_from": 1}])),
        ok(_page([_split("2020-08-31", 0, 4)])),
        ok(_page([_split("31/08/2020")])),
        ok(_page([_split("2020-08-31", True, 4)])),
        ok(_page([_split("2020-08-31", ticker="MSFT")])),
        ok(_page([], "https://evil.example/v3/reference/splits?cursor=x")),
    ],
)
def test_client_malformed_payloads(response: httpx.Response) -> None:
    client, _ = _client(Script(response))
    with pytest.raises(errors.ProviderError) as caught:
        client.fetch_splits("AAPL", RequestStats())
    assert caught.value.code == errors.MALFORMED_RESPONSE
    assert KEY not in str(caught.value)


def test_client_retries_then_reports_codes() -> None:
    client, limiter = _client(Script(status(503), ok(_page([_split("2020-08-31")]))))
    stats = RequestStats()
    assert len(client.fetch_splits("AAPL", stats)) == 1
    assert stats.requests == limiter.calls == 2 and stats.retries == 1
    client, _ = _client(Script(raw('{"status": "OK", "resu')))
    with pytest.raises(errors.ProviderError) as caught:
        client.fetch_splits("AAPL", RequestStats())
    assert caught.value.code == errors.MALFORMED_RESPONSE
    client, _ = _client(Script(status(401)))
    with pytest.raises(errors.ProviderError) as caught:
        client.fetch_splits("AAPL", RequestStats())
    assert caught.value.code == errors.AUTH_FAILED


# ---------------------------------------------------------------- the sensor, end to end

SYMBOL = "SPLT"  # generated bars, used by no other test
FIRST, LAST = date(2025, 11, 3), date(2025, 11, 21)
SPLIT_DAY = date(2025, 11, 12)
DAY_AFTER = "2026-03-21T12:00:00-04:00"  # SWIFTBOLT_NOW is 2026-03-20 12:00 ET in tests


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def clean(conn: psycopg.Connection, emulator: str) -> Iterator[None]:
    def wipe() -> None:
        conn.execute("TRUNCATE corporate_actions, corporate_action_checks")
        conn.commit()
        httpx.delete(f"{emulator}/_emulator/splits", params={"ticker": SYMBOL}).raise_for_status()

    wipe()
    yield
    conn.rollback()
    wipe()


def _evaluate(instance: dg.DagsterInstance, env: dict[str, str]):
    warehouse = WarehouseResource(database_url=env["DATABASE_URL"])
    polygon = PolygonResource(
        api_key=EMULATOR_KEY,
        base_url=env["POLYGON_BASE_URL"],
        warehouse=warehouse,
        backoff_base_s=0.01,
    )
    pipeline = PipelineSettings.from_settings(Settings.from_env())
    with dg.build_sensor_context(
        instance=instance,
        resources={"warehouse": warehouse, "polygon": polygon, "pipeline": pipeline},
    ) as context:
        return corporate_actions_sensor(context)


def _split_requests(emulator: str) -> int:
    log = httpx.get(f"{emulator}/_emulator/stats").json()["log"]
    return sum(1 for entry in log if entry["path"] == "/v3/reference/splits")


def _stored(conn: psycopg.Connection, timeframe: Timeframe = Timeframe.M15) -> pl.DataFrame:
    row = conn.execute("SELECT id FROM symbols WHERE ticker = %s", (SYMBOL,)).fetchone()
    assert row is not None
    return bar_store.read_bars(conn, row[0], timeframe, FIRST, LAST)


def _max_abs(diff: pl.Series) -> float:
    value = diff.abs().max()
    assert isinstance(value, float)
    return value


def _day() -> pl.Expr:
    return pl.col("ts").dt.convert_time_zone(str(calendar.EXCHANGE_TZ)).dt.date()


def test_a_new_split_refetches_the_history_before_it_once(
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    emulator: str,
    instance: dg.DagsterInstance,
    clean: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    watchlist.add(conn, [SYMBOL])
    instance.add_dynamic_partitions("symbols", [SYMBOL])
    days = calendar.sessions_between(FIRST, LAST)
    outcome = _run(SYMBOL, days, instance, selection=["m15_bars", "h1_bars", "h4_bars"])
    assert outcome.success, outcome.error
    before = _stored(conn)
    conn.commit()
    assert before.height == len(days) * 26

    # The daily check: no split yet, one request.
    httpx.post(f"{emulator}/_emulator/reset").raise_for_status()
    result = _evaluate(instance, pipeline_env)
    assert isinstance(result, dg.SkipReason)
    assert "1 ok" in (result.skip_message or "")
    assert _split_requests(emulator) == 1

    # The split is announced; the same day, the symbol is not checked again.
    httpx.post(
        f"{emulator}/_emulator/splits",
        json={"ticker": SYMBOL, "execution_date": SPLIT_DAY.isoformat(),
              "split_from": 1, "split_to": 4},
    ).raise_for_status()  # fmt: skip
    assert isinstance(_evaluate(instance, pipeline_env), dg.SkipReason)
    assert _split_requests(emulator) == 1

    # A day later: the split is found; one run re-fetches the range before it, another the
    # official daily bars of the daily depth's years up to the split's.
    monkeypatch.setenv("SWIFTBOLT_NOW", DAY_AFTER)
    result = _evaluate(instance, pipeline_env)
    assert _split_requests(emulator) == 2
    assert isinstance(result, dg.SensorResult)
    request, daily = result.run_requests or []
    assert daily.job_name == "daily_job"
    assert daily.tags["dagster/asset_partition_range_start"] == f"{SYMBOL}|2021"
    assert daily.tags["dagster/asset_partition_range_end"] == f"{SYMBOL}|{SPLIT_DAY.year}"
    assert daily.tags["swiftbolt/trigger"] == "split"
    assert request.job_name in (None, BARS_JOB)
    assert request.tags["dagster/asset_partition_range_start"] == f"{FIRST}|{SYMBOL}"
    assert request.tags["dagster/asset_partition_range_end"] == f"2025-11-11|{SYMBOL}"
    assert request.tags["swiftbolt/trigger"] == "split"
    assert request.tags["swiftbolt/symbol"] == SYMBOL
    assert request.tags["swiftbolt/splits"] == SPLIT_DAY.isoformat()
    assert not result.dynamic_partitions_requests
    (split,) = ca_store.splits(conn, SYMBOL)
    assert split.refetch_requested_at is not None and split.settled_at is None
    conn.commit()

    # Not requested again within a day...
    assert isinstance(_evaluate(instance, pipeline_env), dg.SkipReason)
    # ...and never while a run over that range is queued or running.
    conn.execute("UPDATE corporate_actions SET refetch_requested_at = NULL")
    conn.commit()
    queued = dg.DagsterRun(
        job_name=BARS_JOB,
        run_id=str(uuid.uuid4()),
        status=dg.DagsterRunStatus.NOT_STARTED,
        tags=dict(request.tags),
    )
    instance.add_run(queued)
    assert isinstance(_evaluate(instance, pipeline_env), dg.SkipReason)
    instance.delete_run(queued.run_id)

    # Execute the requested range (same partitions) in process.
    refetch_days = calendar.sessions_between(FIRST, date(2025, 11, 11))
    outcome = _run(SYMBOL, refetch_days, instance, selection=["m15_bars", "h1_bars", "h4_bars"])
    assert outcome.success, outcome.error
    assert all(check.passed for check in outcome.checks), outcome.checks
    after = _stored(conn)
    assert after["ts"].to_list() == before["ts"].to_list()
    old = before.filter(_day() < SPLIT_DAY)
    new = after.filter(_day() < SPLIT_DAY)
    assert old.height == new.height == len(refetch_days) * 26
    for column in ("open", "high", "low", "close"):
        assert _max_abs(new[column] - old[column] / 4) < 1e-9, column
    assert (new["volume"] == old["volume"] * 4).all()
    assert _max_abs(new["vwap"] - old["vwap"] / 4) < 2e-4
    # On and after the execution date: untouched.
    assert after.filter(_day() >= SPLIT_DAY).equals(before.filter(_day() >= SPLIT_DAY))
    # Derived bars follow: h4 before the split is adjusted too (a day's highest h4 high).
    h4 = _stored(conn, Timeframe.H4).filter(_day() < SPLIT_DAY)
    assert h4.group_by(_day().alias("day")).agg(pl.col("high").max()).sort("day")[
        "high"
    ].to_list() == [
        pytest.approx(h)
        for h in new.group_by(_day().alias("day")).agg(pl.col("high").max()).sort("day")["high"]
    ]
    conn.commit()

    # Known split, nothing stale: the next evaluation requests nothing and settles it.
    result = _evaluate(instance, pipeline_env)
    assert isinstance(result, dg.SkipReason)
    assert _split_requests(emulator) == 2
    (split,) = ca_store.splits(conn, SYMBOL)
    assert split.settled_at is not None
    # ...and a day later the check finds the same split: still nothing to do.
    monkeypatch.setenv("SWIFTBOLT_NOW", "2026-03-23T12:00:00-04:00")
    assert isinstance(_evaluate(instance, pipeline_env), dg.SkipReason)
    assert _split_requests(emulator) == 3


def test_split_checks_defer_when_the_budget_is_busy(
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    emulator: str,
    instance: dg.DagsterInstance,
    clean: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    watchlist.add(conn, [SYMBOL, "SPLU"])
    conn.execute(
        """UPDATE rate_buckets SET capacity = 1, refill_per_min = 0.001, tokens = 0,
                  updated_at = clock_timestamp() WHERE provider = 'polygon'"""
    )
    conn.commit()
    monkeypatch.setattr(ca_ingest, "TOKEN_WAIT_S", 0.2)
    httpx.post(f"{emulator}/_emulator/reset").raise_for_status()
    result = _evaluate(instance, pipeline_env)
    assert isinstance(result, dg.SkipReason)
    assert "2 deferred" in (result.skip_message or "")
    assert _split_requests(emulator) == 0
    # Nothing was learned, so both stay due.
    assert len(ca_store.due_for_check(conn, Settings.from_env().now(), limit=5)) == 2


def test_a_failed_check_is_retried_after_an_hour_not_a_day(
    pipeline_env: dict[str, str],
    conn: psycopg.Connection,
    emulator: str,
    instance: dg.DagsterInstance,
    clean: None,
) -> None:
    watchlist.add(conn, [SYMBOL])
    httpx.post(f"{emulator}/_emulator/reset").raise_for_status()
    httpx.post(
        f"{emulator}/_emulator/faults",
        json={"route": "polygon", "kind": "malformed", "count": 2},
    ).raise_for_status()
    try:
        result = _evaluate(instance, pipeline_env)
    finally:
        httpx.post(f"{emulator}/_emulator/reset").raise_for_status()
    assert isinstance(result, dg.SkipReason)
    assert "1 failed" in (result.skip_message or "")
    row = conn.execute(
        "SELECT status, error_code FROM corporate_action_checks WHERE ticker = %s", (SYMBOL,)
    ).fetchone()
    assert row == ("failed", errors.MALFORMED_RESPONSE)
