"""The opt-in 5-minute bars in the Dagster UI, in headless Chromium against the suite's shared
`swiftbolt dev`: the watched SPY is opted in with `swiftbolt watch add SPY --m5`, the m5 gap
sensor backfills its window, and the `m5_bars` asset (its own `m5` group, partitioned
`m5_symbols` x session) shows those sessions materialized.

Expected values come from outside the pipeline: the emulator's own 5-minute answer over HTTP
and the bars stored in PostgreSQL."""

from __future__ import annotations

import re
from datetime import date, datetime

import httpx
import psycopg
import pytest
from playwright.sync_api import Page, expect

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline_tests.browser.conftest import WATCH_WINDOW_DAYS, WATCHED, Shots, graphql
from swiftbolt_pipeline_tests.browser.test_dagster_ui import _wait_for
from swiftbolt_pipeline_tests.browser.test_dagster_ui_daily_crypto import (
    BACKFILLS,
    LOAD_MS,
    _counts,
    _from_log,
)
from swiftbolt_pipeline_tests.e2e.cli_runner import run_cli
from swiftbolt_pipeline_tests.e2e.test_cli_dev import DevServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

M5_GAP_SENSOR = "m5_gap_sensor"
BACKFILL_TIMEOUT_S = 240


def _m5_backfills(server: DevServer) -> list[dict]:
    results = graphql(server, BACKFILLS)["partitionBackfillsOrError"]["results"]
    return [
        b
        for b in results
        if {"key": "swiftbolt/symbol", "value": WATCHED} in b["tags"]
        and {"key": "swiftbolt/trigger", "value": M5_GAP_SENSOR} in b["tags"]
    ]


def _served_regular_m5(emulator: str, day: date) -> int:
    """The emulator's 5-minute bars of `day` inside the regular session, asked over HTTP."""
    response = httpx.get(
        f"{emulator}/v2/aggs/ticker/{WATCHED}/range/5/minute/{day}/{day}",
        params={"adjusted": "true", "sort": "asc", "limit": "50000", "apiKey": "any"},
        timeout=30,
    )
    response.raise_for_status()
    session = calendar.session(day)
    opens, closes = session.open.timestamp() * 1000, session.close.timestamp() * 1000
    return sum(opens <= bar["t"] < closes for bar in response.json().get("results", []))


def test_opted_in_symbol_shows_its_m5_sessions_materialized(
    page: Page, dagster_ui: DevServer, ui_env: dict[str, str], shots: Shots
) -> None:
    database_url = _from_log(dagster_ui, r"database: (postgresql://\S+)").replace(":***@", "@")
    emulator = _from_log(dagster_ui, r"bars from: built-in emulator at (http://\S+)")
    opted = run_cli("watch", "add", WATCHED, "--window-days", WATCH_WINDOW_DAYS, "--m5", env=ui_env)
    assert opted.returncode == 0, opted.stderr
    _wait_for(
        f"the m5 gap sensor's backfill of {WATCHED} to succeed",
        lambda: any(b["status"] == "COMPLETED_SUCCESS" for b in _m5_backfills(dagster_ui)),
        timeout=BACKFILL_TIMEOUT_S,
        every=2.0,
    )
    (backfill,) = [b for b in _m5_backfills(dagster_ui) if b["status"] == "COMPLETED_SUCCESS"]
    days = sorted(date.fromisoformat(key.split("|")[0]) for key in backfill["partitionNames"])
    assert days, backfill

    with psycopg.connect(database_url) as conn:
        stored = dict(
            conn.execute(
                """SELECT (b.ts AT TIME ZONE 'America/New_York')::date, count(*)
                   FROM ohlc_bars_v2 b JOIN symbols s ON s.id = b.symbol_id
                   WHERE s.ticker = %s AND b.timeframe = 'm5' GROUP BY 1""",
                (WATCHED,),
            ).fetchall()
        )
    today = datetime.fromisoformat(ui_env["SWIFTBOLT_NOW"]).date()
    for day in (d for d in days if d < today):
        assert stored.get(day) == _served_regular_m5(emulator, day), day

    page.goto(f"{dagster_ui.url}/assets/m5_bars?view=partitions")
    expect(page.get_by_text(re.compile(r"^Materialized \(\d+\)$"))).to_be_visible(timeout=LOAD_MS)
    counts = _counts(page)
    # Today's session too when the today schedule (real-time cron) fetched it meanwhile.
    assert counts["Materialized"] in {len(days), len({*days, today})}, counts
    assert (counts["Failed"], counts["Materializing"]) == (0, 0), counts
    shots.take(page, "m5-partitions")
