"""UI page load times at market scale: the Dagster asset catalog, the universe asset's and a
watchlist asset's partitions pages and the watchlist asset's overview, opened in headless
Chromium against `swiftbolt dev --no-daemon` on a scratch instance holding the product's shape
of a market: universes of thousands of members (`ui_universe`: one partition per universe x
session) and a watchlist of per-symbol partitions (`ui_seed`), both fragmented.

A page counts as interactive when what it exists to show is on screen with the seeded values
(so a fast but wrong page fails instead of scoring) and its GraphQL requests have settled (none
in flight for `QUIET_S`; the UI's 5-second code-location poll started after that is ignored).
The time runs from navigation start to the later of the two.

- cold: a fresh browser context (nothing cached: the UI's scripts download again) and Dagster's
  stored partition status of every partitioned asset wiped, so the server rebuilds it from the
  event log as it does after the symbols change (the status cache is keyed by the partition
  set);
- warm: the same context navigating to the page again, the status cached.

Each page's own GraphQL requests (captured from a warm load) are replayed with httpx, cold and
warm, for comparison: the server's share of the time."""

from __future__ import annotations

import json
import math
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import httpx
import psycopg

from swiftbolt_pipeline.defs.build import build_definitions
from swiftbolt_pipeline.defs.partitions import year_partitions
from swiftbolt_pipeline.names import (
    DAILY_ASSETS,
    M15_BARS,
    SESSION_ASSETS,
    UNIVERSE_ASSETS,
    UNIVERSE_M15_BARS,
)
from swiftbolt_pipeline.services import partition_status
from swiftbolt_pipeline.storage import watchlist as watched

from .report import BenchReport, Row, command_line, machine_info, now_iso
from .ui_seed import Cell, DailyPlan, SeedPlan, SeedResult, seed
from .ui_universe import UniversePlan, UniverseSeedResult, seed_universes
from .ui_world import UiWorld, Webserver, ui_world, webserver

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM = Path("/usr/bin/chromium")
# Headless Chromium on a closed network, as root: no sandbox, no GPU, no background traffic.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A page that answers within 3 s keeps an operator on task; 10 s is where attention is lost
# (the usual response-time limits). Warm loads are what an operator sees all day; a cold load
# follows a change of the symbol set (or a restart with a wiped cache) and may take longer.
WARM_BUDGET_S = 3.0
COLD_BUDGET_S = 10.0
QUIET_S = 1.0
PAGE_TIMEOUT_S = 600.0
POLLS = {"CodeLocationStatusQuery"}  # the UI asks for this every 5 s, whatever the page


ABOUT = f"""## UI page load times at market scale

The Dagster UI (webserver of `swiftbolt dev --no-daemon` on this code location, PostgreSQL
storage) opened in headless Chromium (Debian's, driven by Playwright) on four pages: the asset
catalog (`/assets`), `universe_m15_bars`' Partitions tab (the universe x session grid),
`m15_bars`' Partitions tab (the watchlist's symbol x session grid and its health bar) and
`m15_bars`' overview. Each watchlist size runs in its own scratch database holding the shape
the product gives a market:

- **universes** (`swiftbolt_pipeline/bench/ui_universe.py`): one per `--ui-symbols` size, its
  members in `universes` / `universe_members` (a few failing SYMBOL_NOT_FOUND) and one
  `universes` partition each, x every XNYS session of the two-year window. Their sessions are
  cut into ranges of 5 to 58 sessions, one `universe backfill` run each, that succeeded
  (every partition of both universe assets materialized, with the metadata the assets write),
  failed, or never ran: a fragmented matrix whatever the member count;
- **the watchlist** (`swiftbolt_pipeline/bench/ui_seed.py`): N symbols registered as `symbols`
  partitions, x every session for m15/h1/h4 and x every year of the daily depth for
  d1/w1/mo1, materialized (one materialization event per partition and asset), missing and
  failed (FAILURE runs whose planned partitions never materialized, one run per failing
  symbol) mixed so that consecutive sessions hold different sets of symbols: the health bar's
  worst case. The exact counts are in each size's first row note.

A load is timed from navigation start until the page shows the seeded state (the catalog:
every partitioned asset's materialized, missing and failed counts; a Partitions tab: the
Materialized / Failed / Missing counts and the partition total; the overview: the latest
materialization's partition) and the page's GraphQL requests have settled (none in flight for
{QUIET_S:.0f} s; the UI's 5 s code-location poll started after the data showed is ignored).
**Cold**: a fresh browser context (the UI's scripts download again) and Dagster's stored
partition status of every partitioned asset wiped, so the page's requests rebuild it from the
event log, as they must after the watchlist changes (the status cache is keyed by the
partitions) when nothing rebuilt it first. **Cold, status kept by the sensor**: the same
wipe, then the rebuild `partition_status_sensor` does after such a change (its code, timed in
the notes), then a fresh browser context: what an operator sees once the sensor has ticked.
**Warm**: the same context navigating to the page again. Budgets: {WARM_BUDGET_S:.0f} s warm,
the response time that keeps an operator on task; {COLD_BUDGET_S:.0f} s cold, where attention
is lost. The notes give the same page's GraphQL requests replayed one by one with httpx: the
server's share."""


@dataclass(frozen=True)
class UiPlan:
    """Everything one world holds: the watchlist's session and daily grids, the universes."""

    watchlist: SeedPlan
    daily: DailyPlan
    universes: UniversePlan

    @property
    def label(self) -> str:
        sizes = "/".join(f"{n:,}" for n in self.universes.sizes)
        return f"watchlist {self.watchlist.symbols:,}, universes {sizes}"


@dataclass(frozen=True)
class Marker:
    """Text the page shows once its data is there: at least `count` elements reading exactly
    `text`, or (count 0) at least one element containing it."""

    text: str
    count: int = 0


@dataclass(frozen=True)
class UiPage:
    name: str
    path: str
    markers: Callable[[UiPlan], list[Marker]]


def _catalog_markers(plan: UiPlan) -> list[Marker]:
    """Every partitioned asset's row shows its materialized, missing and failed counts."""
    grids = (
        (plan.watchlist.counts, len(SESSION_ASSETS)),
        (plan.daily.counts, len(DAILY_ASSETS)),
        (plan.universes.counts, len(UNIVERSE_ASSETS)),
    )
    wanted: Counter[str] = Counter()
    for counts, assets in grids:
        for cell in Cell:
            wanted[f"{counts[cell]:,}"] += assets
    return [Marker(text, n) for text, n in wanted.items()]


def _grid_markers(total: int, counts: Counter[Cell]) -> list[Marker]:
    return [
        Marker(f"{total:,} Partitions Selected"),
        Marker(f"Materialized ({counts[Cell.MATERIALIZED]})"),
        Marker(f"Failed ({counts[Cell.FAILED]})"),
        Marker(f"Missing ({counts[Cell.MISSING]})"),
    ]


def _universe_markers(plan: UiPlan) -> list[Marker]:
    return _grid_markers(plan.universes.partitions, plan.universes.counts)


def _watchlist_markers(plan: UiPlan) -> list[Marker]:
    grid = plan.watchlist
    return _grid_markers(grid.symbols * len(grid.sessions), grid.counts)


def _overview_markers(plan: UiPlan) -> list[Marker]:
    return [
        Marker("Latest materialization"),
        Marker(plan.watchlist.last_materialized_key(), 1),
        Marker("Code location"),
    ]


PAGES = (
    UiPage("asset catalog", "/assets", _catalog_markers),
    UiPage(
        "universe_m15_bars partitions",
        f"/assets/{UNIVERSE_M15_BARS}?view=partitions",
        _universe_markers,
    ),
    UiPage("m15_bars partitions", f"/assets/{M15_BARS}?view=partitions", _watchlist_markers),
    UiPage("m15_bars overview", f"/assets/{M15_BARS}", _overview_markers),
)


@dataclass
class GraphqlTracker:
    """The page's GraphQL requests: (operation, body, started, finished) in page-load seconds."""

    origin: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("request", self._started)
        page.on("requestfinished", self._finished)
        page.on("requestfailed", self._finished)

    def reset(self) -> None:
        self.requests = []
        self.origin = time.perf_counter()

    def _started(self, request: Any) -> None:
        if "/graphql" not in request.url:
            return
        body = request.post_data or "{}"
        self.requests.append(
            {
                "request": request,
                "operation": json.loads(body).get("operationName"),
                "body": body,
                "started": time.perf_counter() - self.origin,
                "finished": None,
            }
        )

    def _finished(self, request: Any) -> None:
        for entry in self.requests:
            if entry["request"] is request and entry["finished"] is None:
                entry["finished"] = time.perf_counter() - self.origin

    def in_flight(self) -> bool:
        return any(e["finished"] is None for e in self.requests)

    def relevant(self, visible_at: float) -> list[dict[str, Any]]:
        return [
            e for e in self.requests if not (e["operation"] in POLLS and e["started"] > visible_at)
        ]


def _load(
    page: Page, tracker: GraphqlTracker, url: str, markers: Sequence[Marker], timeout_s: float
) -> float:
    """Seconds from navigation start until every marker is visible and GraphQL has settled."""
    from playwright.sync_api import expect

    tracker.reset()
    timeout = timeout_s * 1e3
    page.goto(url, wait_until="commit", timeout=timeout)
    for marker in markers:
        if marker.count:
            found = page.get_by_text(marker.text, exact=True)
            expect(found.nth(marker.count - 1)).to_be_visible(timeout=timeout)
        else:
            expect(page.get_by_text(marker.text).first).to_be_visible(timeout=timeout)
    visible_at = time.perf_counter() - tracker.origin
    quiet_since: float | None = None
    while True:
        page.wait_for_timeout(50)
        now = time.perf_counter()
        if tracker.in_flight():
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= QUIET_S:
            break
        if now - tracker.origin > timeout_s:
            raise TimeoutError(f"GraphQL never settled on {url}")
    settled = [e["finished"] for e in tracker.relevant(visible_at) if e["finished"] is not None]
    settle_at = max([s for s in settled if s <= quiet_since - tracker.origin] or [0.0])
    return max(visible_at, settle_at)


KEPT = "cold, status kept by the sensor"
PARTITIONED_ASSETS = (*SESSION_ASSETS, *DAILY_ASSETS, *UNIVERSE_ASSETS)


def _wipe_status(instance: dg.DagsterInstance) -> None:
    instance.wipe_asset_cached_status([dg.AssetKey(a) for a in PARTITIONED_ASSETS])


def _replay(web: Webserver, bodies: Sequence[str], timeout_s: float) -> dict[str, float]:
    """Each captured GraphQL request sent again, one after the other: seconds per operation."""
    timings: dict[str, float] = {}
    with httpx.Client(base_url=web.url, timeout=timeout_s) as client:
        for body in bodies:
            started = time.perf_counter()
            response = client.post(
                "/graphql", content=body, headers={"Content-Type": "application/json"}
            )
            response.raise_for_status()
            if "errors" in response.json():
                raise RuntimeError(f"GraphQL errors replaying {body[:200]}: {response.text}")
            operation = json.loads(body).get("operationName") or "?"
            timings[operation] = timings.get(operation, 0.0) + time.perf_counter() - started
    return timings


@dataclass
class PageTimes:
    cold_s: list[float]  # status wiped: the page rebuilds it
    kept_s: list[float]  # fresh browser, status rebuilt by the partition status sensor's code
    refresh_s: list[float]  # that rebuild, every partitioned asset
    warm_s: list[float]
    graphql_cold: dict[str, float]
    graphql_warm: dict[str, float]
    screenshot: str | None = None


@contextmanager
def _browser() -> Iterator[Browser]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:  # a runtime install without the dev group
        raise RuntimeError(
            "the UI bench drives Chromium with Playwright: install the dev dependencies "
            "(`make install`)"
        ) from error
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: `apt-get install -y chromium`")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def _context(browser: Browser, timeout_s: float) -> Any:
    context = browser.new_context(
        viewport={"width": 1440, "height": 900}, timezone_id="America/New_York", locale="en-US"
    )
    context.set_default_timeout(timeout_s * 1e3)
    return context


def measure_pages(
    world: UiWorld,
    web: Webserver,
    plan: UiPlan,
    *,
    cold_loads: int,
    warm_loads: int,
    screenshots: Path | None = None,
    timeout_s: float = PAGE_TIMEOUT_S,
    progress: Callable[[str], None] = lambda _: None,
    browser: Browser | None = None,
    replay: bool = True,
) -> dict[str, PageTimes]:
    """Cold then warm loads of each page, and (with `replay`) its GraphQL replayed; seconds per
    load. In a browser of the caller's (a test's, whose Playwright already runs in this
    thread), else in a Chromium of its own."""
    results: dict[str, PageTimes] = {}
    graph = build_definitions(world.settings).resolve_asset_graph()
    partitions = {
        key: node.partitions_def
        for key in graph.materializable_asset_keys
        if (node := graph.get(key)).partitions_def is not None
    }
    with nullcontext(browser) if browser else _browser() as browser:
        for ui_page in PAGES:
            url, markers = web.url + ui_page.path, ui_page.markers(plan)
            cold: list[float] = []
            warm: list[float] = []
            bodies: list[str] = []
            kept: list[float] = []
            refresh: list[float] = []
            for rebuild in [False] * cold_loads + [True] * cold_loads:
                _wipe_status(world.instance)
                if rebuild:
                    started = time.perf_counter()
                    partition_status.refresh(world.instance, partitions, budget_s=math.inf)
                    refresh.append(time.perf_counter() - started)
                context = _context(browser, timeout_s)
                page = context.new_page()
                tracker = GraphqlTracker()
                tracker.attach(page)
                (kept if rebuild else cold).append(_load(page, tracker, url, markers, timeout_s))
                context.close()
            context = _context(browser, timeout_s)
            page = context.new_page()
            tracker = GraphqlTracker()
            tracker.attach(page)
            _load(
                page, tracker, url, markers, timeout_s
            )  # fills the browser's cache and the status
            for _ in range(warm_loads):
                page.goto("about:blank")
                warm.append(_load(page, tracker, url, markers, timeout_s))
                bodies = [e["body"] for e in tracker.requests if e["operation"] not in POLLS]
            shot = None
            if screenshots is not None:
                screenshots.mkdir(parents=True, exist_ok=True)
                name = f"{plan.watchlist.symbols}-{ui_page.name.replace(' ', '-')}.png"
                path = screenshots / name
                page.screenshot(path=path)
                shot = str(path)
            context.close()
            graphql_warm: dict[str, float] = {}
            graphql_cold: dict[str, float] = {}
            if replay:
                graphql_warm = _replay(web, bodies, timeout_s)
                _wipe_status(world.instance)
                graphql_cold = _replay(web, bodies, timeout_s)
            results[ui_page.name] = PageTimes(
                cold, kept, refresh, warm, graphql_cold, graphql_warm, shot
            )
            progress(
                f"{plan.label}, {ui_page.name}: cold {_seconds(cold)}, after the sensor's "
                f"rebuild ({_seconds(refresh)}) {_seconds(kept)}, warm {_seconds(warm)}"
            )
    return results


def _seconds(samples: Sequence[float]) -> str:
    return ", ".join(f"{t:.1f}" for t in samples) + " s"


def _slowest(timings: dict[str, float]) -> tuple[str, float]:
    name = max(timings, key=lambda k: timings[k])
    return name, timings[name]


def scale_rows(plan: UiPlan, seeded: Seeded, pages: dict[str, PageTimes]) -> list[Row]:
    rows = []
    for name, times in pages.items():
        for kind, samples, budget, graphql in (
            ("cold", times.cold_s, COLD_BUDGET_S, times.graphql_cold),
            (KEPT, times.kept_s, COLD_BUDGET_S, None),
            ("warm", times.warm_s, WARM_BUDGET_S, times.graphql_warm),
        ):
            p50, worst = statistics.median(samples), max(samples)
            if graphql == {}:
                server = "GraphQL not replayed."
            elif graphql is None:
                server = (
                    f"The partition status sensor's rebuild before each load (every "
                    f"partitioned asset): {_seconds(times.refresh_s)}."
                )
            else:
                slow_op, slow_s = _slowest(graphql)
                server = (
                    f"The same GraphQL requests replayed one by one ({kind}): "
                    f"{sum(graphql.values()):.2f} s in all, slowest {slow_op} {slow_s:.2f} s."
                )
            rows.append(
                Row(
                    section="UI",
                    metric=f"{name}, {plan.label}, {kind} (p50)",
                    measured=p50,
                    unit="s",
                    reference=budget,
                    reference_label="s budget",
                    target="max < 1",
                    met=worst < budget,
                    note=f"{len(samples)} loads: p50 {p50:.2f} s, max {worst:.2f} s. {server}",
                )
            )
    rows[0].note += " Seeded: " + seeded.describe(plan)
    return rows


@dataclass
class Seeded:
    watchlist: SeedResult
    universes: UniverseSeedResult
    seconds: float

    def describe(self, plan: UiPlan) -> str:
        w, u = self.watchlist, self.universes
        sessions = len(plan.watchlist.sessions)
        return (
            f"universes of {', '.join(f'{n:,}' for n in plan.universes.sizes)} members x "
            f"{sessions} sessions = {plan.universes.partitions:,} partitions per universe asset "
            f"(2 assets), {u.counts['materialized']:,} materialized, {u.counts['failed']:,} "
            f"failed, {u.counts['missing']:,} missing ({u.runs} runs); watchlist "
            f"{plan.watchlist.symbols:,} symbols x {sessions} sessions = "
            f"{plan.watchlist.symbols * sessions:,} partitions per session asset (3 assets), "
            f"{w.counts['materialized']:,} materialized, {w.counts['failed']:,} failed, "
            f"{w.counts['missing']:,} missing; x {len(plan.daily.years)} years per daily asset "
            f"(3 assets), {w.daily_counts['materialized']:,} materialized, "
            f"{w.daily_counts['failed']:,} failed, {w.daily_counts['missing']:,} missing; "
            f"{w.failed_runs} failed watchlist runs; {w.events + u.events:,} event rows in "
            f"{self.seconds:.0f} s."
        )


@dataclass
class UiScaleResult:
    plan: UiPlan
    seeded: Seeded
    webserver_ready_s: float
    pages: dict[str, PageTimes]
    rows: list[Row]


def plan_world(world: UiWorld, watchlist: int, universes: Sequence[int]) -> UiPlan:
    years = tuple(int(y) for y in year_partitions(world.settings).get_partition_keys())
    return UiPlan(
        SeedPlan(watchlist, world.sessions),
        DailyPlan(watchlist, years),
        UniversePlan(tuple(universes), world.sessions),
    )


def seed_world(
    world: UiWorld, plan: UiPlan, progress: Callable[[str], None] = lambda _: None
) -> Seeded:
    """The universes, then the watchlist (its symbols also on the `symbols` table, active)."""
    started = time.perf_counter()
    with psycopg.connect(world.environ["DATABASE_URL"]) as conn:
        universes = seed_universes(world.instance, conn, plan.universes)
        progress(f"universes seeded: {universes.events:,} events, {universes.runs} runs")
        watched.add(conn, plan.watchlist.names)
    seeded = seed(world.instance, plan.watchlist, plan.daily, progress=progress)
    return Seeded(seeded, universes, time.perf_counter() - started)


def measure_ui_scale(
    world: UiWorld,
    watchlist: int,
    universes: Sequence[int],
    *,
    cold_loads: int = 3,
    warm_loads: int = 3,
    screenshots: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> UiScaleResult:
    """Seed a watchlist of `watchlist` symbols and universes of `universes` members into
    `world`'s fresh instance, start the webserver, time the pages."""
    plan = plan_world(world, watchlist, universes)
    progress(f"seeding {plan.label} x {len(world.sessions)} sessions...")
    seeded = seed_world(world, plan, progress)
    with webserver(world) as web:
        progress(f"webserver ready in {web.ready_s:.0f} s")
        pages = measure_pages(
            world,
            web,
            plan,
            cold_loads=cold_loads,
            warm_loads=warm_loads,
            screenshots=screenshots,
            progress=progress,
        )
    return UiScaleResult(plan, seeded, web.ready_s, pages, scale_rows(plan, seeded, pages))


def run_ui_bench(
    universes: Sequence[int],
    watchlists: Sequence[int],
    *,
    cold_loads: int = 3,
    warm_loads: int = 3,
    screenshots: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> BenchReport:
    """Each watchlist size in its own scratch world (a fresh database) with every universe,
    smallest first."""
    started_at, started = now_iso(), time.perf_counter()
    rows: list[Row] = []
    details: dict[str, Any] = {}
    machine: dict[str, Any] = {}
    for size in sorted(watchlists):
        size_started = time.perf_counter()
        with ui_world() as world:
            result = measure_ui_scale(
                world,
                size,
                universes,
                cold_loads=cold_loads,
                warm_loads=warm_loads,
                screenshots=screenshots,
                progress=progress,
            )
            machine = machine_info(world.database_label)
        rows += result.rows
        details[f"watchlist {size}"] = {
            "sessions": len(result.plan.watchlist.sessions),
            "years": list(result.plan.daily.years),
            "universes": {
                name: n for name, n in zip(result.plan.universes.names, universes, strict=True)
            },
            "seeded": {
                "watchlist": vars(result.seeded.watchlist),
                "universes": vars(result.seeded.universes),
                "seconds": result.seeded.seconds,
            },
            "webserver_ready_s": result.webserver_ready_s,
            "pages": {name: vars(times) for name, times in result.pages.items()},
            "wall_s": time.perf_counter() - size_started,
        }
    return BenchReport(
        rows=rows,
        machine=machine,
        sizes={
            "universe_members": list(universes),
            "watchlist_symbols": list(watchlists),
            "cold_loads": cold_loads,
            "warm_loads": warm_loads,
        },
        started_at=started_at,
        wall_s=time.perf_counter() - started,
        command=command_line(),
        details=details,
        about=ABOUT,
    )
