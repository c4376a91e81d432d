"""The UI bench (`swiftbolt bench --ui-symbols`) at a small watchlist, in headless Chromium:
universes of 500 and 5,000 members (one partition per universe x session) beside 20 watched
symbols (symbol x session and symbol x year). What it seeds is what Dagster's tables hold, and
the pages it times show exactly that state. The expected counts come from the event log and
run tables by SQL, not from the seeder or the UI.

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

from swiftbolt_pipeline.bench.ui import (
    KEPT,
    PAGES,
    UiPlan,
    UiScaleResult,
    measure_pages,
    plan_world,
    scale_rows,
    seed_world,
)
from swiftbolt_pipeline.bench.ui_world import UiWorld, Webserver, ui_world, webserver
from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.names import (
    DAILY_ASSETS,
    M15_BARS,
    SESSION_ASSETS,
    UNIVERSE_ASSETS,
    UNIVERSE_M15_BARS,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(600)]

SYMBOLS = 20
UNIVERSES = (500, 5000)
PARTITIONED = (*SESSION_ASSETS, *DAILY_ASSETS, *UNIVERSE_ASSETS)
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
    partitions: dict[str, int]  # per asset: its dimensions' sizes multiplied
    materialized: dict[str, int]
    failed: dict[str, int]
    failed_runs: int
    latest_m15: str

    def missing(self, asset: str) -> int:
        return self.partitions[asset] - self.materialized[asset] - self.failed[asset]


def _truth(world: UiWorld, years: int) -> Truth:
    with psycopg.connect(world.environ["DATABASE_URL"]) as conn:
        conn.execute("SET search_path TO dagster")
        dynamic: dict[str, int] = {
            name: int(n)
            for name, n in conn.execute(
                "SELECT partitions_def_name, count(*) FROM dynamic_partitions GROUP BY 1"
            ).fetchall()
        }
        states = {row[0]: row[1:] for row in conn.execute(LATEST_STATES).fetchall()}
        runs = conn.execute("SELECT count(*) FROM runs WHERE status = 'FAILURE'").fetchone()
        latest = conn.execute(LATEST_M15, (f'["{M15_BARS}"]',)).fetchone()
    assert runs and latest
    sessions = len(world.sessions)
    partitions = {
        **dict.fromkeys(SESSION_ASSETS, dynamic["symbols"] * sessions),
        **dict.fromkeys(DAILY_ASSETS, dynamic["symbols"] * years),
        **dict.fromkeys(UNIVERSE_ASSETS, dynamic["universes"] * sessions),
    }
    keys = {asset: f'["{asset}"]' for asset in PARTITIONED}
    return Truth(
        partitions=partitions,
        materialized={a: states[k][0] for a, k in keys.items()},
        failed={a: states[k][1] for a, k in keys.items()},
        failed_runs=runs[0],
        latest_m15=latest[0],
    )


@dataclass
class Scaled:
    world: UiWorld
    web: Webserver
    plan: UiPlan
    truth: Truth
    result: UiScaleResult


@pytest.fixture(scope="module")
def scaled(chromium_path: Path, browser: Browser) -> Iterator[Scaled]:
    """The world seeded, the webserver up, every page timed once of each kind."""
    with ui_world() as world:
        plan = plan_world(world, SYMBOLS, UNIVERSES)
        seeded = seed_world(world, plan)
        truth = _truth(world, len(plan.daily.years))
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
                replay=False,  # the bench's comparison; the loads are what this test checks
            )
            result = UiScaleResult(
                plan, seeded, web.ready_s, pages, scale_rows(plan, seeded, pages)
            )
            yield Scaled(world, web, plan, truth, result)


def test_seeded_state_is_what_the_plan_says(scaled: Scaled) -> None:
    truth, plan = scaled.truth, scaled.plan
    sessions = scaled.world.sessions
    assert len(sessions) == 502  # XNYS sessions 2024-11-20..2026-11-20, the bench's window
    assert plan.daily.years == tuple(range(2021, 2027))  # 5 years of daily depth, and 2026
    assert truth.partitions[M15_BARS] == SYMBOLS * len(sessions)
    assert truth.partitions[UNIVERSE_M15_BARS] == 2 * len(sessions)  # not members x sessions
    watchlist, universes = scaled.result.seeded.watchlist, scaled.result.seeded.universes
    for asset in SESSION_ASSETS:
        # Symbol 3 fails its last 10 sessions (one run).
        assert truth.failed[asset] == 10
        assert truth.materialized[asset] == watchlist.counts["materialized"]
        assert truth.missing(asset) == watchlist.counts["missing"]
    for asset in DAILY_ASSETS:
        assert truth.failed[asset] == 1  # symbol 3's current year
        assert truth.materialized[asset] == watchlist.daily_counts["materialized"]
    for asset in UNIVERSE_ASSETS:
        assert truth.materialized[asset] == universes.counts["materialized"]
        assert truth.failed[asset] == universes.counts["failed"]
        assert truth.missing(asset) == universes.counts["missing"]
        # Every state holds a real share: a fragmented matrix.
        assert min(truth.materialized[asset], truth.failed[asset], truth.missing(asset)) > 100
    # 2 failed watchlist runs (session, daily) and the universes' failed ranges.
    assert truth.failed_runs == 2 + sum(
        1 for i in range(2) for r in plan.universes.ranges(i) if r.state == "failed"
    )
    # Never-backfilled symbols (k % 10 == 9: 2 of them) alone miss 2 x 502 sessions, and the
    # holes make the materialized share fragmented, not a block.
    assert truth.missing(M15_BARS) > 2 * len(sessions)
    assert 0.6 < truth.materialized[M15_BARS] / truth.partitions[M15_BARS] < 0.9
    assert truth.latest_m15 == plan.watchlist.last_materialized_key()
    assert truth.latest_m15.split("|") == [sessions[-1].isoformat(), "U00018"]


@pytest.mark.parametrize("asset", [M15_BARS, UNIVERSE_M15_BARS])
def test_partitions_page_shows_the_seeded_counts(page: Page, scaled: Scaled, asset: str) -> None:
    truth = scaled.truth
    page.goto(f"{scaled.web.url}/assets/{asset}?view=partitions")
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
        "Materialized": truth.materialized[asset],
        "Failed": truth.failed[asset],
        "Missing": truth.missing(asset),
        "Materializing": 0,
    }
    expect(page.get_by_text(f"{truth.partitions[asset]:,} Partitions Selected")).to_be_visible()


def test_catalog_shows_every_partitioned_assets_counts(page: Page, scaled: Scaled) -> None:
    truth = scaled.truth
    page.goto(f"{scaled.web.url}/assets")
    graph = build_definitions(scaled.world.settings).resolve_asset_graph()
    catalog = [key.to_user_string() for key in graph.materializable_asset_keys]
    for asset in PARTITIONED:
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


def test_every_page_timed_of_each_kind(scaled: Scaled) -> None:
    pages = scaled.result.pages
    assert list(pages) == [p.name for p in PAGES]
    for name, times in pages.items():
        for load in (*times.cold_s, *times.kept_s, *times.warm_s):
            assert math.isfinite(load) and 0 < load < 120, (name, load)
        assert len(times.refresh_s) == len(times.kept_s) == 1
        assert times.graphql_cold == times.graphql_warm == {}, name  # not replayed here
    rows = scaled.result.rows
    label = f"watchlist {SYMBOLS}, universes 500/5,000"
    assert [r.metric for r in rows] == [
        f"{p.name}, {label}, {kind} (p50)" for p in PAGES for kind in ("cold", KEPT, "warm")
    ]
    assert f"{scaled.truth.failed[M15_BARS]:,} failed, " in rows[0].note
    assert "GraphQL not replayed." in rows[0].note
    assert "partition status sensor's rebuild" in rows[1].note
