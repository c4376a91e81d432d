"""The UI bench (`swiftbolt bench --ui-symbols`) at a small scale, in headless Chromium: what it
seeds is what Dagster's tables hold, and the pages it times show exactly that state. The
expected counts come from the event log and run tables by SQL, not from the seeder or the UI.

Its own scratch database and webserver (`swiftbolt dev --no-daemon`): nothing else runs there
to change the seeded state."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect

from swiftbolt_pipeline.bench.ui import PAGES, UiScaleResult, measure_pages, scale_rows
from swiftbolt_pipeline.bench.ui_seed import SeedPlan, seed
from swiftbolt_pipeline.bench.ui_world import UiWorld, Webserver, ui_world, webserver
from swiftbolt_pipeline.names import M15_BARS, SESSION_ASSETS

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

SYMBOLS = 50
LOAD_TIMEOUT_MS = 60_000  # the status is warm (the bench loaded every page), the machine shared
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"

# Per asset: the partition whose latest materialization-or-planned event is a materialization
# (materialized) or a planned event of a FAILURE run (failed), as Dagster defines them.
LATEST_STATES = """
WITH latest AS (
    SELECT DISTINCT ON (asset_key, partition) asset_key, partition, dagster_event_type, run_id
    FROM event_logs
    WHERE dagster_event_type IN ('ASSET_MATERIALIZATION', 'ASSET_MATERIALIZATION_PLANNED')
    ORDER BY asset_key, partition, id DESC)
SELECT asset_key,
       count(*) FILTER (WHERE dagster_event_type = 'ASSET_MATERIALIZATION'),
       count(*) FILTER (WHERE dagster_event_type = 'ASSET_MATERIALIZATION_PLANNED'
                        AND run_id IN (SELECT run_id FROM runs WHERE status = 'FAILURE'))
FROM latest GROUP BY asset_key"""
LATEST_M15 = """
SELECT partition FROM event_logs
WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key = %s
ORDER BY id DESC LIMIT 1"""


@dataclass(frozen=True)
class Truth:
    partitions: int  # per bar asset: registered symbols x sessions
    materialized: dict[str, int]
    failed: dict[str, int]
    failed_runs: int
    latest_m15: str

    def missing(self, asset: str) -> int:
        return self.partitions - self.materialized[asset] - self.failed[asset]


def _truth(world: UiWorld) -> Truth:
    with psycopg.connect(world.environ["DATABASE_URL"]) as conn:
        conn.execute("SET search_path TO dagster")
        symbols = conn.execute(
            "SELECT count(*) FROM dynamic_partitions WHERE partitions_def_name = 'symbols'"
        ).fetchone()
        states = {row[0]: row[1:] for row in conn.execute(LATEST_STATES).fetchall()}
        runs = conn.execute("SELECT count(*) FROM runs WHERE status = 'FAILURE'").fetchone()
        latest = conn.execute(LATEST_M15, (f'["{M15_BARS}"]',)).fetchone()
    assert symbols and runs and latest
    keys = {asset: f'["{asset}"]' for asset in SESSION_ASSETS}
    return Truth(
        partitions=symbols[0] * len(world.sessions),
        materialized={a: states[k][0] for a, k in keys.items()},
        failed={a: states[k][1] for a, k in keys.items()},
        failed_runs=runs[0],
        latest_m15=latest[0],
    )


@dataclass
class Scaled:
    world: UiWorld
    web: Webserver
    plan: SeedPlan
    truth: Truth
    result: UiScaleResult


@pytest.fixture(scope="module")
def scaled(chromium_path: Path, browser: Browser) -> Iterator[Scaled]:
    """50 symbols seeded, the webserver up, every page timed once cold and once warm."""
    with ui_world() as world:
        plan = SeedPlan(SYMBOLS, world.sessions)
        seeded = seed(world.instance, plan)
        truth = _truth(world)
        with webserver(world) as web:
            pages = measure_pages(
                world,
                web,
                plan,
                cold_loads=1,
                warm_loads=1,
                screenshots=ARTIFACTS,
                timeout_s=120,
                browser=browser,  # pytest-playwright's: one sync Playwright per thread
            )
            result = UiScaleResult(
                plan, seeded, web.ready_s, pages, scale_rows(plan, seeded, pages)
            )
            yield Scaled(world, web, plan, truth, result)


def test_seeded_state_is_what_the_plan_says(scaled: Scaled) -> None:
    truth, plan = scaled.truth, scaled.plan
    sessions = scaled.world.sessions
    assert len(sessions) == 502  # XNYS sessions 2024-11-20..2026-11-20, the bench's window
    assert truth.partitions == SYMBOLS * len(sessions)
    # Symbols 3, 23 and 43 fail their last 10 sessions, one run each.
    assert truth.failed_runs == 3
    for asset in SESSION_ASSETS:
        assert truth.failed[asset] == 3 * 10
        assert truth.materialized[asset] == scaled.result.seeded.counts["materialized"]
        assert truth.missing(asset) == scaled.result.seeded.counts["missing"]
    # Never-backfilled symbols (k % 10 == 9: 5 of them) alone miss 5 x 502 sessions, and the
    # holes make the materialized share fragmented, not a block.
    assert truth.missing(M15_BARS) > 5 * len(sessions)
    assert 0.6 < truth.materialized[M15_BARS] / truth.partitions < 0.9
    assert truth.latest_m15 == plan.last_materialized_key()
    assert truth.latest_m15.split("|") == [sessions[-1].isoformat(), "U00048"]


def test_partitions_page_shows_the_seeded_counts(page: Page, scaled: Scaled) -> None:
    truth = scaled.truth
    page.goto(f"{scaled.web.url}/assets/{M15_BARS}?view=partitions")
    expect(page.get_by_text(re.compile(r"^Materialized \(\d+\)$"))).to_be_visible(
        timeout=LOAD_TIMEOUT_MS
    )
    shown = {
        state: int(
            re.sub(r"\D", "", page.get_by_text(re.compile(rf"^{state} \(\d+\)$")).inner_text())
        )
        for state in ("Materialized", "Failed", "Missing", "Materializing")
    }
    assert shown == {
        "Materialized": truth.materialized[M15_BARS],
        "Failed": truth.failed[M15_BARS],
        "Missing": truth.missing(M15_BARS),
        "Materializing": 0,
    }
    expect(page.get_by_text(f"{truth.partitions:,} Partitions Selected")).to_be_visible()


def test_catalog_shows_every_bar_assets_counts(page: Page, scaled: Scaled) -> None:
    truth = scaled.truth
    page.goto(f"{scaled.web.url}/assets")
    catalog = [*SESSION_ASSETS, "universe_m15_bars", "universe_derived_bars", "universe_d1_bars"]
    for asset in SESSION_ASSETS:
        # The asset's row: a block holding its link and no other asset's.
        row = page.locator("div").filter(has=page.locator(f"a[href='/assets/{asset}']"))
        for other in catalog:
            if other != asset:
                row = row.filter(has_not=page.locator(f"a[href='/assets/{other}']"))
        for expected in (truth.materialized[asset], truth.missing(asset), truth.failed[asset]):
            shown = row.filter(has=page.get_by_text(f"{expected:,}", exact=True)).last
            expect(shown).to_be_visible(timeout=LOAD_TIMEOUT_MS)


def test_overview_shows_the_latest_materialization(page: Page, scaled: Scaled) -> None:
    page.goto(f"{scaled.web.url}/assets/{M15_BARS}")
    expect(page.get_by_text("Latest materialization")).to_be_visible(timeout=LOAD_TIMEOUT_MS)
    latest = page.get_by_text(scaled.truth.latest_m15, exact=True)
    expect(latest).to_be_visible(timeout=LOAD_TIMEOUT_MS)


def test_every_page_timed_cold_and_warm(scaled: Scaled) -> None:
    pages = scaled.result.pages
    assert list(pages) == [p.name for p in PAGES]
    for name, times in pages.items():
        for load in (*times.cold_s, *times.warm_s):
            assert math.isfinite(load) and 0 < load < 120, (name, load)
        # The page's own queries were captured and replayed: the server's share of the time.
        assert set(times.graphql_cold) == set(times.graphql_warm), name
    assert "AssetGraphLiveQuery" in pages["asset catalog"].graphql_warm
    assert "PartitionHealthQuery" in pages["m15_bars partitions"].graphql_warm
    rows = scaled.result.rows
    assert [r.metric for r in rows] == [
        f"{p.name}, {SYMBOLS} symbols, {kind} (p50)" for p in PAGES for kind in ("cold", "warm")
    ]
    assert f"{scaled.truth.failed[M15_BARS]:,} failed (3 failed runs)" in rows[0].note
