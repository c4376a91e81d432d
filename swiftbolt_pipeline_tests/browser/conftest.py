"""Fixtures for the browser suite: Debian's Chromium driven by Playwright, and one
`swiftbolt dev` (webserver + daemon) on a fresh embedded PostgreSQL with the built-in emulator.

Nothing is installed here: `make test-browser` installs Chromium. Without it every test fails
(never skips) and says so.

Screenshots go to `test-artifacts/browser/` (gitignored). With SWIFTBOLT_DOCS_SCREENSHOTS=1 the
ones the README shows are also copied to `docs/`."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    Page,
    Playwright,
    ViewportSize,
    expect,
    sync_playwright,
)

from swiftbolt_pipeline_tests.conftest import TEST_HISTORY_START, TEST_NOW
from swiftbolt_pipeline_tests.e2e.cli_runner import run_cli
from swiftbolt_pipeline_tests.e2e.test_cli_dev import STOP_TIMEOUT_S, DevServer, dev_server

CHROMIUM = Path("/usr/bin/chromium")
# What this closed network needs (machine notes): no sandbox as root, no GPU, and none of
# Chromium's own background connections, which the network refuses.
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
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
DOCS = ROOT / "docs"
VIEWPORT: ViewportSize = {"width": 1440, "height": 900}
# The symbol `swiftbolt watch add` puts on the watchlist before the UI starts; the watchlist
# sensor turns it into a `symbol` partition and the gap sensor fills its 10-day window.
WATCHED = "SPY"
WATCH_WINDOW_DAYS = "10"


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's Chromium. "
            "Run `make test-browser` (it installs it with apt-get and runs this suite).",
            pytrace=False,
        )
    return CHROMIUM


# Assertions wait as long as actions do (Playwright's own default is 5 s): on a busy machine the
# UI can take longer than that to render what a page's first queries return.
expect.set_options(timeout=30_000)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


@pytest.fixture(scope="session")
def browser(playwright: Playwright, chromium_path: Path) -> Iterator[Browser]:
    chromium = playwright.chromium.launch(executable_path=str(chromium_path), args=CHROMIUM_ARGS)
    try:
        yield chromium
    finally:
        chromium.close()


@pytest.fixture(scope="session")
def ui_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A fresh SWIFTBOLT_HOME (embedded PostgreSQL), no DATABASE_URL, no provider keys (the
    built-in emulator), the pinned clock; SPY watched."""
    env = {
        "SWIFTBOLT_HOME": str(tmp_path_factory.mktemp("ui") / "home"),
        "SWIFTBOLT_NOW": TEST_NOW,
        "SWIFTBOLT_HISTORY_START": TEST_HISTORY_START,
    }
    added = run_cli("watch", "add", WATCHED, "--window-days", WATCH_WINDOW_DAYS, env=env)
    assert added.returncode == 0, added.stderr
    return env


@pytest.fixture(scope="session")
def dagster_ui(
    ui_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory, chromium_path: Path
) -> Iterator[DevServer]:
    """`swiftbolt dev --port <free>`, ready; it and all it started are killed afterwards."""
    with dev_server(ui_env, tmp_path_factory.mktemp("dev")) as server:
        yield server
        # A stop signal first, so `swiftbolt dev` also stops the embedded PostgreSQL (which
        # is not its child); dev_server() then SIGKILLs whatever is left.
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(STOP_TIMEOUT_S)
        finally:
            shutil.copyfile(server.log, _artifacts() / "swiftbolt-dev.log")


def _artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session", autouse=True)
def _fresh_artifacts() -> None:
    """Screenshots of this run only: no FAILED-*.png left over from an earlier one."""
    shutil.rmtree(ARTIFACTS, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    report = yield
    item.stash.setdefault(_FAILED, False)
    if report.failed:
        item.stash[_FAILED] = True
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh page in the exchange's time zone; a screenshot of it is kept if the test fails."""
    context = browser.new_context(
        viewport=VIEWPORT,
        timezone_id="America/New_York",
        locale="en-US",
    )
    context.set_default_timeout(30_000)
    new_page = context.new_page()
    try:
        yield new_page
    finally:
        if request.node.stash.get(_FAILED, False):
            new_page.screenshot(path=_artifacts() / f"FAILED-{request.node.name}.png")
        context.close()


class Shots:
    """Named screenshots: always into test-artifacts/browser/, optionally into docs/."""

    def __init__(self) -> None:
        self.to_docs = os.environ.get("SWIFTBOLT_DOCS_SCREENSHOTS") == "1"

    def take(self, page: Page, name: str, *, docs: bool = False, full_page: bool = False) -> Path:
        path = _artifacts() / f"{name}.png"
        page.screenshot(path=path, full_page=full_page)
        if docs and self.to_docs:
            DOCS.mkdir(exist_ok=True)
            shutil.copyfile(path, DOCS / path.name)
        return path


@pytest.fixture(scope="session")
def shots() -> Shots:
    return Shots()


def graphql(server: DevServer, query: str, variables: dict | None = None) -> dict:
    response = httpx.post(
        f"{server.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    return body["data"]
