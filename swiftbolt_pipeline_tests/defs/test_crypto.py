"""Crypto pairs end to end through Dagster: `watch add X:BTCUSD`, the watchlist sensor puts it
in the crypto partitions (not the stock ones), the crypto gap sensor requests one backfill for
the missing UTC days (a weekend, Christmas and New Year's Day included), and the run stores
exactly what the emulator serves. Expected bars are recomputed here from the emulator's own
1-minute bars with plain Python, not with the pipeline's resampler."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import httpx
import psycopg
import pytest
from click.testing import CliRunner

from swiftbolt_pipeline.cli.main import cli
from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core.crypto_calendar import CRYPTO
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.defs.assets.crypto import check_crypto_m15
from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.defs.checks import check_derived
from swiftbolt_pipeline.defs.crypto import (
    CRYPTO_BARS_JOB,
    crypto_coverage_gap_sensor,
    crypto_today_schedule,
)
from swiftbolt_pipeline.defs.resources import WarehouseResource
from swiftbolt_pipeline.defs.sensors import coverage_gap_sensor, watchlist_sensor
from swiftbolt_pipeline.defs.settings import PipelineSettings
from swiftbolt_pipeline.names import range_tags
from swiftbolt_pipeline.services.launch import as_single_run
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline_tests.conftest import EMULATOR_KEY

NOW = "2026-01-02T12:00:00+00:00"
PAIR = "X:BTCUSD"
# A 10-day window ending today (UTC): 2025-12-23 .. 2026-01-02, eleven days, among them the
# weekend of Dec 27-28, Christmas and New Year's Day (no NYSE session on any of those).
DAYS = [date(2025, 12, 23) + timedelta(days=n) for n in range(11)]


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def crypto_env(
    pipeline_env: dict[str, str], emulator: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """The pipeline's and the emulator's clocks on the same instant."""
    monkeypatch.setenv("SWIFTBOLT_NOW", NOW)
    httpx.post(f"{emulator}/_emulator/reset").raise_for_status()
    httpx.put(f"{emulator}/_emulator/config", json={"now": NOW}).raise_for_status()
    yield {**pipeline_env, "SWIFTBOLT_NOW": NOW}
    httpx.put(f"{emulator}/_emulator/config", json={"now": None}).raise_for_status()


def _evaluate(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, db_url: str) -> Any:
    with dg.build_sensor_context(
        instance=instance,
        resources={
            "warehouse": WarehouseResource(database_url=db_url),
            "pipeline": PipelineSettings.from_settings(Settings.from_env()),
        },
        definitions=build_definitions(Settings.from_env()),
    ) as context:
        return sensor(context)


def _minute_bars(emulator: str) -> list[dict[str, Any]]:
    """The emulator's base 1-minute bars of the pair over the window (every page)."""
    start = int(datetime(2025, 12, 23, tzinfo=UTC).timestamp() * 1000)
    end = int(datetime(2026, 1, 3, tzinfo=UTC).timestamp() * 1000) - 1
    url: str | None = f"{emulator}/v2/aggs/ticker/{PAIR}/range/1/minute/{start}/{end}"
    params: dict[str, str] | None = {"limit": "50000", "sort": "asc"}
    bars: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {EMULATOR_KEY}"}
    while url:
        payload = httpx.get(url, params=params, headers=headers).raise_for_status().json()
        bars += payload.get("results", [])
        url, params = payload.get("next_url"), None
    return bars


def _roll_up(bars: list[dict[str, Any]], width_ms: int) -> dict[int, tuple]:
    """Bucket start (ms, anchored on the epoch, so on UTC midnight) -> (o, h, l, c, v, n)."""
    out: dict[int, list] = {}
    for bar in sorted(bars, key=lambda b: b["t"]):
        key = bar["t"] // width_ms * width_ms
        if key not in out:
            out[key] = [bar["o"], bar["h"], bar["l"], bar["c"], bar["v"], bar["n"]]
        else:
            agg = out[key]
            agg[1] = max(agg[1], bar["h"])
            agg[2] = min(agg[2], bar["l"])
            agg[3] = bar["c"]
            agg[4] += bar["v"]
            agg[5] += bar["n"]
    return {k: tuple(v) for k, v in out.items()}


def _stored(conn: psycopg.Connection, timeframe: str, pair: str = PAIR) -> dict[int, tuple]:
    rows = conn.execute(
        """SELECT b.ts, b.open, b.high, b.low, b.close, b.volume, b.trade_count
           FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
           WHERE s.ticker = %s AND b.timeframe = %s ORDER BY b.ts""",
        (pair, timeframe),
    ).fetchall()
    conn.commit()
    return {int(r[0].timestamp() * 1000): tuple(r[1:]) for r in rows}


def test_watch_add_then_gap_sensor_fills_the_crypto_window_around_the_clock(
    crypto_env: dict[str, str], conn: psycopg.Connection, instance: dg.DagsterInstance,
    emulator: str,
) -> None:  # fmt: skip
    db_url = crypto_env["DATABASE_URL"]
    added = CliRunner().invoke(cli, ["watch", "add", "x:btcusd", "--window-days", "10"])
    assert added.exit_code == 0, added.output

    # The watchlist sensor registers the pair among the crypto partitions only.
    registered = _evaluate(watchlist_sensor, instance, db_url)
    assert isinstance(registered, dg.SensorResult)
    requests = registered.dynamic_partitions_requests or []
    assert [(r.partitions_def_name, list(r.partition_keys)) for r in requests] == [
        ("crypto_symbols", [PAIR])
    ]
    instance.add_dynamic_partitions("crypto_symbols", [PAIR])
    # The stock gap sensor leaves the pair alone.
    assert isinstance(_evaluate(coverage_gap_sensor, instance, db_url), dg.SkipReason)

    tick = _evaluate(crypto_coverage_gap_sensor, instance, db_url)
    assert isinstance(tick, dg.SensorResult)
    (request,) = tick.run_requests or []
    assert request.asset_graph_subset is not None
    keys = {str(k) for _, k in request.asset_graph_subset.iterate_asset_partitions()}
    assert keys == {f"{d.isoformat()}|{PAIR}" for d in DAYS}  # every UTC day, one backfill
    run = as_single_run(request)
    job = build_definitions(Settings.from_env()).resolve_job_def(CRYPTO_BARS_JOB)
    result = job.execute_in_process(instance=instance, tags=run.tags, raise_on_error=False)
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations), [
        (e.asset_key, e.check_name) for e in evaluations if not e.passed
    ]

    minutes = _minute_bars(emulator)
    assert {datetime.fromtimestamp(b["t"] / 1000, UTC).date() for b in minutes} == set(DAYS)
    expected_m15 = _roll_up(minutes, 15 * 60_000)
    assert _stored(conn, "m15") == expected_m15
    h4 = _stored(conn, "h4")
    assert h4 == _roll_up(minutes, 4 * 3_600_000)
    assert {datetime.fromtimestamp(t / 1000, UTC).hour for t in h4} == {0, 4, 8, 12, 20, 16}
    assert all(datetime.fromtimestamp(t / 1000, UTC).minute == 0 for t in h4)
    d1 = _stored(conn, "d1")
    assert [datetime.fromtimestamp(t / 1000, UTC) for t in d1] == [
        datetime(d.year, d.month, d.day, tzinfo=UTC) for d in DAYS
    ]
    assert d1 == _roll_up(minutes, 86_400_000)
    # Today's UTC day is provisional, every earlier one final.
    flags = conn.execute(
        """SELECT (b.ts AT TIME ZONE 'UTC')::date, bool_and(b.is_intraday)
           FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
           WHERE s.ticker = %s AND b.timeframe = 'm15' GROUP BY 1 ORDER BY 1""",
        (PAIR,),
    ).fetchall()
    assert flags == [(d, d == DAYS[-1]) for d in DAYS]

    # Complete now: the next tick requests nothing.
    assert isinstance(_evaluate(crypto_coverage_gap_sensor, instance, db_url), dg.SkipReason)


@pytest.mark.parametrize("ticker", ["X:", "X:BTC-USD!", "X:BTC", "X:" + "A" * 13 + "USD"])
def test_malformed_crypto_tickers_are_refused_and_change_nothing(
    pipeline_env: dict[str, str], conn: psycopg.Connection, ticker: str
) -> None:
    before = conn.execute("SELECT count(*) FROM symbols").fetchone()
    conn.commit()
    outcome = CliRunner().invoke(cli, ["watch", "add", ticker])
    assert outcome.exit_code != 0
    assert repr(ticker) in outcome.output
    assert "X:BTCUSD" in outcome.output  # the message shows the expected form
    assert conn.execute("SELECT count(*) FROM symbols").fetchone() == before


def test_cli_backfill_and_coverage_of_a_pair_over_utc_days(
    crypto_env: dict[str, str], conn: psycopg.Connection, emulator: str
) -> None:
    # Christmas Eve to the Sunday after: a US holiday and a weekend, all UTC days of the pair.
    ran = CliRunner().invoke(
        cli,
        ["backfill", "--symbols", "x:btcusd", "--start", "2025-12-24", "--end", "2025-12-28",
         "--timeframes", "m15,h4"],
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    minutes = [
        b for b in _minute_bars(emulator)
        if date(2025, 12, 24) <= datetime.fromtimestamp(b["t"] / 1000, UTC).date()
        <= date(2025, 12, 28)
    ]  # fmt: skip
    assert _stored(conn, "m15") == _roll_up(minutes, 15 * 60_000)
    assert _stored(conn, "h4") == _roll_up(minutes, 4 * 3_600_000)
    assert _stored(conn, "h1") == {}  # not asked for

    shown = CliRunner().invoke(
        cli, ["coverage", "X:BTCUSD", "--timeframe", "h4", "--window-days", "10", "--json"]
    )
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.output)
    assert report["symbol"] == "X:BTCUSD" and report["status"] == "gaps_detected"
    assert report["backfill_progress"]["total_slices"] == 11  # every UTC day of the window
    assert report["backfill_progress"]["completed_slices"] == 5
    assert report["backfill_progress"]["bars_written"] == 5 * 6
    assert report["gaps"] == [
        {"start": "2025-12-23", "end": "2025-12-23", "sessions": 1},
        {"start": "2025-12-29", "end": "2026-01-02", "sessions": 5},
    ]


def test_alpaca_serves_the_same_pair_as_btc_slash_usd(
    crypto_env: dict[str, str], conn: psycopg.Connection, emulator: str
) -> None:
    ran = CliRunner().invoke(
        cli,
        ["backfill", "--symbols", "X:BTCUSD", "--start", "2026-01-01", "--end", "2026-01-01",
         "--timeframes", "m15", "--provider", "alpaca"],
    )  # fmt: skip
    assert ran.exit_code == 0, ran.output
    requests = httpx.get(f"{emulator}/_emulator/requests").raise_for_status().json()
    assert requests.get("alpaca") == {"BTC/USD": 1}
    minutes = [
        b for b in _minute_bars(emulator)
        if datetime.fromtimestamp(b["t"] / 1000, UTC).date() == date(2026, 1, 1)
    ]  # fmt: skip
    assert _stored(conn, "m15") == _roll_up(minutes, 15 * 60_000)
    providers = conn.execute("SELECT DISTINCT provider FROM ohlc_bars_v2").fetchall()
    assert providers == [("alpaca",)]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        ("2026-01-01T00:10:00+00:00", None),  # New Year's Day: its first bar is not complete
        ("2026-01-01T00:15:00+00:00", "2026-01-01"),
        ("2026-01-03T18:45:00+00:00", "2026-01-03"),  # a Saturday
    ],
)
def test_today_schedule_refreshes_the_utc_day_around_the_clock(
    pipeline_env: dict[str, str],
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
    now: str,
    expected: str | None,
) -> None:
    monkeypatch.setenv("SWIFTBOLT_NOW", now)
    instance.add_dynamic_partitions("crypto_symbols", ["X:BTCUSD", "X:ETHUSD"])
    with dg.build_schedule_context(
        instance=instance,
        resources={"pipeline": PipelineSettings.from_settings(Settings.from_env())},
    ) as context:
        outcome = crypto_today_schedule(context)
    if expected is None:
        assert isinstance(outcome, dg.SkipReason)
        return
    assert isinstance(outcome, dg.RunRequest)
    assert outcome.tags["dagster/asset_partition_range_start"] == f"{expected}|X:BTCUSD"
    assert outcome.tags["dagster/asset_partition_range_end"] == f"{expected}|X:ETHUSD"


def _run_days(
    instance: dg.DagsterInstance, first: date, last: date, pair: str = PAIR
) -> dg.ExecuteInProcessResult:
    """A run of `crypto_bars_job` (m15 only) over the pair's UTC days `first`..`last`."""
    instance.add_dynamic_partitions("crypto_symbols", [pair])
    job = build_definitions(Settings.from_env()).resolve_job_def(CRYPTO_BARS_JOB)
    return job.execute_in_process(
        instance=instance,
        tags=range_tags(pair, pair, first, last),
        asset_selection=[dg.AssetKey("crypto_m15_bars")],
        raise_on_error=False,
    )


def test_forty_days_take_two_polygon_requests(
    crypto_env: dict[str, str],
    conn: psycopg.Connection,
    instance: dg.DagsterInstance,
    emulator: str,
) -> None:
    # 2025-11-20 .. 2025-12-29: 40 UTC days, at most 34 per request (50,000 base minutes).
    result = _run_days(instance, date(2025, 11, 20), date(2025, 12, 29))
    assert result.success
    requests = httpx.get(f"{emulator}/_emulator/requests").raise_for_status().json()
    assert requests["polygon"] == {PAIR: 2}
    ledger = conn.execute(
        """SELECT range_start, range_end, actual_cost, status FROM job_runs
           WHERE symbol = %s ORDER BY range_start""",
        (PAIR,),
    ).fetchall()
    conn.commit()
    assert ledger == [
        (date(2025, 11, 20), date(2025, 12, 23), 1, "success"),
        (date(2025, 12, 24), date(2025, 12, 29), 1, "success"),
    ]
    days = conn.execute(
        """SELECT count(DISTINCT (ts AT TIME ZONE 'UTC')::date) FROM ohlc_bars_v2
           WHERE timeframe = 'm15'"""
    ).fetchone()
    conn.commit()
    assert days == (40,)


def test_alpaca_takes_over_when_polygon_is_not_configured(
    crypto_env: dict[str, str],
    conn: psycopg.Connection,
    instance: dg.DagsterInstance,
    emulator: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POLYGON_API_KEY")
    monkeypatch.setenv("SWIFTBOLT_HISTORY_PROVIDERS", "polygon,alpaca")
    result = _run_days(instance, date(2025, 12, 25), date(2025, 12, 25))
    assert result.success
    requests = httpx.get(f"{emulator}/_emulator/requests").raise_for_status().json()
    assert "polygon" not in requests and requests["alpaca"] == {"BTC/USD": 1}
    (materialization,) = result.asset_materializations_for_node("crypto_m15_bars")
    assert materialization.metadata["provider"].value == "alpaca"
    stored = conn.execute(
        "SELECT provider, count(*) FROM ohlc_bars_v2 WHERE timeframe = 'm15' GROUP BY 1"
    ).fetchall()
    conn.commit()
    minutes = [
        b for b in _minute_bars(emulator)
        if datetime.fromtimestamp(b["t"] / 1000, UTC).date() == date(2025, 12, 25)
    ]  # fmt: skip
    assert stored == [("alpaca", len(_roll_up(minutes, 15 * 60_000)))]


@pytest.mark.parametrize(
    ("symbols", "start", "end", "says"),
    [
        ("X:BTCUSD,AAPL", "2025-12-24", "2025-12-26", "different calendars"),
        ("X:BTCUSD", "2026-01-02", "2026-01-03", "in the future (today is 2026-01-02)"),
        ("X:BTCUSD --timeframes m15,w1", "2025-12-24", "2025-12-26", "have no w1 bars"),
        ("X:BTC-USD!", "2025-12-24", "2025-12-26", "not a valid crypto pair"),
    ],
)
def test_bad_crypto_backfills_are_refused_and_change_nothing(
    crypto_env: dict[str, str], conn: psycopg.Connection, symbols: str, start: str, end: str,
    says: str,
) -> None:  # fmt: skip
    before = conn.execute("SELECT (SELECT count(*) FROM symbols), (SELECT count(*) FROM job_runs)")
    counts = before.fetchone()
    conn.commit()
    symbols, *more = symbols.split()
    ran = CliRunner().invoke(
        cli, ["backfill", "--symbols", symbols, "--start", start, "--end", end, *more]
    )
    assert ran.exit_code != 0
    assert says in " ".join(ran.output.split())
    after = conn.execute("SELECT (SELECT count(*) FROM symbols), (SELECT count(*) FROM job_runs)")
    assert after.fetchone() == counts


def test_an_unknown_pair_is_symbol_not_found_and_waits(
    crypto_env: dict[str, str],
    conn: psycopg.Connection,
    instance: dg.DagsterInstance,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    added = CliRunner().invoke(cli, ["watch", "add", "X:ZZNOPEUSD", "--window-days", "3"])
    assert added.exit_code == 0, added.output
    result = _run_days(instance, date(2025, 12, 30), date(2026, 1, 1), pair="X:ZZNOPEUSD")
    assert not result.success
    row = conn.execute(
        "SELECT not_found_streak, retry_after FROM symbols WHERE ticker = 'X:ZZNOPEUSD'"
    ).fetchone()
    failed = conn.execute(
        "SELECT count(*) FROM job_runs WHERE symbol = 'X:ZZNOPEUSD' AND status = 'success'"
    ).fetchone()
    conn.commit()
    assert row is not None and row[0] == 1
    assert row[1] == datetime(2026, 1, 2, 12, 10, tzinfo=UTC)  # now + the 10-minute cooldown
    assert failed == (1,)  # the request itself succeeded, with no bar
    assert not _stored(conn, "m15", "X:ZZNOPEUSD")
    # The gap sensor leaves it alone during the cooldown.
    skipped = _evaluate(crypto_coverage_gap_sensor, instance, crypto_env["DATABASE_URL"])
    assert isinstance(skipped, dg.SkipReason)
    # Nothing was confirmed empty (an unknown pair is no run of days without trades): after
    # the cooldown, one probe of the window's last day.
    confirmed = conn.execute(
        "SELECT count(*) FROM confirmed_sessions c JOIN symbols s ON s.id = c.symbol_id "
        "WHERE s.ticker = 'X:ZZNOPEUSD'"
    ).fetchone()
    conn.commit()
    assert confirmed == (0,)
    monkeypatch.setenv("SWIFTBOLT_NOW", "2026-01-02T12:11:00+00:00")
    probe = _evaluate(crypto_coverage_gap_sensor, instance, crypto_env["DATABASE_URL"])
    assert isinstance(probe, dg.SensorResult)
    (request,) = probe.run_requests or []
    assert request.asset_graph_subset is not None
    keys = {str(k) for _, k in request.asset_graph_subset.iterate_asset_partitions()}
    assert keys == {"2026-01-02|X:ZZNOPEUSD"}


def _insert(conn: psycopg.Connection, symbol_id: int, timeframe: str, rows: list[tuple]) -> None:
    for ts, o, h, low, c in rows:
        conn.execute(
            """INSERT INTO ohlc_bars_v2 (symbol_id, timeframe, ts, open, high, low, close,
                   volume, vwap, trade_count, provider, is_intraday)
               VALUES (%s, %s, %s, %s, %s, %s, %s, 1, NULL, 1, 'polygon', false)""",
            (symbol_id, timeframe, ts, o, h, low, c),
        )
    conn.commit()


def test_crypto_checks_catch_off_grid_bars_bad_ohlc_and_stale_derived_bars(
    pipeline_env: dict[str, str], conn: psycopg.Connection
) -> None:
    ids = watchlist.ensure(conn, [PAIR])
    day = date(2025, 12, 25)
    at = [datetime(2025, 12, 25, h, m, tzinfo=UTC) for h, m in ((0, 0), (0, 7), (4, 0))]
    # 00:07 is off the 15-minute grid; the 04:00 bar's high is below its close.
    _insert(conn, ids[PAIR], "m15", [(at[0], 10, 11, 9, 10), (at[1], 10, 11, 9, 10),
                                     (at[2], 10, 10, 9, 10.5)])  # fmt: skip
    counts, ohlc, duplicates = check_crypto_m15(conn, {PAIR: [day]}, ids, date(2026, 1, 2))
    assert not counts.passed and counts.severity == dg.AssetCheckSeverity.ERROR
    assert counts.metadata["off_grid_bars"].value == 1
    assert counts.metadata["thin_days"].value == 1  # three bars: far under half a day
    assert not ohlc.passed and ohlc.metadata["violations"].value == 1
    assert duplicates.passed
    # A stored h4 bar that no longer matches the m15 bars (its low is not theirs).
    _insert(conn, ids[PAIR], "h4", [(at[0], 10, 11, 8, 10)])
    _, consistent = check_derived(conn, Timeframe.H4, {PAIR: [day]}, ids, cal=CRYPTO)
    assert not consistent.passed and consistent.metadata["mismatched_buckets"].value == 2


def test_watchlist_sensor_keeps_stocks_and_pairs_in_their_own_partitions(
    pipeline_env: dict[str, str], conn: psycopg.Connection, instance: dg.DagsterInstance
) -> None:
    watchlist.add(conn, ["AAPL", "X:BTCUSD", "X:ETHUSD"])
    db_url = pipeline_env["DATABASE_URL"]
    result = _evaluate(watchlist_sensor, instance, db_url)
    assert isinstance(result, dg.SensorResult)
    assert sorted(
        (type(r).__name__, r.partitions_def_name, sorted(r.partition_keys))
        for r in result.dynamic_partitions_requests or []
    ) == [
        ("AddDynamicPartitionsRequest", "crypto_symbols", ["X:BTCUSD", "X:ETHUSD"]),
        ("AddDynamicPartitionsRequest", "symbols", ["AAPL"]),
    ]
    instance.add_dynamic_partitions("symbols", ["AAPL"])
    instance.add_dynamic_partitions("crypto_symbols", ["X:BTCUSD", "X:ETHUSD"])
    watchlist.remove(conn, ["X:ETHUSD"])
    result = _evaluate(watchlist_sensor, instance, db_url)
    assert isinstance(result, dg.SensorResult)
    (removal,) = result.dynamic_partitions_requests or []
    assert isinstance(removal, dg.DeleteDynamicPartitionsRequest)
    assert (removal.partitions_def_name, list(removal.partition_keys)) == (
        "crypto_symbols",
        ["X:ETHUSD"],
    )
