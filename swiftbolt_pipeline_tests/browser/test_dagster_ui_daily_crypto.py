"""The official daily bars and a crypto pair in the Dagster UI, in headless Chromium against the
suite's shared `swiftbolt dev` (SPY watched): the lineage d1 -> w1/mo1 and crypto m15 ->
h1/h4/d1, a d1 backfill of SPY x two years launched from the partition picker, the year
partitions and the official-vs-m15 check it shows, and X:BTCUSD added to the watchlist with its
UTC days backfilled by the crypto gap sensor.

Expected values come from outside the pipeline: NYSE sessions from exchange_calendars, the
emulator's generated crypto minutes and its request log, and the bars stored in PostgreSQL.
"""

from __future__ import annotations

import re
import subprocess
import time
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import LiteralString
from urllib.parse import quote

import exchange_calendars as xcals
import httpx
import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect

from swiftbolt_pipeline.emulator.crypto import crypto_day
from swiftbolt_pipeline_tests.browser.conftest import VIEWPORT, WATCHED, Shots, graphql
from swiftbolt_pipeline_tests.browser.test_dagster_ui import (
    CHECK_EXECUTIONS,
    RUNS,
    UNFINISHED_RUN,
    _metadata_value,
    _no_spinners,
    _wait_for,
)
from swiftbolt_pipeline_tests.conftest import TEST_HISTORY_START, TEST_NOW
from swiftbolt_pipeline_tests.e2e.cli_runner import run_cli
from swiftbolt_pipeline_tests.e2e.test_cli_dev import DevServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

NOW = datetime.fromisoformat(TEST_NOW)
TODAY = NOW.date()  # New York
DAILY_YEARS = 5  # SWIFTBOLT_DAILY_YEARS' default
DEPTH_START = TODAY.replace(year=TODAY.year - DAILY_YEARS)
YEARS = list(range(DEPTH_START.year, TODAY.year + 1))
UI_YEARS = YEARS[-2:]  # what the UI backfill re-fetches
PAIR = "X:BTCUSD"
PAIR_WINDOW_DAYS = 3
UTC_TODAY = NOW.astimezone(UTC).date()
PAIR_DAYS = [UTC_TODAY - timedelta(days=n) for n in range(PAIR_WINDOW_DAYS, -1, -1)]
PAIR_DAY_PARTITIONS = (UTC_TODAY - date.fromisoformat(TEST_HISTORY_START)).days + 1
CRYPTO_ASSETS = ("crypto_m15_bars", "crypto_h1_bars", "crypto_h4_bars", "crypto_d1_bars")
CRYPTO_M15_CHECKS = ("bar_counts_match_calendar", "no_duplicate_timestamps", "ohlc_sane")
OFFICIAL_VS_M15 = "official_d1_vs_derived_from_m15"
CRYPTO_GAP_SENSOR = "crypto_coverage_gap_sensor"
BACKFILL_TIMEOUT_S = 180
NEW_YORK = "America/New_York"
# Pages can take long to load when the machine is busy (Playwright's assertions wait 5 s).
LOAD_MS = 90_000

BACKFILL = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) { ... on PartitionBackfill {
    status numPartitions partitionNames runs(limit: 50) { runId status } } } }"""
BACKFILLS = """{ partitionBackfillsOrError { ... on PartitionBackfills { results {
    id status partitionNames tags { key value } } } } }"""


@dataclass(frozen=True)
class World:
    server: DevServer
    database_url: str
    emulator_url: str
    pair_added: Future[subprocess.CompletedProcess[str]]  # `swiftbolt watch add X:BTCUSD`

    def sql(self, query: LiteralString, *params: object) -> list[tuple]:
        with psycopg.connect(self.database_url) as conn:
            return conn.execute(query, params).fetchall()

    def emulator_log(self) -> list[dict]:
        response = httpx.get(f"{self.emulator_url}/_emulator/stats", timeout=10)
        response.raise_for_status()
        return response.json()["log"]


def _from_log(server: DevServer, pattern: str) -> str:
    match = re.search(pattern, server.output())
    assert match, f"{pattern!r} not in the `swiftbolt dev` output:\n{server.output()}"
    return match.group(1)


@pytest.fixture(scope="module")
def world(dagster_ui: DevServer, ui_env: dict[str, str]) -> Iterator[World]:
    """The shared server, its embedded database and built-in emulator (as its start-up lines
    name them), with X:BTCUSD put on the watchlist the way a user does it."""
    # The embedded server trusts local connections; the printed URL hides the password.
    database_url = _from_log(dagster_ui, r"database: (postgresql://\S+)").replace(":***@", "@")
    emulator_url = _from_log(dagster_ui, r"bars from: built-in emulator at (http://\S+)")
    # In the background: the CLI takes a while to start, the daily tests need no pair.
    with ThreadPoolExecutor(1) as pool:
        added = pool.submit(
            run_cli, "watch", "add", PAIR, "--window-days", str(PAIR_WINDOW_DAYS), env=ui_env
        )
        yield World(dagster_ui, database_url, emulator_url, added)


def _settle(server: DevServer) -> None:
    """No run queued or running, and none failed: what the pages show is then final."""

    def runs() -> list[dict]:
        return graphql(server, RUNS)["runsOrError"]["results"]

    _wait_for(
        "every run to finish",
        lambda: not any(r["status"] in UNFINISHED_RUN for r in runs()),
        timeout=BACKFILL_TIMEOUT_S,
        every=2.0,
    )
    failed = [r for r in runs() if r["status"] != "SUCCESS"]
    assert not failed, failed


def _xnys_sessions(first: date, last: date) -> list[date]:
    with warnings.catch_warnings():
        # exchange_calendars builds its calendar with a pandas call recent pandas warns about.
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        xnys = xcals.get_calendar("XNYS", start="2020-01-02")
    return [ts.date() for ts in xnys.sessions_in_range(first.isoformat(), last.isoformat())]


def _counts(page: Page) -> dict[str, int]:
    """The partition states' counts of the partitions page's filter checkboxes."""
    counts = {}
    for state in ("Materialized", "Failed", "Missing", "Materializing"):
        label = page.get_by_text(re.compile(rf"^{state} \(\d+\)$"))
        counts[state] = int(re.sub(r"\D", "", label.inner_text()))
    return counts


def test_lineage_shows_d1_feeding_w1_mo1_and_crypto_m15_feeding_h1_h4_d1(
    page: Page, world: World, shots: Shots
) -> None:
    # (source, what derives from it, what never does: stock and crypto bars never mix)
    lineages = (
        ("d1_bars", ("w1_bars", "mo1_bars"), ("m15_bars", "h1_bars", "crypto_d1_bars")),
        (CRYPTO_ASSETS[0], CRYPTO_ASSETS[1:], ("m15_bars", "h1_bars", "d1_bars")),
    )
    for source, derived, unrelated in lineages:
        page.goto(f"{world.server.url}/assets/{source}?view=lineage&lineageScope=downstream")
        for asset in (source, *derived):
            expect(page.get_by_text(asset, exact=True).first).to_be_visible(timeout=LOAD_MS)
        for asset in unrelated:
            expect(page.get_by_text(asset, exact=True)).to_have_count(0)
        _no_spinners(page)
        shots.take(page, f"lineage-{source}")
        for asset in derived:
            page.goto(f"{world.server.url}/assets/{asset}")
            expect(page.get_by_text("Upstream assets")).to_be_visible(timeout=LOAD_MS)
            expect(page.locator(f"a[href='/assets/{source}']")).to_be_visible(timeout=LOAD_MS)


@dataclass(frozen=True)
class UiBackfill:
    id: str
    run_id: str  # the single run it made
    launched: datetime


@pytest.fixture(scope="module")
def daily_ui_backfill(browser: Browser, world: World, shots: Shots) -> UiBackfill:
    """In the browser, once the daily gap sensor's backfill of SPY's years is done: open
    d1_bars, pick SPY and the last two years, launch, and follow the backfill's page until it
    succeeded."""
    # The sensors' backfills of the watched symbol first: its m15 window (which the check
    # compares with) and its daily years.
    for trigger in ("coverage_gap_sensor", "daily_gap_sensor"):
        _wait_for(
            f"the {trigger}'s backfill of {WATCHED} to succeed",
            lambda trigger=trigger: _succeeded(world.server, WATCHED, trigger),
            timeout=BACKFILL_TIMEOUT_S,
            every=2.0,
        )
    context = browser.new_context(viewport=VIEWPORT, timezone_id=NEW_YORK)
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        page.goto(f"{world.server.url}/assets/d1_bars?view=partitions")
        expect(page.get_by_text(f"{len(YEARS)} Partitions Selected")).to_be_visible(timeout=LOAD_MS)
        page.get_by_role("button", name="Materialize…").click()
        dialog = page.get_by_role("dialog")
        title = dialog.get_by_text("Launch runs to materialize d1_bars")
        expect(title).to_be_visible(timeout=LOAD_MS)
        # Two pickers, symbol then year; each choice leaves the next picker first in line.
        dialog.get_by_text("Select a partition or create one").first.click()
        page.get_by_role("menuitem").filter(has_text=WATCHED).click()
        title.click()  # close the menu
        dialog.get_by_text("Select a partition or create one").first.click()
        expect(page.get_by_role("menuitem")).to_have_count(1 + len(YEARS))  # + "Select all"
        for year in UI_YEARS:
            page.get_by_role("menuitem").filter(has_text=str(year)).click()
        title.click()
        expect(page.get_by_role("menuitem")).to_have_count(0)
        expect(dialog.get_by_text(f"{len(UI_YEARS)} partitions", exact=True)).to_be_visible(
            timeout=LOAD_MS
        )
        expect(dialog.get_by_text("Backfills all partitions in a single run.")).to_be_visible(
            timeout=LOAD_MS
        )
        shots.take(page, "daily-backfill-dialog")

        launched = datetime.now(UTC)
        dialog.get_by_role("button", name="Launch backfill").click()
        toast = page.get_by_text(re.compile(r"Created backfill \w+"))
        expect(toast).to_be_visible(timeout=LOAD_MS)
        match = re.search(r"Created backfill (\w+)", toast.inner_text())
        assert match, toast.inner_text()
        backfill_id = match.group(1)

        page.goto(f"{world.server.url}/runs/b/{backfill_id}")
        deadline = time.monotonic() + BACKFILL_TIMEOUT_S
        while not (
            page.get_by_text("100% completed").count()
            and page.get_by_text("Succeeded", exact=True).count()
        ):
            status = graphql(world.server, BACKFILL, {"id": backfill_id})
            assert status["partitionBackfillOrError"]["status"] not in {"FAILED", "CANCELED"}
            assert time.monotonic() < deadline, f"backfill {backfill_id} not done in time"
            page.wait_for_timeout(3000)
            page.reload()
            expect(page.get_by_text("Partitions targeted")).to_be_visible(timeout=LOAD_MS)
        shots.take(page, "daily-backfill-status")
    finally:
        context.close()
    backfill = graphql(world.server, BACKFILL, {"id": backfill_id})["partitionBackfillOrError"]
    runs = backfill["runs"]
    assert len(runs) == 1, backfill  # single-run backfill policy
    return UiBackfill(backfill_id, runs[0]["runId"], launched)


def test_daily_backfill_from_the_ui_fetches_two_years_in_one_request(
    world: World, daily_ui_backfill: UiBackfill
) -> None:
    backfill = graphql(world.server, BACKFILL, {"id": daily_ui_backfill.id})
    backfill = backfill["partitionBackfillOrError"]
    assert backfill["status"] == "COMPLETED_SUCCESS", backfill
    assert sorted(backfill["partitionNames"]) == [f"{WATCHED}|{y}" for y in UI_YEARS]
    assert [r["status"] for r in backfill["runs"]] == ["SUCCESS"]
    # The emulator's own log: the two years were one day-range request for SPY.
    day_ranges = [
        e
        for e in world.emulator_log()
        if e["path"].startswith(f"/v2/aggs/ticker/{WATCHED}/range/1/day/")
        and datetime.fromisoformat(e["at"]) >= daily_ui_backfill.launched
    ]
    assert len(day_ranges) == 1, day_ranges
    sessions = _xnys_sessions(date(UI_YEARS[0], 1, 1), TODAY - timedelta(days=1))
    assert day_ranges[0]["path"].endswith(f"/{sessions[0]}/{sessions[-1]}")


def test_daily_partitions_and_the_official_vs_m15_check(
    page: Page, world: World, daily_ui_backfill: UiBackfill, shots: Shots
) -> None:
    """After the sensor's and the UI's backfills: every year materialized, as many official
    bars as NYSE sessions, the roll-ups' periods, and the check over the m15 sessions."""
    sessions = _xnys_sessions(DEPTH_START, TODAY - timedelta(days=1))
    stored = dict(
        world.sql(
            """SELECT b.timeframe || ' ' || extract(year FROM b.ts AT TIME ZONE %s)::int,
                      count(*)
               FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
               WHERE s.ticker = %s AND b.timeframe IN ('d1', 'w1', 'mo1') GROUP BY 1""",
            NEW_YORK,
            WATCHED,
        )
    )
    for year in YEARS:
        assert stored.get(f"d1 {year}") == sum(1 for d in sessions if d.year == year), year
    # A week or month is rolled up when its first session is within the daily depth.
    everything = _xnys_sessions(DEPTH_START - timedelta(days=40), TODAY - timedelta(days=1))
    first_of: dict[tuple, date] = {}
    for day in everything:
        first_of.setdefault(("w1", day - timedelta(days=day.weekday())), day)
        first_of.setdefault(("mo1", day.year, day.month), day)
    for timeframe in ("w1", "mo1"):
        periods = [d for k, d in first_of.items() if k[0] == timeframe and d >= DEPTH_START]
        shown = sum(n for k, n in stored.items() if k.startswith(f"{timeframe} "))
        assert shown == len(periods), timeframe

    for asset in ("d1_bars", "w1_bars", "mo1_bars"):
        page.goto(f"{world.server.url}/assets/{asset}?view=partitions")
        expect(page.get_by_text(f"{len(YEARS)} Partitions Selected")).to_be_visible(timeout=LOAD_MS)
        expect(page.get_by_text(re.compile(r"^Materialized \(\d+\)$"))).to_be_visible(
            timeout=LOAD_MS
        )
        assert _counts(page) == {
            "Materialized": len(YEARS),
            "Failed": 0,
            "Missing": 0,
            "Materializing": 0,
        }, asset
        for year in YEARS:
            expect(page.get_by_text(str(year), exact=True).first).to_be_visible(timeout=LOAD_MS)
    shots.take(page, "daily-partitions")

    # The check of the latest d1 run (the UI's, over two years): every stored final m15
    # session of those years was compared with its official bar, none mismatched.
    ((m15_sessions,),) = world.sql(
        """SELECT count(DISTINCT (b.ts AT TIME ZONE %s)::date)
           FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
           WHERE s.ticker = %s AND b.timeframe = 'm15' AND NOT b.is_intraday
             AND (b.ts AT TIME ZONE %s)::date BETWEEN %s AND %s""",
        NEW_YORK,
        WATCHED,
        NEW_YORK,
        date(UI_YEARS[0], 1, 1),
        TODAY - timedelta(days=1),
    )
    assert m15_sessions >= 8  # the watched 10-day window's past sessions at least
    # The latest evaluation, the one the page shows, is the UI backfill's run.
    executions = graphql(
        world.server, CHECK_EXECUTIONS, {"key": {"path": ["d1_bars"]}, "name": OFFICIAL_VS_M15}
    )["assetCheckExecutions"]
    assert executions[0]["runId"] == daily_ui_backfill.run_id, executions
    assert all(e["evaluation"]["success"] for e in executions), executions
    page.goto(f"{world.server.url}/assets/d1_bars?view=checks&checkDetail={OFFICIAL_VS_M15}")
    expect(page.get_by_text("Official d1 vs derived from m15").first).to_be_visible(timeout=LOAD_MS)
    expect(page.get_by_text("Passed", exact=True).first).to_be_visible(timeout=LOAD_MS)
    expect(_metadata_value(page, "sessions_compared")).to_have_text(
        str(m15_sessions), timeout=LOAD_MS
    )
    expect(_metadata_value(page, "mismatched_sessions")).to_have_text("0", timeout=LOAD_MS)
    _no_spinners(page)
    shots.take(page, "daily-check")


def _backfills(server: DevServer, symbol: str, trigger: str) -> list[dict]:
    """The backfills `trigger` (a sensor) requested for `symbol`."""
    results = graphql(server, BACKFILLS)["partitionBackfillsOrError"]["results"]
    return [
        b
        for b in results
        if {"key": "swiftbolt/symbol", "value": symbol} in b["tags"]
        and {"key": "swiftbolt/trigger", "value": trigger} in b["tags"]
    ]


def _succeeded(server: DevServer, symbol: str, trigger: str) -> bool:
    return any(b["status"] == "COMPLETED_SUCCESS" for b in _backfills(server, symbol, trigger))


def test_added_crypto_pair_shows_its_utc_days_materialized(
    page: Page, world: World, shots: Shots
) -> None:
    added = world.pair_added.result(timeout=180)
    assert added.returncode == 0, added.stderr
    assert f"watching {PAIR}" in added.stdout + added.stderr
    _wait_for(
        f"the crypto gap sensor's backfill of {PAIR} to succeed",
        lambda: _succeeded(world.server, PAIR, CRYPTO_GAP_SENSOR),
        timeout=BACKFILL_TIMEOUT_S,
        every=2.0,
    )
    _settle(world.server)
    (backfill,) = _backfills(world.server, PAIR, CRYPTO_GAP_SENSOR)
    # The window's past days; today's too, unless the today schedule (every 15 minutes of
    # real time) fetched it first.
    backfilled = sorted(date.fromisoformat(k.split("|")[0]) for k in backfill["partitionNames"])
    assert backfilled in (PAIR_DAYS, PAIR_DAYS[:-1]), backfill

    # What is stored for the past days is every bucket the emulator has a minute in.
    stored = {
        (timeframe, day): n
        for timeframe, day, n in world.sql(
            """SELECT b.timeframe, (b.ts AT TIME ZONE 'UTC')::date, count(*)
               FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
               WHERE s.ticker = %s GROUP BY 1, 2""",
            PAIR,
        )
    }
    for day in PAIR_DAYS[:-1]:
        minutes = [int(t) for t in crypto_day(PAIR, day).t]
        for timeframe, width in (("m15", 15), ("h1", 60), ("h4", 240), ("d1", 1440)):
            buckets = len({t // (width * 60_000) for t in minutes})
            assert stored[(timeframe, day)] == buckets, (timeframe, day)
    assert stored[("m15", UTC_TODAY)] > 0  # today so far, provisional

    day_range = f"[{PAIR_DAYS[0]}...{PAIR_DAYS[-1]}]"
    for asset in CRYPTO_ASSETS:
        page.goto(f"{world.server.url}/assets/{asset}?view=partitions")
        expect(page.get_by_text(f"{PAIR_DAY_PARTITIONS} Partitions Selected")).to_be_visible(
            timeout=LOAD_MS
        )
        expect(page.get_by_text(re.compile(r"^Materialized \(\d+\)$"))).to_be_visible(
            timeout=LOAD_MS
        )
        assert _counts(page) == {
            "Materialized": len(PAIR_DAYS),
            "Failed": 0,
            "Missing": PAIR_DAY_PARTITIONS - len(PAIR_DAYS),
            "Materializing": 0,
        }, asset

    sample = f"{PAIR_DAYS[1]}|{PAIR}"
    page.goto(
        f"{world.server.url}/assets/{CRYPTO_ASSETS[0]}?view=partitions"
        f"&day_range={quote(day_range)}&partition={quote(sample)}"
    )
    expect(page.get_by_text(f"{len(PAIR_DAYS)} Partitions Selected")).to_be_visible(timeout=LOAD_MS)
    expect(page.get_by_text(f"Materialized ({len(PAIR_DAYS)})")).to_be_visible(timeout=LOAD_MS)
    expect(page.get_by_text("Missing (0)")).to_be_visible(timeout=LOAD_MS)
    expect(page.get_by_text(sample, exact=True).first).to_be_visible(timeout=LOAD_MS)
    in_run = sum(n for (tf, day), n in stored.items() if tf == "m15" and day in backfilled)
    expect(_metadata_value(page, "rows")).to_have_text(str(in_run), timeout=LOAD_MS)
    expect(_metadata_value(page, "days")).to_have_text(str(len(backfilled)), timeout=LOAD_MS)
    expect(_metadata_value(page, "provider")).to_have_text("polygon", timeout=LOAD_MS)
    _no_spinners(page)
    shots.take(page, "crypto-partitions")

    for check in CRYPTO_M15_CHECKS:
        executions = graphql(
            world.server, CHECK_EXECUTIONS, {"key": {"path": [CRYPTO_ASSETS[0]]}, "name": check}
        )["assetCheckExecutions"]
        outcomes = [e["evaluation"]["success"] for e in executions if e["evaluation"]]
        assert outcomes and all(outcomes), (check, executions)
