from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from swiftbolt_pipeline.emulator import EmulatorSettings, running_emulator
from swiftbolt_pipeline_tests.emulator.emulator_helpers import KEY


@pytest.fixture(scope="session")
def emulator_url() -> Iterator[str]:
    with running_emulator(EmulatorSettings(api_key=KEY)) as url:
        yield url


@pytest.fixture
def emu(emulator_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The shared emulator, reset before each test, with the clock fixed after the data."""
    monkeypatch.setenv("SWIFTBOLT_NOW", "2026-11-20T12:00:00-05:00")
    httpx.post(f"{emulator_url}/_emulator/reset").raise_for_status()
    httpx.put(
        f"{emulator_url}/_emulator/config",
        json={
            "rate_limit": None,
            "rate_window_s": 60,
            "retry_after": False,
            "page_size": None,
            "next_url_base": None,
        },
    ).raise_for_status()
    yield emulator_url
