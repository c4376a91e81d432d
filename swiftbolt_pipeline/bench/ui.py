"""UI page load times at market scale: the Dagster asset catalog, `m15_bars`' partitions page
and its overview, opened in headless Chromium against `swiftbolt dev --no-daemon` on a scratch
instance seeded with a fragmented symbol x session state (`ui_seed`).

A page counts as interactive when what it exists to show is on screen with the seeded values
(so a fast but wrong page fails instead of scoring) and its GraphQL requests have settled (none
in flight for `QUIET_S`; the UI's 5-second code-location poll started after that is ignored).
The time runs from navigation start to the later of the two.

- cold: a fresh browser context (nothing cached: the UI's scripts download again) and Dagster's
  stored partition status of the bar assets wiped, so the server rebuilds it from the event log
  as it does after the symbols change (the status cache is keyed by the partition set);
- warm: the same context navigating to the page again, the status cached.

Each page's own GraphQL requests (captured from a warm load) are replayed with httpx, cold and
warm, for comparison: the server's share of the time."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import httpx

from swiftbolt_pipeline.names import M15_BARS, SESSION_ASSETS

from .report import BenchReport, Row, command_line, machine_info, now_iso
from .ui_seed import Cell, SeedPlan, SeedResult, seed
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
storage) opened in headless Chromium (Debian's, driven by Playwright) on three pages: the asset
catalog (`/assets`), `m15_bars`' Partitions tab (the symbol x session grid and its health bar)
and `m15_bars`' overview. Each size runs in its own scratch database, seeded by
`swiftbolt_pipeline/bench/ui_seed.py`:

- every symbol registered as a `symbols` dynamic partition, x every XNYS session of the
  two-year window: symbols x sessions partitions per session-partitioned bar asset (m15, h1, h4);
- materialized (one materialization event per partition and bar asset), missing and failed
  (FAILURE runs whose planned partitions never materialized, one run per failing symbol)
  partitions mixed so that consecutive sessions hold different sets of symbols: the health
  bar's worst case. Up to {SeedPlan.FULL_HISTORY_SYMBOLS} symbols the whole window holds data;
  beyond, only the latest sessions (window x {SeedPlan.FULL_HISTORY_SYMBOLS} / symbols), so
  the event log stays about as large and the seeding fits the bench's time. The exact counts
  are in each size's first row note.

A load is timed from navigation start until the page shows the seeded state (the catalog:
every bar asset's materialized, missing and failed counts; the Partitions tab: the
Materialized / Failed / Missing counts and the partition total; the overview: the latest
materialization's partition) and the page's GraphQL requests have settled (none in flight for
{QUIET_S:.0f} s; the UI's 5 s code-location poll started after the data showed is ignored).
**Cold**: a fresh browser context (the UI's scripts download again) and Dagster's stored
partition status of the bar assets wiped, so the server rebuilds it from the event log, as it
must after the symbol set changes (the status cache is keyed by the partitions). **Warm**:
the same context navigating to the page again. Budgets: {WARM_BUDGET_S:.0f} s warm, the
response time that keeps an operator on task; {COLD_BUDGET_S:.0f} s cold, where attention is
lost. The notes give the same page's GraphQL requests replayed one by one with httpx: the
server's share."""


@dataclass(frozen=True)
class Marker:
    """Text the page shows once its data is there: `count` elements reading exactly `text`,
    or (count 0) at least one element containing it."""

    text: str
    count: int = 0


@dataclass(frozen=True)
class UiPage:
    name: str
    path: str
    markers: Callable[[SeedPlan], list[Marker]]


def _catalog_markers(plan: SeedPlan) -> list[Marker]:
    """Every bar asset's row shows its materialized, missing and failed partition counts."""
    counts = plan.counts
    return [Marker(f"{counts[cell]:,}", len(SESSION_ASSETS)) for cell in Cell]


def _partitions_markers(plan: SeedPlan) -> list[Marker]:
    counts = plan.counts
    return [
        Marker(f"{plan.symbols * len(plan.sessions):,} Partitions Selected"),
        Marker(f"Materialized ({counts[Cell.MATERIALIZED]})"),
        Marker(f"Failed ({counts[Cell.FAILED]})"),
        Marker(f"Missing ({counts[Cell.MISSING]})"),
    ]


def _overview_markers(plan: SeedPlan) -> list[Marker]:
    return [
        Marker("Latest materialization"),
        Marker(plan.last_materialized_key(), 1),
        Marker("Code location"),
    ]


PAGES = (
    UiPage("asset catalog", "/assets", _catalog_markers),
    UiPage("m15_bars partitions", f"/assets/{M15_BARS}?view=partitions", _partitions_markers),
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
            expect(found).to_have_count(marker.count, timeout=timeout)
            expect(found.last).to_be_visible(timeout=timeout)
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


def _wipe_status(instance: dg.DagsterInstance) -> None:
    instance.wipe_asset_cached_status([dg.AssetKey(a) for a in SESSION_ASSETS])


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
    cold_s: list[float]
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
    plan: SeedPlan,
    *,
    cold_loads: int,
    warm_loads: int,
    screenshots: Path | None = None,
    timeout_s: float = PAGE_TIMEOUT_S,
    progress: Callable[[str], None] = lambda _: None,
    browser: Browser | None = None,
) -> dict[str, PageTimes]:
    """Cold then warm loads of each page, and its GraphQL replayed; seconds per load. In a
    browser of the caller's (a test's, whose Playwright already runs in this thread), else in
    a Chromium of its own."""
    results: dict[str, PageTimes] = {}
    with nullcontext(browser) if browser else _browser() as browser:
        for ui_page in PAGES:
            url, markers = web.url + ui_page.path, ui_page.markers(plan)
            cold: list[float] = []
            warm: list[float] = []
            bodies: list[str] = []
            for _ in range(cold_loads):
                _wipe_status(world.instance)
                context = _context(browser, timeout_s)
                page = context.new_page()
                tracker = GraphqlTracker()
                tracker.attach(page)
                cold.append(_load(page, tracker, url, markers, timeout_s))
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
                path = screenshots / f"{plan.symbols}-{ui_page.name.replace(' ', '-')}.png"
                page.screenshot(path=path)
                shot = str(path)
            context.close()
            graphql_warm = _replay(web, bodies, timeout_s)
            _wipe_status(world.instance)
            graphql_cold = _replay(web, bodies, timeout_s)
            results[ui_page.name] = PageTimes(cold, warm, graphql_cold, graphql_warm, shot)
            progress(
                f"{plan.symbols} symbols, {ui_page.name}: cold "
                f"{', '.join(f'{t:.1f}' for t in cold)} s, warm "
                f"{', '.join(f'{t:.1f}' for t in warm)} s"
            )
    return results


def _slowest(timings: dict[str, float]) -> tuple[str, float]:
    name = max(timings, key=lambda k: timings[k])
    return name, timings[name]


def scale_rows(plan: SeedPlan, seeded: SeedResult, pages: dict[str, PageTimes]) -> list[Row]:
    rows = []
    scale = f"{plan.symbols:,} symbols"
    for name, times in pages.items():
        for kind, samples, budget, graphql in (
            ("cold", times.cold_s, COLD_BUDGET_S, times.graphql_cold),
            ("warm", times.warm_s, WARM_BUDGET_S, times.graphql_warm),
        ):
            p50, worst = statistics.median(samples), max(samples)
            slow_op, slow_s = _slowest(graphql)
            rows.append(
                Row(
                    section="UI",
                    metric=f"{name}, {scale}, {kind} (p50)",
                    measured=p50,
                    unit="s",
                    reference=budget,
                    reference_label="s budget",
                    target="max < 1",
                    met=worst < budget,
                    note=(
                        f"{len(samples)} loads: p50 {p50:.2f} s, max {worst:.2f} s. The same "
                        f"GraphQL requests replayed one by one ({kind}): "
                        f"{sum(graphql.values()):.2f} s in all, slowest {slow_op} {slow_s:.2f} s."
                    ),
                )
            )
    counts = seeded.counts
    rows[0].note += (
        f" Seeded: {plan.symbols:,} symbols x {len(plan.sessions)} sessions = "
        f"{plan.symbols * len(plan.sessions):,} partitions per bar asset (4 assets), of which "
        f"{counts['materialized']:,} materialized, {counts['failed']:,} failed "
        f"({seeded.failed_runs} failed runs), {counts['missing']:,} missing; "
        f"{seeded.events:,} event rows in {sum(seeded.seconds.values()):.0f} s."
    )
    return rows


@dataclass
class UiScaleResult:
    plan: SeedPlan
    seeded: SeedResult
    webserver_ready_s: float
    pages: dict[str, PageTimes]
    rows: list[Row]


def measure_ui_scale(
    world: UiWorld,
    symbols: int,
    *,
    cold_loads: int = 3,
    warm_loads: int = 3,
    screenshots: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> UiScaleResult:
    """Seed `symbols` into `world`'s fresh instance, start the webserver, time the pages."""
    plan = SeedPlan(symbols, world.sessions)
    progress(f"seeding {symbols:,} symbols x {len(plan.sessions)} sessions...")
    seeded = seed(world.instance, plan, progress=progress)
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
    sizes: Sequence[int],
    *,
    cold_loads: int = 3,
    warm_loads: int = 3,
    screenshots: Path | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> BenchReport:
    """Each size in its own scratch world (a fresh database), smallest first."""
    started_at, started = now_iso(), time.perf_counter()
    rows: list[Row] = []
    details: dict[str, Any] = {}
    machine: dict[str, Any] = {}
    for size in sorted(sizes):
        size_started = time.perf_counter()
        with ui_world() as world:
            result = measure_ui_scale(
                world,
                size,
                cold_loads=cold_loads,
                warm_loads=warm_loads,
                screenshots=screenshots,
                progress=progress,
            )
            machine = machine_info(world.database_label)
        rows += result.rows
        details[str(size)] = {
            "sessions": len(result.plan.sessions),
            "seeded": vars(result.seeded),
            "webserver_ready_s": result.webserver_ready_s,
            "pages": {name: vars(times) for name, times in result.pages.items()},
            "wall_s": time.perf_counter() - size_started,
        }
    return BenchReport(
        rows=rows,
        machine=machine,
        sizes={"symbols": list(sizes), "cold_loads": cold_loads, "warm_loads": warm_loads},
        started_at=started_at,
        wall_s=time.perf_counter() - started,
        command=command_line(),
        details=details,
        about=ABOUT,
    )
