"""`swiftbolt serve` as a user runs it: the installed command on a free port, over real HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import psycopg

from swiftbolt_pipeline_tests.e2e.cli_runner import PASSTHROUGH, SWIFTBOLT

READY_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_answers_over_http_and_stops_on_sigterm(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    port = _free_port()
    env = {k: os.environ[k] for k in PASSTHROUGH if k in os.environ}
    env.update(pipeline_env)
    env["SWIFTBOLT_API_TOKEN"] = "serve-test-token"
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [SWIFTBOLT, "serve", "--port", str(port)], env=env, stdout=out, stderr=out
        )
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": "Bearer serve-test-token"}
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                httpx.get(f"{base}/openapi.json", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
        with httpx.Client(base_url=base, timeout=30) as client:
            denied = client.get("/v1/tokens/polygon")
            assert denied.status_code == 401
            assert denied.json()["error"]["code"] == "UNAUTHORIZED"

            tokens = client.get("/v1/tokens/polygon", headers=auth)
            assert tokens.status_code == 200, tokens.text
            assert tokens.json()["provider"] == "polygon"

            ensured = client.post(
                "/v1/ensure-coverage",
                json={"symbol": "SPY", "timeframe": "h1", "window_days": 30},
                headers=auth,
            )
            assert ensured.status_code == 200, ensured.text
            coverage = client.get(
                "/v1/coverage", params={"symbol": "SPY", "timeframe": "h1"}, headers=auth
            )
            assert coverage.status_code == 200, coverage.text
            assert coverage.json() == ensured.json()
            assert coverage.json()["status"] == "gaps_detected"

            bars = client.get(
                "/v1/bars",
                params={"symbol": "SPY", "start": "2026-03-02T00:00:00Z", "end": "2026-03-03"},
                headers=auth,
            )
            assert bars.status_code == 200, bars.text
            assert bars.json() == {"symbol": "SPY", "timeframe": "h1", "bars": []}

            document = client.get("/openapi.json", headers=auth).json()
            assert "/v1/bars" in document["paths"]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    # uvicorn shuts down gracefully, then re-raises the signal it caught: killed by SIGTERM.
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert "Traceback" not in log.read_text()


def _start(args: list[str], env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    full_env = {k: os.environ[k] for k in PASSTHROUGH if k in os.environ} | env
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [SWIFTBOLT, "serve", "--port", str(port), *args], env=full_env, stdout=out, stderr=out
        )
    return proc, f"http://127.0.0.1:{port}"


def _wait_ready(proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            httpx.get(f"{base}/openapi.json", timeout=2)
            return
        except httpx.TransportError:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)


def test_serve_without_a_token_is_read_only_unless_started_insecure(
    pipeline_env: dict[str, str], conn: psycopg.Connection, tmp_path: Path
) -> None:
    """Both servers start at once (each takes seconds to import its stack)."""
    env = {k: v for k, v in pipeline_env.items() if k != "SWIFTBOLT_API_TOKEN"}
    plain_log, open_log = tmp_path / "plain.log", tmp_path / "insecure.log"
    plain, plain_url = _start([], env, plain_log)
    insecure, open_url = _start(["--insecure-no-token", "--allow-host", "box.test"], env, open_log)
    request = {"symbol": "SPY", "timeframe": "h1", "window_days": 30}
    try:
        _wait_ready(plain, plain_url, plain_log)
        _wait_ready(insecure, open_url, open_log)
        refused = httpx.post(f"{plain_url}/v1/ensure-coverage", json=request, timeout=30)
        read = httpx.get(f"{plain_url}/v1/tokens/polygon", timeout=30)
        assert conn.execute("SELECT count(*) FROM symbols").fetchone() == (0,)
        conn.commit()
        rebound = httpx.post(
            f"{open_url}/v1/ensure-coverage", json=request, headers={"host": "evil.test"}
        )
        named = httpx.get(f"{open_url}/v1/tokens/polygon", headers={"host": "box.test:80"})
        assert conn.execute("SELECT count(*) FROM symbols").fetchone() == (0,)
        conn.commit()
        ensured = httpx.post(f"{open_url}/v1/ensure-coverage", json=request, timeout=30)
    finally:
        for proc in (plain, insecure):
            proc.send_signal(signal.SIGTERM)
        for proc in (plain, insecure):
            proc.wait(timeout=30)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "WRITES_DISABLED"
    assert read.status_code == 200
    assert rebound.status_code == 400 and rebound.json()["error"]["code"] == "INVALID_HOST"
    assert named.status_code == 200
    assert ensured.status_code == 200 and ensured.json()["symbol"] == "SPY"
    assert conn.execute("SELECT ticker FROM symbols").fetchall() == [("SPY",)]
    assert "read-only" in plain_log.read_text()
    assert "--insecure-no-token" in open_log.read_text()
    for log in (plain_log, open_log):
        assert "Traceback" not in log.read_text()


def test_serve_help_says_what_the_insecure_flag_allows() -> None:
    result = subprocess.run(
        [SWIFTBOLT, "serve", "--help"],
        env={k: os.environ[k] for k in PASSTHROUGH if k in os.environ},
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = " ".join(result.stdout.split())
    assert "--insecure-no-token" in text and "--allow-host" in text
    assert "adds symbols to the watchlist and spends the providers' request budget" in text
    assert "DNS rebinding" in text
