"""The UI's Backfills page, in headless Chromium against a real `swiftbolt dev`: a symbol
added to the watchlist while it runs is backfilled by the gap sensor as a Dagster backfill,
listed there as launched by the sensor, and seen through to success.

Its own `swiftbolt dev`, on the test database: the symbol it watches would change the
partition counts the other browser tests assert.
"""

from __future__ import annotations

import re
import shutil
import signal
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline_tests.browser.conftest import Shots, graphql
from swiftbolt_pipeline_tests.conftest import TEST_HISTORY_START, TEST_NOW
from swiftbolt_pipeline_tests.e2e.cli_runner import run_cli
from swiftbolt_pipeline_tests.e2e.test_cli_dev import STOP_TIMEOUT_S, DevServer, dev_server

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

SYMBOL = "QQQ"
WINDOW_DAYS = 5
TODAY = date(2026, 3, 20)  # the tests' pinned clock
BACKFILL_TIMEOUT_S = 180
BACKFILLS = """{ partitionBackfillsOrError { ... on PartitionBackfills { results {
    id status isAssetBackfill partitionNames tags { key value } runs { status } } } } }"""


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    """The test database (emptied), no provider keys (the built-in emulator), the pinned
    clock; nothing watched yet."""
    return {
        "DATABASE_URL": db_url,
        "SWIFTBOLT_HOME": str(tmp_path / "home"),
        "SWIFTBOLT_NOW": TEST_NOW,
        "SWIFTBOLT_HISTORY_START": TEST_HISTORY_START,
    }


@pytest.fixture
def server(env: dict[str, str], tmp_path: Path, chromium_path: Path) -> Iterator[DevServer]:
    with dev_server(env, tmp_path) as running:
        yield running
        running.proc.send_signal(signal.SIGTERM)
        try:
            running.proc.wait(STOP_TIMEOUT_S)
        finally:
            artifacts = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
            artifacts.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(running.log, artifacts / "swiftbolt-dev-backfills.log")


def _backfills_of(server: DevServer, symbol: str) -> list[dict]:
    """The gap sensor's backfills of `symbol` (the daily gap sensor requests its own)."""
    results = graphql(server, BACKFILLS)["partitionBackfillsOrError"]["results"]
    return [
        b
        for b in results
        if {"key": "swiftbolt/symbol", "value": symbol} in b["tags"]
        and {"key": "swiftbolt/trigger", "value": "coverage_gap_sensor"} in b["tags"]
    ]


def test_watch_add_shows_a_sensor_backfill_on_the_backfills_page(
    page: Page, server: DevServer, env: dict[str, str], shots: Shots
) -> None:
    added = run_cli("watch", "add", SYMBOL, "--window-days", str(WINDOW_DAYS), env=env)
    assert added.returncode == 0, added.stderr
    deadline = time.monotonic() + 90
    while not (backfills := _backfills_of(server, SYMBOL)):
        assert time.monotonic() < deadline, "the gap sensor requested no backfill in 90 s"
        time.sleep(2)
    (backfill,) = backfills
    backfill_id = backfill["id"]

    # Overview > Backfills: the runs feed's Backfills tab.
    page.goto(f"{server.url}/overview/backfills")
    expect(page).to_have_url(re.compile(r"/runs\?.*view=backfills"))
    link = page.locator(f"a[href^='/runs/b/{backfill_id}']")
    row = page.locator("[class*=rowGrid]").filter(has=link)
    expect(row).to_have_count(1)
    expect(row.get_by_text("Backfill", exact=True)).to_be_visible()
    expect(row.get_by_text("coverage_gap_sensor").first).to_be_visible()  # launched by
    shots.take(page, "backfills-page-requested")

    deadline = time.monotonic() + BACKFILL_TIMEOUT_S
    while not row.get_by_text("Success", exact=True).count():
        (backfill,) = _backfills_of(server, SYMBOL)
        # The API may say done before the loaded page does: reload until the row shows it.
        assert backfill["status"] in ("REQUESTED", "COMPLETED_SUCCESS"), backfill
        assert time.monotonic() < deadline, f"backfill {backfill_id} not done in time"
        page.wait_for_timeout(3000)
        page.reload()
        expect(row).to_have_count(1)
    shots.take(page, "backfills-page")

    # Cross-check with the API behind the page: the window's sessions, in one run.
    (backfill,) = _backfills_of(server, SYMBOL)
    sessions = calendar.sessions_between(date(2026, 3, 16), TODAY)
    assert len(sessions) == WINDOW_DAYS
    assert backfill["isAssetBackfill"] is True
    assert backfill["status"] == "COMPLETED_SUCCESS"
    assert sorted(backfill["partitionNames"]) == [f"{day}|{SYMBOL}" for day in sessions]
    assert backfill["runs"] == [{"status": "SUCCESS"}]

    # Its own page, one click away, says the same.
    link.first.click()  # the ID (the row's "View" button links there too)
    expect(page.get_by_text("Partitions targeted")).to_be_visible()
    expect(page.get_by_text("Succeeded", exact=True).first).to_be_visible()
    shots.take(page, "sensor-backfill-status")
