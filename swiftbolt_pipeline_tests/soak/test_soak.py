"""The operations simulation end to end: the real sensors, schedules and runs over consecutive
sessions with the chaos plan, then the audit must pass (0 wrong, missing or provisional past
sessions, 0 rows from an unconfigured provider, requests within the floor, 0 x 429)."""

from __future__ import annotations

import os
from datetime import date

import pytest

from swiftbolt_pipeline.soak.audit import format_report
from swiftbolt_pipeline.soak.plan import build_plan
from swiftbolt_pipeline.soak.runner import Simulation


def _simulate(
    start: date, sessions: int, symbols: int, every: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The simulation points this process at its own Dagster instance; restore the environment.
    for key in list(os.environ):
        monkeypatch.setenv(key, os.environ[key])
    plan = build_plan(start, sessions=sessions, symbols=symbols, seed=7, intraday_every_min=every)
    simulation = Simulation(plan, log=lambda _line: None)
    report = simulation.run()
    assert report.passed, "\n".join(simulation.tally.events) + "\n" + format_report(report)


@pytest.mark.slow  # about a minute of simulated sessions; CI's slow suite runs it
def test_short_soak_audit_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few sessions, the smallest roster (one symbol per role and two normal ones)."""
    _simulate(date(2026, 12, 7), 3, 7, 60, monkeypatch)


@pytest.mark.slow
@pytest.mark.soak
def test_full_soak_audit_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """At least 20 sessions x 20 symbols with the whole chaos plan, across Thanksgiving and
    the early close after it."""
    _simulate(date(2026, 11, 2), 20, 20, 30, monkeypatch)
