from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from swiftbolt_pipeline.emulator import EmulatorSettings, running_emulator
from swiftbolt_pipeline_tests.emulator.emulator_helpers import KEY, aggs

POLYGON_429 = (
    "You've exceeded the maximum requests per minute, please wait or upgrade your subscription"
    " to continue. https://polygon.io/pricing"
)


def _poly(base: str) -> httpx.Response:
    return aggs(base, "GENR", "2025-06-02", "2025-06-02")


def _tradier(base: str) -> httpx.Response:
    return httpx.get(
        f"{base}/v1/markets/timesales",
        params={"symbol": "GENR", "start": "2025-06-02 09:30", "end": "2025-06-02 10:00"},
        headers={"Authorization": f"Bearer {KEY}"},
    )


def test_rolling_window_rate_limit() -> None:
    settings = EmulatorSettings(api_key=KEY, rate_limit=3, rate_window_s=2.0)
    with running_emulator(settings) as base:
        assert _poly(base).status_code == 200
        t0 = time.monotonic()  # the server recorded the first request before this instant
        time.sleep(1.0)
        assert [_poly(base).status_code for _ in range(2)] == [200, 200]
        r = _poly(base)
        assert r.status_code == 429
        assert r.json()["status"] == "ERROR" and r.json()["error"] == POLYGON_429
        assert r.json()["request_id"]
        assert "retry-after" not in r.headers
        assert _tradier(base).status_code == 200  # counted per provider route
        # the first request leaves the rolling window at t0 + 2 s: one slot frees, not three
        time.sleep(max(0.0, t0 + 2.05 - time.monotonic()))
        assert _poly(base).status_code == 200
        assert _poly(base).status_code == 429
        stats = httpx.get(f"{base}/_emulator/stats").json()
        assert stats["rejected_429"] == {"polygon": 2, "tradier": 0}
        assert stats["requests"] == {"polygon": 6, "tradier": 1}
        assert stats["by_status"] == {"200": 5, "429": 2}


def test_rejected_requests_do_not_count_and_retry_after() -> None:
    settings = EmulatorSettings(api_key=KEY, rate_limit=2, rate_window_s=1.0, retry_after=True)
    with running_emulator(settings) as base:
        assert [_poly(base).status_code for _ in range(2)] == [200, 200]
        for _ in range(5):  # hammering while limited must not extend the window
            r = _poly(base)
            assert r.status_code == 429
            assert r.headers["retry-after"] in ("1",)
        time.sleep(1.1)
        assert [_poly(base).status_code for _ in range(3)] == [200, 200, 429]
        r = _tradier(base)
        assert r.status_code == 200
        _tradier(base)
        r = _tradier(base)
        assert r.status_code == 429 and "retry-after" in r.headers


def test_runtime_config_changes_rate_limit(emu: str) -> None:
    r = httpx.put(f"{emu}/_emulator/config", json={"rate_limit": 1, "rate_window_s": 30})
    assert r.json()["rate_limit"] == 1
    assert _poly(emu).status_code == 200
    assert _poly(emu).status_code == 429
    httpx.put(f"{emu}/_emulator/config", json={"rate_limit": None})
    assert _poly(emu).status_code == 200
    bad = httpx.put(f"{emu}/_emulator/config", json={"rate_limit": -1})
    assert bad.status_code == 400
    assert httpx.put(f"{emu}/_emulator/config", json={"nope": 1}).status_code == 400


def test_status_faults_then_recovery(emu: str) -> None:
    r = httpx.post(
        f"{emu}/_emulator/faults",
        json={"route": "polygon", "kind": "status", "status": 503, "count": 2},
    )
    assert r.status_code == 200 and r.json()["faults"][0]["count"] == 2
    assert _tradier(emu).status_code == 200  # other route unaffected
    assert [_poly(emu).status_code for _ in range(3)] == [503, 503, 200]
    stats = httpx.get(f"{emu}/_emulator/stats").json()
    assert stats["by_status"] == {"200": 2, "503": 2}
    assert [e["status"] for e in stats["log"]] == [200, 503, 503, 200]
    assert all(e["route"] in ("polygon", "tradier") for e in stats["log"])
    assert "apiKey=REDACTED" in stats["log"][1]["query"]
    assert KEY not in json.dumps(stats)


def test_malformed_delay_disconnect_and_clear(emu: str) -> None:
    faults = [
        {"route": "*", "kind": "malformed"},
        {"route": "polygon", "kind": "delay", "seconds": 0.5},
        {"route": "polygon", "kind": "disconnect"},
    ]
    assert httpx.post(f"{emu}/_emulator/faults", json=faults).status_code == 200
    r = _tradier(emu)
    assert r.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)
    t0 = time.monotonic()
    r = _poly(emu)
    assert r.status_code == 200 and r.json()["resultsCount"] > 0
    assert time.monotonic() - t0 >= 0.5
    with pytest.raises(httpx.RemoteProtocolError):
        _poly(emu)
    assert _poly(emu).status_code == 200
    httpx.post(f"{emu}/_emulator/faults", json={"route": "*", "kind": "status", "count": 5})
    assert len(httpx.get(f"{emu}/_emulator/faults").json()["faults"]) == 1
    httpx.delete(f"{emu}/_emulator/faults")
    assert _poly(emu).status_code == 200
    bad = httpx.post(f"{emu}/_emulator/faults", json={"route": "x", "kind": "status"})
    assert bad.status_code == 400


def test_hold_answers_once_released_or_after_its_seconds(emu: str) -> None:
    httpx.post(f"{emu}/_emulator/faults", json={"route": "polygon", "kind": "hold", "seconds": 300})
    with ThreadPoolExecutor(max_workers=1) as pool:
        held = pool.submit(_poly, emu)
        deadline = time.monotonic() + 30
        while httpx.get(f"{emu}/_emulator/faults").json()["faults"]:  # not yet taken
            assert time.monotonic() < deadline, "the request never reached the emulator"
            time.sleep(0.02)
        assert httpx.get(f"{emu}/_emulator/stats").json()["log"] == []  # taken, not answered
        assert not held.done()
        assert httpx.post(f"{emu}/_emulator/release").json() == {"released": True}
        response = held.result(timeout=30)
    assert response.status_code == 200 and response.json()["resultsCount"] > 0
    assert httpx.get(f"{emu}/_emulator/stats").json()["log"][-1]["fault"] == "hold"
    # A hold nobody releases ends after its seconds.
    httpx.post(f"{emu}/_emulator/faults", json={"route": "polygon", "kind": "hold", "seconds": 0.2})
    t0 = time.monotonic()
    assert _poly(emu).status_code == 200
    assert time.monotonic() - t0 >= 0.2


def test_reset_clears_counters_and_faults(emu: str) -> None:
    httpx.post(f"{emu}/_emulator/faults", json={"route": "*", "kind": "status", "count": 9})
    assert _poly(emu).status_code == 503
    httpx.post(f"{emu}/_emulator/reset")
    stats = httpx.get(f"{emu}/_emulator/stats").json()
    assert stats["requests"] == {"polygon": 0, "tradier": 0} and stats["log"] == []
    assert stats["faults_pending"] == []
    assert _poly(emu).status_code == 200
