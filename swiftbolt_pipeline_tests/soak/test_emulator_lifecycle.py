"""The emulator's lifecycle admin route: a delisted ticker has bars until its last session and
none after; a halted session has none; bad input is refused and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from swiftbolt_pipeline_tests.conftest import EMULATOR_KEY

NY = ZoneInfo("America/New_York")


@pytest.fixture
def admin(emulator: str) -> Iterator[str]:
    httpx.delete(f"{emulator}/_emulator/lifecycles").raise_for_status()
    yield emulator
    httpx.delete(f"{emulator}/_emulator/lifecycles").raise_for_status()


def _days_with_bars(url: str, ticker: str) -> list[str]:
    body = httpx.get(
        f"{url}/v2/aggs/ticker/{ticker}/range/15/minute/2025-03-03/2025-03-07",
        params={"apiKey": EMULATOR_KEY, "limit": 50000},
    ).json()
    return sorted(
        {
            datetime.fromtimestamp(r["t"] / 1000, UTC).astimezone(NY).date().isoformat()
            for r in body.get("results", [])
        }
    )


def test_delisted_and_halted_sessions_have_no_bars(admin: str) -> None:
    before = _days_with_bars(admin, "LIFE")
    assert before == ["2025-03-03", "2025-03-04", "2025-03-05", "2025-03-06", "2025-03-07"]
    answer = httpx.post(
        f"{admin}/_emulator/lifecycles",
        json={"ticker": "life", "delisted_after": "2025-03-06", "halted": ["2025-03-04"]},
    )
    assert answer.status_code == 200
    assert answer.json()["lifecycles"]["LIFE"]["delisted_after"] == "2025-03-06"
    assert _days_with_bars(admin, "LIFE") == ["2025-03-03", "2025-03-05", "2025-03-06"]


@pytest.mark.parametrize(
    "bad",
    [
        {"ticker": "ZZNOPE"},
        {"ticker": "LIFE", "delisted_after": "March"},
        {"ticker": "LIFE", "listed_from": "2025-03-06", "delisted_after": "2025-03-04"},
        {"ticker": "LIFE", "halted": "2025-03-04"},
        {"ticker": "LIFE", "unknown": 1},
    ],
)
def test_bad_lifecycles_are_refused_and_change_nothing(admin: str, bad: dict) -> None:
    answer = httpx.post(f"{admin}/_emulator/lifecycles", json=bad)
    assert answer.status_code == 400
    assert httpx.get(f"{admin}/_emulator/lifecycles").json() == {"lifecycles": {}}
