"""Pools match the provider: the step that calls a provider holds that provider's pool and
only that one. With the `polygon` pool full (limit 1, held by a Polygon fetch whose answer the
emulator holds), today's refresh (Tradier) and an Alpaca fetch run at once; another Polygon fetch
waits. Real Dagster instance concurrency, the emulator over HTTP, a real PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import date

import dagster as dg
import psycopg
import pytest

from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.services.launch import RunOutcome, configure_pools
from swiftbolt_pipeline_tests.defs.test_provider_routing import _providers, _run
from swiftbolt_pipeline_tests.reliability.helpers import inject, release_held, reset_emulator

WEEK = calendar.sessions_between(date(2026, 3, 9), date(2026, 3, 13))
TODAY = date(2026, 3, 20)  # the session of the pinned clock (TEST_NOW, 12:00 ET)
# Long enough for the two other runs to finish while the Polygon fetch holds its slot.
# The Polygon answer is held until the test releases it; this only bounds a failing test.
POLYGON_HOLD_S = 300


def _wait_for(what: str, condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(0.1)


class _Background:
    """One run in a thread, its outcome kept for the test."""

    def __init__(self, run: Callable[[], RunOutcome]) -> None:
        self.outcome: RunOutcome | None = None
        self._thread = threading.Thread(target=self._target, args=(run,), daemon=True)
        self._thread.start()

    def _target(self, run: Callable[[], RunOutcome]) -> None:
        self.outcome = run()

    def join(self) -> RunOutcome:
        self._thread.join(timeout=120)
        assert self.outcome is not None, "run did not finish"
        return self.outcome


@pytest.fixture
def instance(emulator: str) -> Iterator[dg.DagsterInstance]:
    reset_emulator(emulator)
    with dg.instance_for_test() as instance:
        configure_pools(instance)
        instance.event_log_storage.set_concurrency_slots("polygon", 1)
        yield instance
    reset_emulator(emulator)


def _holders(instance: dg.DagsterInstance, pool: str) -> set[tuple[str, str]]:
    info = instance.event_log_storage.get_concurrency_info(pool)
    return {(slot.run_id, slot.step_key) for slot in info.claimed_slots}


def _waiting(instance: dg.DagsterInstance, pool: str) -> set[str]:
    """Runs with a step queued for a slot of `pool` (not assigned one yet)."""
    info = instance.event_log_storage.get_concurrency_info(pool)
    return {step.run_id for step in info.pending_steps if step.assigned_timestamp is None}


def _succeeded(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    return {
        str(event.step_key).removeprefix("m15_bars.")
        for event in instance.all_logs(run_id)
        if event.dagster_event and event.dagster_event.is_step_success
    }


# Five runs, two of them in the background: the slow suite.
@pytest.mark.slow
def test_today_and_alpaca_never_wait_for_a_polygon_slot(
    pipeline_env: dict[str, str],
    emulator: str,
    instance: dg.DagsterInstance,
    conn: psycopg.Connection,
) -> None:
    inject(emulator, {"route": "polygon", "kind": "hold", "seconds": POLYGON_HOLD_S})
    backfill = _Background(lambda: _run(["SPY"], WEEK, instance))
    _wait_for(
        "the Polygon backfill to hold the polygon slot", lambda: bool(_holders(instance, "polygon"))
    )
    [(holder_run, holder_step)] = _holders(instance, "polygon")

    # Control: the pool is enforced, a second Polygon fetch waits for the slot.
    queued = _Background(lambda: _run(["DIA"], WEEK, instance))
    _wait_for("the second Polygon fetch to wait", lambda: bool(_waiting(instance, "polygon")))

    try:
        today = _run(["QQQ"], [TODAY], instance)
        alpaca = _run(["IWM"], WEEK, instance, provider="alpaca")

        # Both done while the held Polygon fetch still holds the only polygon slot.
        assert _holders(instance, "polygon") == {(holder_run, holder_step)}
        assert today.success, today.error
        assert alpaca.success, alpaca.error
        assert not {today.run_id, alpaca.run_id} & _waiting(instance, "polygon")
        # The bars of 09:30..11:45 ET are complete at 12:00.
        assert _providers(conn, "QQQ") == {"tradier": 10}
        assert _providers(conn, "IWM") == {"alpaca": 26 * len(WEEK)}
        # Only the provider each run needed was called; the other provider steps were skipped.
        assert _succeeded(instance, today.run_id) == {"m15_plan", "m15_tradier", "m15_checks"}
        assert _succeeded(instance, alpaca.run_id) == {"m15_plan", "m15_alpaca", "m15_checks"}
    finally:
        release_held(emulator)
    assert backfill.join().success
    assert queued.join().success
    assert backfill.join().run_id == holder_run
    assert _providers(conn, "SPY") == {"polygon": 26 * len(WEEK)}
    assert _providers(conn, "DIA") == {"polygon": 26 * len(WEEK)}
