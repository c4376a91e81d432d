"""The Dagster web UI as users use it, in headless Chromium against a real `swiftbolt dev`:
the asset graph, a backfill launched from the partition picker, the sensors and schedules,
and a materialization's metadata and asset checks.

Run with `make test-browser` (or `.venv/bin/pytest -m browser swiftbolt_pipeline_tests/browser`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from swiftbolt_pipeline_tests.browser.conftest import (
    VIEWPORT,
    WATCHED,
    Shots,
    graphql,
)
from swiftbolt_pipeline_tests.e2e.test_cli_dev import DevServer

# The first test also pays for starting `swiftbolt dev` and the UI backfill.
pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]

# Session-partitioned m15 and what derives from it; the official daily bars (symbol x year)
# and what rolls up from them.
ASSETS = ("m15_bars", "h1_bars", "h4_bars")
DAILY_ASSETS = ("d1_bars", "w1_bars", "mo1_bars")
SENSORS = ("watchlist_sensor", "coverage_gap_sensor")
SCHEDULES = ("today_intraday_schedule", "finalize_previous_session_schedule")
M15_CHECKS = ("bar_counts_match_calendar", "no_duplicate_timestamps", "ohlc_sane")
AUTOMATIONS = [*(("sensors", n) for n in SENSORS), *(("schedules", n) for n in SCHEDULES)]
# Ten sessions of real data (Presidents' Day, 2026-02-16, follows), older than the
# watched 10-day window, so this backfill and the gap sensor's never touch the same partitions.
FIRST_DAY, LAST_DAY, SESSIONS = "2026-02-02", "2026-02-13", 10
DAY_RANGE = f"[{FIRST_DAY}...{LAST_DAY}]"
SAMPLE_PARTITION = f"2026-02-05|{WATCHED}"  # Dagster joins dimensions by name: day|symbol
BARS_PER_SESSION = 26
BACKFILL_TIMEOUT_S = 180
FAILED_BACKFILL = {"FAILED", "CANCELED", "CANCELING", "COMPLETED_FAILED"}

SYMBOL_PARTITIONS = """
{ assetNodeOrError(assetKey: {path: ["m15_bars"]}) {
    ... on AssetNode { partitionKeysByDimension { name partitionKeys } } } }"""
BACKFILL_STATUS = """
query($id: String!) { partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill { status numPartitions runs(limit: 50) { runId status } } } }"""
RUNS = """
{ runsOrError(limit: 100) { ... on Runs { results { runId status tags { key value } } } } }"""
RUN_FAILURES = """
query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {
    __typename ... on MessageEvent { message } ... on ErrorEvent { error { message } } } } } }"""
UNFINISHED_RUN = {"QUEUED", "NOT_STARTED", "STARTING", "STARTED", "MANAGED", "CANCELING"}
LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"
CHECK_EXECUTIONS = """
query($key: AssetKeyInput!, $name: String!) {
    assetCheckExecutions(assetKey: $key, checkName: $name, limit: 20) {
        runId status evaluation { success } } }"""
AUTOMATION_STATES = """
{ repositoriesOrError { ... on RepositoryConnection { nodes {
    sensors { name sensorState { status } }
    schedules { name scheduleState { status } } } } } }"""


@dataclass(frozen=True)
class Backfill:
    id: str
    run_id: str  # the single run it made
    took_s: float


def _wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(every)


def _reload_until(page: Page, what: str, check: Callable[[], bool], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        page.wait_for_load_state("networkidle")
        if check():
            return
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        page.wait_for_timeout(3000)
        page.reload()


def _symbol_partitions(server: DevServer) -> list[str]:
    node = graphql(server, SYMBOL_PARTITIONS)["assetNodeOrError"]
    dimensions = {d["name"]: d["partitionKeys"] for d in node["partitionKeysByDimension"]}
    return dimensions["symbol"]


def _no_spinners(page: Page) -> None:
    """Asset nodes, tables and tick lists show "Loading..." until their data arrives."""
    page.wait_for_load_state("networkidle")
    expect(page.get_by_text(re.compile(r"^Loading\b"))).to_have_count(0, timeout=30_000)


def _metadata_value(page: Page, key: str) -> Locator:
    """The value cell of the metadata table row whose key cell reads `key`."""
    row = page.locator("tr").filter(has=page.locator("td", has_text=re.compile(f"^{key}$")))
    return row.first.locator("td").nth(1)


@pytest.fixture(scope="module")
def ui_backfill(browser: Browser, dagster_ui: DevServer, shots: Shots) -> Backfill:
    """In the browser: open m15_bars, pick SPY and a 10-session range in the partition dialog,
    launch the backfill, and wait on the backfill's page until it succeeded."""
    _wait_for(
        f"the watchlist sensor to add {WATCHED} as a symbol partition",
        lambda: WATCHED in _symbol_partitions(dagster_ui),
        timeout=90,
    )
    context = browser.new_context(viewport=VIEWPORT, timezone_id="America/New_York")
    context.set_default_timeout(30_000)
    page = context.new_page()
    try:
        page.goto(f"{dagster_ui.url}/assets/m15_bars?view=partitions")
        expect(page.get_by_text("Partitions Selected")).to_be_visible()
        page.get_by_role("button", name="Materialize…").click()

        dialog = page.get_by_role("dialog")
        expect(dialog.get_by_text("Launch runs to materialize m15_bars")).to_be_visible()
        day_input = dialog.get_by_placeholder(re.compile(r"^ex: "))
        day_input.fill(DAY_RANGE)
        day_input.press("Enter")
        dialog.get_by_text("Select a partition or create one").click()
        # The menu lists "Add partition", "Select all (1)" and one item per symbol.
        page.get_by_role("menuitem").filter(has_text=WATCHED).click()
        dialog.get_by_text("Launch runs to materialize m15_bars").click()  # close the menu
        expect(page.get_by_role("menuitem")).to_have_count(0)
        expect(dialog.get_by_text(f"{SESSIONS} partitions", exact=True)).to_be_visible()
        expect(dialog.get_by_text("Backfills all partitions in a single run.")).to_be_visible()
        shots.take(page, "backfill-dialog", docs=True)

        began = time.monotonic()
        dialog.get_by_role("button", name="Launch backfill").click()
        toast = page.get_by_text(re.compile(r"Created backfill \w+"))
        expect(toast).to_be_visible()
        match = re.search(r"Created backfill (\w+)", toast.inner_text())
        assert match, toast.inner_text()
        backfill_id = match.group(1)

        # Poll the backfill's own page, as a user would, until it reports success.
        page.goto(f"{dagster_ui.url}/runs/b/{backfill_id}")
        deadline = time.monotonic() + BACKFILL_TIMEOUT_S
        while True:
            expect(page.get_by_text("Partitions targeted")).to_be_visible()
            if (
                page.get_by_text("100% completed").count()
                and page.get_by_text("Succeeded", exact=True).count()
            ):
                break
            status = graphql(dagster_ui, BACKFILL_STATUS, {"id": backfill_id})
            assert status["partitionBackfillOrError"]["status"] not in FAILED_BACKFILL, status
            assert time.monotonic() < deadline, f"backfill {backfill_id} not done in time"
            page.wait_for_timeout(3000)
            page.reload()
        took = time.monotonic() - began
        # Cross-check with the API behind the page.
        backfill = graphql(dagster_ui, BACKFILL_STATUS, {"id": backfill_id})
        backfill = backfill["partitionBackfillOrError"]
        assert backfill["status"] in {"COMPLETED", "COMPLETED_SUCCESS"}, backfill
        assert backfill["numPartitions"] == SESSIONS, backfill
        # Single-run backfill policy: ten sessions are one run, not ten.
        assert [run["status"] for run in backfill["runs"]] == ["SUCCESS"], backfill
        shots.take(page, "backfill-status", docs=True)
        print(f"UI backfill {backfill_id}: {SESSIONS} sessions materialized in {took:.1f} s")
        return Backfill(backfill_id, backfill["runs"][0]["runId"], took)
    except Exception:
        shots.take(page, "FAILED-ui_backfill")
        raise
    finally:
        context.close()


def _failure_story(server: DevServer, run_id: str) -> str:
    events = graphql(server, RUN_FAILURES, {"id": run_id})["logsForRun"]["events"]
    failed = [e for e in events if "Failure" in e["__typename"] or e.get("error")]
    return "; ".join(
        f"{e['__typename']}: {(e.get('error') or {}).get('message') or e.get('message')}"
        for e in failed
    )


@pytest.fixture(scope="module")
def settled(dagster_ui: DevServer, ui_backfill: Backfill) -> list[dict]:
    """Every run the instance made so far (the UI backfill's and the sensors'), once none is
    queued or running, all succeeded: check statuses shown by the UI are then final."""

    def runs() -> list[dict]:
        return graphql(dagster_ui, RUNS)["runsOrError"]["results"]

    _wait_for(
        "every run to finish",
        lambda: not any(r["status"] in UNFINISHED_RUN for r in runs()),
        timeout=BACKFILL_TIMEOUT_S,
        every=2.0,
    )
    finished = runs()
    failed = {r["runId"]: r for r in finished if r["status"] != "SUCCESS"}
    assert not failed, "\n".join(
        f"run {run_id} {r['status']} tags={r['tags']}: {_failure_story(dagster_ui, run_id)}"
        for run_id, r in failed.items()
    )
    return finished


def test_asset_graph_shows_m15_feeding_h1_h4_and_d1_feeding_w1_mo1(
    page: Page, dagster_ui: DevServer, settled: list[dict], shots: Shots
) -> None:
    # Several groups (the watchlist's `bars`, `universe`, `crypto`): the global lineage shows
    # them collapsed, so open the `bars` group's own lineage.
    entries = graphql(dagster_ui, LOCATIONS)["workspaceOrError"]["locationEntries"]
    (location,) = [e["name"] for e in entries]
    page.goto(f"{dagster_ui.url}/locations/__repository__@{location}/asset-groups/bars")
    for asset in ASSETS + DAILY_ASSETS:
        expect(page.get_by_text(asset, exact=True).first).to_be_visible()
    # Every node's health loaded, with data: the gap sensor's run (the watched 10-day window)
    # evaluated every check of h1/h4. m15_bars shows all passed too unless the UI backfill
    # (m15 only) finished last: then Dagster shows its checks "Not evaluated" (see the checks
    # test), so at least the two derived nodes must show all passed.
    all_passed = page.get_by_text(re.compile(r"^(\d+) / \1 Passed$"))
    _reload_until(
        page,
        "every derived asset node to show its checks passed",
        lambda: all_passed.count() >= len(ASSETS) - 1,
    )
    expect(page.get_by_text("502 partitions").nth(len(ASSETS) - 1)).to_be_visible()
    _no_spinners(page)
    shots.take(page, "asset-graph", docs=True)

    # The edges behind the drawing: each asset page's Lineage section links its neighbours.
    for source, derived in ((ASSETS[0], ASSETS[1:]), (DAILY_ASSETS[0], DAILY_ASSETS[1:])):
        page.goto(f"{dagster_ui.url}/assets/{source}")
        expect(page.get_by_text("Downstream assets")).to_be_visible()
        for asset in derived:
            expect(page.locator(f"a[href='/assets/{asset}']")).to_be_visible()
        for asset in derived:
            page.goto(f"{dagster_ui.url}/assets/{asset}")
            expect(page.get_by_text("Upstream assets")).to_be_visible()
            expect(page.locator(f"a[href='/assets/{source}']")).to_be_visible()


def test_backfilled_partitions_show_as_materialized(
    page: Page, dagster_ui: DevServer, ui_backfill: Backfill, shots: Shots
) -> None:
    url = (
        f"{dagster_ui.url}/assets/m15_bars?view=partitions"
        f"&day_range={quote(DAY_RANGE)}&partition={quote(SAMPLE_PARTITION)}"
    )
    page.goto(url)
    expect(page.get_by_text(f"{SESSIONS} Partitions Selected")).to_be_visible()
    expect(page.get_by_text(f"Materialized ({SESSIONS})")).to_be_visible()
    expect(page.get_by_text("Missing (0)")).to_be_visible()
    expect(page.get_by_text("Failed (0)")).to_be_visible()
    expect(page.get_by_text(SAMPLE_PARTITION, exact=True).first).to_be_visible()
    expect(page.get_by_text("Materialized", exact=True).first).to_be_visible()
    expect(_metadata_value(page, "rows")).to_have_text(str(SESSIONS * BARS_PER_SESSION))
    shots.take(page, "backfill-complete", docs=True)


def test_sensors_and_schedules_are_listed_and_running(
    page: Page, dagster_ui: DevServer, shots: Shots
) -> None:
    page.goto(f"{dagster_ui.url}/automation")
    expect(page.get_by_text("Automation").first).to_be_visible()
    for kind, name in AUTOMATIONS:
        link = page.locator(f"a[href$='/{kind}/{name}']")
        expect(link).to_contain_text(name)
        expect(link).to_be_visible()
        row = page.locator("[class*=VirtualizedTable_row]").filter(has=link)
        switch = row.locator("label[class*=formatSwitch] input[type=checkbox]")
        expect(switch).to_be_checked()  # the running toggle is on
    _no_spinners(page)
    shots.take(page, "automation", docs=True)

    nodes = graphql(dagster_ui, AUTOMATION_STATES)["repositoriesOrError"]["nodes"]
    states = {s["name"]: s["sensorState"]["status"] for n in nodes for s in n["sensors"]}
    states |= {s["name"]: s["scheduleState"]["status"] for n in nodes for s in n["schedules"]}
    assert {name: states.get(name) for name in (*SENSORS, *SCHEDULES)} == dict.fromkeys(
        (*SENSORS, *SCHEDULES), "RUNNING"
    )

    # The watchlist sensor's own page: running, with its latest evaluations listed.
    page.locator("a[href$='/sensors/watchlist_sensor']").click()
    expect(page.get_by_text("Active rows of `symbols` become dynamic")).to_be_visible()
    expect(page.locator("label[class*=formatSwitch] input[type=checkbox]")).to_be_checked()
    _no_spinners(page)
    expect(page.get_by_text(re.compile(r"^\d+ runs? requested$")).first).to_be_visible()
    shots.take(page, "watchlist-sensor")


def test_materialization_shows_metadata_and_asset_checks(
    page: Page, dagster_ui: DevServer, settled: list[dict], shots: Shots
) -> None:
    page.goto(f"{dagster_ui.url}/assets/m15_bars?view=events")
    event = page.get_by_text(SAMPLE_PARTITION, exact=True).first
    event.click()
    heading = re.compile(rf"Partition {re.escape(SAMPLE_PARTITION)} materialized in run \w+")
    expect(page.get_by_text(heading)).to_be_visible()
    expect(_metadata_value(page, "rows")).to_have_text(str(SESSIONS * BARS_PER_SESSION))
    expect(_metadata_value(page, "provider")).to_have_text("polygon")
    expect(_metadata_value(page, "requests")).to_have_text(re.compile(r"^[1-9]\d*$"))
    expect(_metadata_value(page, "sessions")).to_have_text(str(SESSIONS))
    shots.take(page, "materialization", docs=True)

    page.goto(f"{dagster_ui.url}/assets/m15_bars?view=checks")
    title = page.get_by_text(re.compile(r"^Checks \(\d+\)$"))
    expect(title).to_be_visible()
    count = int(re.sub(r"\D", "", title.inner_text()))
    assert count >= len(M15_CHECKS)
    for check in M15_CHECKS:
        expect(page.get_by_text(check, exact=True).first).to_be_visible()
    _no_spinners(page)
    shots.take(page, "asset-checks", docs=True)
    # The results behind the page: every check was evaluated by the runs, and never failed.
    # (Which run's record the page calls "latest" depends on which run finished last.)
    for check in M15_CHECKS:
        executions = graphql(
            dagster_ui, CHECK_EXECUTIONS, {"key": {"path": ["m15_bars"]}, "name": check}
        )["assetCheckExecutions"]
        outcomes = [e["evaluation"]["success"] for e in executions if e["evaluation"]]
        assert outcomes and all(outcomes), (check, executions)


def test_run_log_says_what_was_fetched(
    page: Page, dagster_ui: DevServer, ui_backfill: Backfill, shots: Shots
) -> None:
    """The backfill's run log shows the package's own log lines: symbol, range, page and
    tokens waited (dagster.yaml's python_logs), and never a key."""
    page.goto(f"{dagster_ui.url}/runs/{ui_backfill.run_id}")
    expect(page.get_by_text("RUN_SUCCESS").first).to_be_visible()
    expect(page.get_by_text(re.compile(r"apiKey=|Bearer "))).to_have_count(0)
    # The log is long (a step per provider) and only its visible part is rendered: find the
    # fetch lines through the log's own filter box.
    page.get_by_placeholder(re.compile(r"^Filter")).fill(f"{FIRST_DAY}..{LAST_DAY}")
    expect(page.get_by_text("RUN_SUCCESS")).to_have_count(0)
    page_line = re.compile(rf"polygon {WATCHED} {FIRST_DAY}\.\.{LAST_DAY} page 1")
    expect(page.get_by_text(page_line).first).to_be_visible()
    fetched = re.compile(
        rf"{WATCHED} {FIRST_DAY}\.\.{LAST_DAY}: {SESSIONS * BARS_PER_SESSION} bars from polygon "
        r"in 1 request\(s\), waited [\d.]+s for tokens"
    )
    expect(page.get_by_text(fetched).first).to_be_visible()
    expect(page.get_by_text(re.compile(r"apiKey=|Bearer "))).to_have_count(0)
    _no_spinners(page)
    shots.take(page, "run-log", docs=True)
