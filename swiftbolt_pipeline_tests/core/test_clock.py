"""Injected clocks: the fake one moves only when slept on, the system one can be pinned."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from swiftbolt_pipeline.core.clock import SystemClock
from swiftbolt_pipeline_tests.doubles import FakeClock

START = datetime(2026, 3, 20, 16, 0, tzinfo=UTC)


def test_fake_clock_records_sleeps_and_advances() -> None:
    clock = FakeClock(START)
    assert clock.now() == START
    clock.sleep(1.5)
    clock.sleep(0.25)
    assert clock.sleeps == [1.5, 0.25]
    assert clock.now() == START + timedelta(seconds=1.75)
    clock.advance(10)
    assert clock.now() == START + timedelta(seconds=11.75)
    assert clock.sleeps == [1.5, 0.25]  # advancing is not sleeping


def test_fake_clock_never_goes_backwards() -> None:
    clock = FakeClock(START)
    clock.sleep(-5)
    clock.advance(-1)
    assert clock.now() == START
    assert clock.sleeps == [-5]


def test_system_clock_pinned_and_live() -> None:
    assert SystemClock(START).now() == START
    live = SystemClock().now()
    assert live.tzinfo is not None
    assert abs((live - datetime.now(UTC)).total_seconds()) < 5


def test_system_clock_sleep_zero_and_negative_return_at_once() -> None:
    began = time.monotonic()
    SystemClock().sleep(0)
    SystemClock().sleep(-3)
    SystemClock(START).sleep(0.01)
    assert time.monotonic() - began < 0.5
