"""Who may call the API: writes need a token (or the explicit insecure mode), and the Host
header must name this server (DNS rebinding), with the contract's error body either way."""

from __future__ import annotations

import dagster as dg
import httpx
import psycopg
import pytest

from swiftbolt_pipeline_tests.api.conftest import BASE_URL, TOKEN, TestClient, make_app

ENSURE = {"symbol": "SPY", "timeframe": "h1", "window_days": 30}
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _watched(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute("SELECT ticker FROM symbols ORDER BY ticker").fetchall()
    conn.commit()
    return [r[0] for r in rows]


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    return body["error"]["message"]


def test_without_a_token_the_api_is_read_only(
    pipeline_env: dict[str, str], instance: dg.DagsterInstance, conn: psycopg.Connection
) -> None:
    app = make_app(pipeline_env["DATABASE_URL"], instance)
    with TestClient(app, base_url=BASE_URL) as client:
        refused = client.post("/v1/ensure-coverage", json=ENSURE)
        read = client.get("/v1/coverage", params={"symbol": "SPY", "window_days": 30})
        tokens = client.get("/v1/tokens/polygon")
    message = _error(refused, 403, "WRITES_DISABLED")
    assert "SWIFTBOLT_API_TOKEN" in message
    assert _watched(conn) == []  # nothing added, no backfill requested
    assert read.status_code == 200 and read.json()["status"] == "gaps_detected"
    assert tokens.status_code == 200


def test_writes_with_the_token_or_in_the_explicit_insecure_mode(
    pipeline_env: dict[str, str], instance: dg.DagsterInstance, conn: psycopg.Connection
) -> None:
    url = pipeline_env["DATABASE_URL"]
    with TestClient(make_app(url, instance, TOKEN), base_url=BASE_URL) as client:
        without = client.post("/v1/ensure-coverage", json=ENSURE)
        with_token = client.post("/v1/ensure-coverage", json=ENSURE, headers=AUTH)
    _error(without, 401, "UNAUTHORIZED")
    assert with_token.status_code == 200, with_token.text
    assert _watched(conn) == ["SPY"]
    insecure = make_app(url, instance, tokenless_writes=True)
    with TestClient(insecure, base_url=BASE_URL) as client:
        ensured = client.post("/v1/ensure-coverage", json={**ENSURE, "symbol": "QQQ"})
    assert ensured.status_code == 200, ensured.text
    assert ensured.json()["symbol"] == "QQQ"
    assert _watched(conn) == ["QQQ", "SPY"]


ANSWERED = [
    "localhost",
    "LOCALHOST:8000",
    "localhost.:8000",
    "127.0.0.1",
    "127.0.0.1:8000",
    "[::1]",
    "[::1]:8000",
    "api.example.org",  # configured
    "api.example.org:443",
    "10.0.0.7:8000",  # configured as a bare address
]
REFUSED = [
    "evil.example",
    "evil.example:8000",
    "localhost.evil.example",
    "127.0.0.1.nip.io",
    "example.org",
    "[::1",
    "localhost:abc",
    "localhost:80:80",
    "",
]


@pytest.mark.parametrize("token", [None, TOKEN])
def test_only_known_host_headers_are_answered(
    pipeline_env: dict[str, str],
    instance: dg.DagsterInstance,
    conn: psycopg.Connection,
    token: str | None,
) -> None:
    """A page that re-points its own domain at 127.0.0.1 (DNS rebinding) sends its domain as
    Host: refused before anything else, with or without a token, even for a permitted write."""
    app = make_app(
        pipeline_env["DATABASE_URL"],
        instance,
        token,
        tokenless_writes=True,
        hosts=("API.example.org", "10.0.0.7"),
    )
    with TestClient(app, base_url=BASE_URL) as client:
        answered = {
            host: client.get("/v1/tokens/polygon", headers={"host": host, **AUTH}).status_code
            for host in ANSWERED
        }
        refused = {
            host: client.post("/v1/ensure-coverage", json=ENSURE, headers={"host": host, **AUTH})
            for host in REFUSED
        }
        no_auth = client.get("/v1/tokens/polygon", headers={"host": "evil.example"})
    assert answered == dict.fromkeys(ANSWERED, 200)
    for host, response in refused.items():
        message = _error(response, 400, "INVALID_HOST")
        assert repr(host) in message and "--allow-host" in message
    _error(no_auth, 400, "INVALID_HOST")  # not 401: nothing learned about the auth setup
    assert _watched(conn) == []


def test_a_huge_host_header_is_not_echoed_whole(
    pipeline_env: dict[str, str], instance: dg.DagsterInstance
) -> None:
    app = make_app(pipeline_env["DATABASE_URL"], instance)
    with TestClient(app, base_url=BASE_URL) as client:
        response = client.get("/v1/tokens/polygon", headers={"host": "a" * 5000 + ".example"})
    assert len(_error(response, 400, "INVALID_HOST")) < 400
