"""Every endpoint of the HTTP API against the real test PostgreSQL: answers, errors and auth."""

from __future__ import annotations

import hmac
import uuid
from datetime import UTC, date, datetime

import dagster as dg
import psycopg
import pytest
from fastapi import FastAPI

from swiftbolt_pipeline.api import app as app_module
from swiftbolt_pipeline.api.auth import token_matches
from swiftbolt_pipeline.api.models import BarsOut
from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.models import Timeframe
from swiftbolt_pipeline.defs.jobs import BARS_JOB
from swiftbolt_pipeline.names import range_tags
from swiftbolt_pipeline.services.ensure import symbol_coverage
from swiftbolt_pipeline.storage import ratelimit, watchlist
from swiftbolt_pipeline_tests.api.conftest import BASE_URL, TOKEN, TestClient, make_app
from swiftbolt_pipeline_tests.defs.test_m15_asset import _run


def _error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert "Traceback" not in response.text
    return body["error"]["message"]


def _queue(instance: dg.DagsterInstance, tags: dict[str, str], status: dg.DagsterRunStatus) -> None:
    instance.add_run(
        dg.DagsterRun(job_name=BARS_JOB, run_id=str(uuid.uuid4()), status=status, tags=tags)
    )


# --- /v1/coverage -------------------------------------------------------------------------------


def test_coverage_of_an_unknown_symbol_reports_every_session_missing(
    client: TestClient, conn: psycopg.Connection
) -> None:
    response = client.get("/v1/coverage", params={"symbol": "zzzz", "window_days": 30})
    assert response.status_code == 200, response.text
    body = response.json()
    sessions = calendar.sessions_between(date(2026, 2, 18), date(2026, 3, 20))
    assert body == {
        "symbol": "ZZZZ",
        "timeframe": "h1",
        "window_days": 30,
        "status": "gaps_detected",
        "backfill_progress": {
            "total_slices": len(sessions),
            "completed_slices": 0,
            "running_slices": 0,
            "queued_slices": 0,
            "progress_percent": 0.0,
            "bars_written": 0,
        },
        "gaps": [{"start": "2026-02-18", "end": "2026-03-20", "sessions": len(sessions)}],
    }
    # Reading coverage never touches the watchlist.
    assert watchlist.list_symbols(conn, active_only=False) == []


def test_coverage_counts_bars_and_inflight_runs_like_the_cli(
    client: TestClient, conn: psycopg.Connection, instance: dg.DagsterInstance
) -> None:
    watchlist.add(conn, ["SPY"], window_days=30)
    conn.commit()
    filled = calendar.sessions_between(date(2026, 3, 2), date(2026, 3, 6))
    assert _run("SPY", filled, instance, selection=["m15_bars", "h1_bars"]).success
    _queue(
        instance,
        range_tags("SPY", "SPY", date(2026, 2, 18), date(2026, 2, 27)),
        dg.DagsterRunStatus.NOT_STARTED,  # queued (no code location needed)
    )
    _queue(
        instance,
        range_tags("SPY", "SPY", date(2026, 3, 9), date(2026, 3, 12)),
        dg.DagsterRunStatus.STARTED,
    )
    body = client.get("/v1/coverage", params={"symbol": "SPY", "timeframe": "h1"}).json()
    assert body["window_days"] == 30  # the watchlist's window
    assert body["status"] == "backfill_running"
    progress = body["backfill_progress"]
    assert progress["completed_slices"] == 5
    assert progress["bars_written"] == 5 * 7
    assert progress["queued_slices"] == len(
        calendar.sessions_between(date(2026, 2, 18), date(2026, 2, 27))
    )
    assert progress["running_slices"] == 4
    # The same object `swiftbolt coverage --json` prints: one implementation.
    expected = symbol_coverage(
        conn, instance, Settings.from_env(), symbol="SPY", timeframe=Timeframe.H1
    ).to_json()
    assert body == expected


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"symbol": "A B"}, "INVALID_SYMBOL"),
        ({"symbol": "TOOLONGX"}, "INVALID_SYMBOL"),
        ({}, "INVALID_SYMBOL"),
        ({"symbol": "SPY", "timeframe": "h2"}, "INVALID_TIMEFRAME"),
        ({"symbol": "SPY", "window_days": 0}, "INVALID_RANGE"),
        ({"symbol": "SPY", "window_days": "many"}, "INVALID_RANGE"),
        ({"symbol": "SPY", "window_days": 10**12}, "INVALID_RANGE"),
    ],
)
def test_coverage_rejects_bad_input(client: TestClient, params: dict, code: str) -> None:
    message = _error(client.get("/v1/coverage", params=params), 422, code)
    assert message


def test_timeframe_error_lists_the_valid_ones(client: TestClient) -> None:
    message = _error(
        client.get("/v1/coverage", params={"symbol": "SPY", "timeframe": "h2"}),
        422,
        "INVALID_TIMEFRAME",
    )
    assert message == "unknown timeframe 'h2' (valid: m5, m15, h1, h4, d1, w1, mo1)"


# --- /v1/ensure-coverage ------------------------------------------------------------------------


def test_ensure_coverage_adds_the_symbol_once_and_is_idempotent(
    client: TestClient, conn: psycopg.Connection, instance: dg.DagsterInstance
) -> None:
    request = {"symbol": "msft", "timeframe": "h1", "window_days": 45}
    first = client.post("/v1/ensure-coverage", json=request)
    assert first.status_code == 200, first.text
    assert first.json()["symbol"] == "MSFT"
    assert first.json()["status"] == "gaps_detected"
    (row,) = watchlist.list_symbols(conn)
    assert (row.ticker, row.is_active, row.window_days, row.priority) == ("MSFT", True, 45, 0)

    # While the backfill the sensor launched is queued, asking again changes nothing.
    _queue(
        instance,
        range_tags("MSFT", "MSFT", date(2026, 2, 3), date(2026, 3, 19)),
        dg.DagsterRunStatus.NOT_STARTED,  # queued (no code location needed)
    )
    runs = len(instance.get_runs())
    again = [client.post("/v1/ensure-coverage", json=request).json() for _ in range(3)]
    assert again[0] == again[1] == again[2]
    assert again[0]["status"] == "backfill_running"
    assert again[0]["backfill_progress"]["queued_slices"] > 0
    assert len(instance.get_runs()) == runs
    conn.commit()
    assert watchlist.list_symbols(conn, active_only=False) == [row]


def test_ensure_coverage_widens_but_never_narrows_and_reactivates(
    client: TestClient, conn: psycopg.Connection
) -> None:
    watchlist.add(conn, ["AAPL"], window_days=100, priority=7)
    watchlist.ensure(conn, ["IBM"])  # known (one-off backfill) but not watched
    conn.commit()
    narrow = client.post("/v1/ensure-coverage", json={"symbol": "AAPL", "window_days": 10})
    assert narrow.json()["window_days"] == 10  # the report covers what was asked
    client.post("/v1/ensure-coverage", json={"symbol": "AAPL", "window_days": 300})
    client.post("/v1/ensure-coverage", json={"symbol": "IBM"})  # defaults: h1, 730
    rows = {r.ticker: r for r in watchlist.list_symbols(conn)}
    assert (rows["AAPL"].window_days, rows["AAPL"].priority) == (300, 7)
    assert (rows["IBM"].is_active, rows["IBM"].window_days) == (True, 730)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "MALFORMED_REQUEST"),
        (b"[1, 2]", 400, "MALFORMED_REQUEST"),
        (b"{}", 422, "INVALID_SYMBOL"),
        (b'{"symbol": "1X"}', 422, "INVALID_SYMBOL"),
        (b'{"symbol": "SPY", "timeframe": "w2"}', 422, "INVALID_TIMEFRAME"),
        (b'{"symbol": "SPY", "window_days": -3}', 422, "INVALID_RANGE"),
        (b'{"symbol": "SPY", "window_days": true}', 422, "INVALID_RANGE"),
        (b'{"symbol": "SPY", "window_days": "30"}', 422, "INVALID_RANGE"),
        (b'{"symbol": "SPY", "extra": 1}', 422, "INVALID_REQUEST"),
    ],
)
def test_ensure_coverage_rejects_bad_bodies(
    client: TestClient, conn: psycopg.Connection, body: bytes, status: int, code: str
) -> None:
    response = client.post(
        "/v1/ensure-coverage", content=body, headers={"content-type": "application/json"}
    )
    _error(response, status, code)
    assert watchlist.list_symbols(conn, active_only=False) == []


# --- /v1/bars -----------------------------------------------------------------------------------


def _db_bars(conn: psycopg.Connection, symbol: str, tf: str, start: str, end: str) -> list[tuple]:
    rows = conn.execute(
        "SELECT * FROM get_chart_data_v2(%s, %s, %s, %s)", (symbol, tf, start, end)
    ).fetchall()
    conn.commit()
    return rows


def _api_bars(body: dict) -> list[tuple]:
    return [
        (
            datetime.fromisoformat(b["ts"]),
            b["open"],
            b["high"],
            b["low"],
            b["close"],
            b["volume"],
            b["vwap"],
            b["trade_count"],
            b["provider"],
            b["is_intraday"],
        )
        for b in body["bars"]
    ]


def test_bars_are_exactly_the_database_rows(
    client: TestClient, conn: psycopg.Connection, instance: dg.DagsterInstance
) -> None:
    days = calendar.sessions_between(date(2025, 6, 2), date(2025, 6, 6))
    assert _run("AAPL", days, instance, selection=["m15_bars", "h1_bars"]).success
    start, end = "2025-06-03T13:30:00Z", "2025-06-05T20:00:00Z"
    for tf in ("m15", "h1"):
        response = client.get(
            "/v1/bars", params={"symbol": "aapl", "timeframe": tf, "start": start, "end": end}
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["symbol"], body["timeframe"]) == ("AAPL", tf)
        # The fast serializer writes exactly what the documented model would.
        assert BarsOut.model_validate_json(response.content).model_dump(mode="json") == body
        expected = _db_bars(conn, "AAPL", tf, start, end)
        assert len(expected) == {"m15": 3 * 26, "h1": 3 * 7}[tf]
        assert _api_bars(body) == expected
        # ISO-8601 in UTC, ordered; the range is inclusive at both ends.
        assert body["bars"][0]["ts"] == "2025-06-03T13:30:00Z"
        stamps = [b["ts"] for b in body["bars"]]
        assert stamps == sorted(stamps) and all(s.endswith("Z") for s in stamps)


def test_bars_accept_offsets_and_naive_times_as_utc(
    client: TestClient, conn: psycopg.Connection, instance: dg.DagsterInstance
) -> None:
    assert _run("QQQ", [date(2025, 6, 2)], instance).success
    by_offset = client.get(
        "/v1/bars",
        params={
            "symbol": "QQQ",
            "timeframe": "m15",
            "start": "2025-06-02T09:30:00-04:00",
            "end": "2025-06-02T10:00:00-04:00",
        },
    ).json()
    naive = client.get(
        "/v1/bars",
        params={
            "symbol": "QQQ",
            "timeframe": "m15",
            "start": "2025-06-02T13:30:00",
            "end": "2025-06-02T14:00:00",
        },
    ).json()
    assert [b["ts"] for b in by_offset["bars"]] == [
        "2025-06-02T13:30:00Z",
        "2025-06-02T13:45:00Z",
        "2025-06-02T14:00:00Z",
    ]
    assert naive == by_offset


def test_bars_of_unknown_and_empty_symbols(client: TestClient, conn: psycopg.Connection) -> None:
    params = {"timeframe": "h1", "start": "2026-01-05T00:00:00Z", "end": "2026-01-10T00:00:00Z"}
    message = _error(client.get("/v1/bars", params={**params, "symbol": "NOPE"}), 404,
                     "SYMBOL_NOT_FOUND")  # fmt: skip
    assert "NOPE" in message
    watchlist.add(conn, ["NOPE"])
    conn.commit()
    empty = client.get("/v1/bars", params={**params, "symbol": "NOPE"})
    assert empty.status_code == 200
    assert empty.json() == {"symbol": "NOPE", "timeframe": "h1", "bars": []}


@pytest.mark.parametrize(
    ("params", "code", "fragment"),
    [
        ({"start": "2026-03-10T00:00:00Z", "end": "2026-03-09T00:00:00Z"}, "INVALID_RANGE",
         "before start"),
        ({"start": "yesterday", "end": "2026-03-09T00:00:00Z"}, "INVALID_RANGE", "start"),
        ({"end": "2026-03-09T00:00:00Z"}, "INVALID_RANGE", "start is required"),
        ({"timeframe": "m15", "start": "2025-01-01T00:00:00Z", "end": "2026-01-03T00:00:00Z"},
         "INVALID_RANGE", "m15 requests span at most 366 days"),
        ({"timeframe": "h1", "start": "2020-01-01T00:00:00Z", "end": "2026-01-03T00:00:00Z"},
         "INVALID_RANGE", "h1 requests span at most 1830 days"),
        ({"start": "9999-12-31T23:00:00-23:00", "end": "9999-12-31T23:30:00-23:00"},
         "INVALID_RANGE", "out of range"),
        ({"timeframe": "1h", "start": "2026-03-01T00:00:00Z", "end": "2026-03-02T00:00:00Z"},
         "INVALID_TIMEFRAME", "unknown timeframe '1h'"),
    ],
)  # fmt: skip
def test_bars_refuse_bad_or_unbounded_ranges(
    client: TestClient, params: dict, code: str, fragment: str
) -> None:
    message = _error(client.get("/v1/bars", params={"symbol": "SPY", **params}), 422, code)
    assert fragment in message


def test_bars_span_limit_is_inclusive(client: TestClient, conn: psycopg.Connection) -> None:
    watchlist.add(conn, ["SPY"])
    conn.commit()
    response = client.get(
        "/v1/bars",
        params={
            "symbol": "SPY",
            "timeframe": "m15",
            "start": "2025-01-01T00:00:00Z",
            "end": "2026-01-02T00:00:00Z",  # exactly 366 days
        },
    )
    assert response.status_code == 200, response.text


# --- /v1/tokens/{provider} ----------------------------------------------------------------------


def test_token_status(client: TestClient, conn: psycopg.Connection) -> None:
    response = client.get("/v1/tokens/polygon")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {
        "provider",
        "available_tokens",
        "capacity",
        "refill_rate",
        "seconds_until_full",
    }
    (status,) = ratelimit.token_status(conn, "polygon")
    assert (body["provider"], body["capacity"], body["refill_rate"]) == (
        "polygon",
        status.capacity,
        status.refill_rate,
    )
    assert 0 <= body["available_tokens"] <= body["capacity"]
    _error(client.get("/v1/tokens/nasdaq"), 404, "UNKNOWN_PROVIDER")


# --- error shapes -------------------------------------------------------------------------------


def test_unknown_routes_and_methods_answer_the_error_body(client: TestClient) -> None:
    _error(client.get("/v2/bars"), 404, "NOT_FOUND")
    _error(client.delete("/v1/coverage"), 405, "METHOD_NOT_ALLOWED")


def test_unexpected_failures_answer_500_without_details(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object, **kwargs: object) -> object:
        raise RuntimeError("secret internals /etc/passwd")

    monkeypatch.setattr(app_module, "symbol_coverage", explode)
    response = client.get("/v1/coverage", params={"symbol": "SPY"})
    assert _error(response, 500, "INTERNAL") == "internal error"
    assert "secret" not in response.text


def test_database_errors_answer_503(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    def lost(*args: object, **kwargs: object) -> object:
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(app_module, "chart_bars", lost)
    params = {"symbol": "SPY", "start": "2026-03-02T00:00:00Z", "end": "2026-03-03T00:00:00Z"}
    response = client.get("/v1/bars", params=params)
    assert "closed" not in _error(response, 503, "DATABASE_UNAVAILABLE")


# --- auth ---------------------------------------------------------------------------------------


@pytest.fixture
def secured(pipeline_env: dict[str, str], instance: dg.DagsterInstance) -> FastAPI:
    return make_app(pipeline_env["DATABASE_URL"], instance, token=TOKEN)


def test_bearer_token_is_required_and_compared_in_constant_time(
    secured: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    wrong_same_length = "x" * len(TOKEN)
    with TestClient(secured, base_url=BASE_URL) as client:
        for headers in (
            {},
            {"Authorization": f"Basic {TOKEN}"},
            {"Authorization": "Bearer"},
            {"Authorization": f"Bearer {wrong_same_length}"},
            {"Authorization": f"Bearer {TOKEN}x"},
        ):
            for path in ("/v1/tokens/polygon", "/openapi.json"):
                response = client.get(path, headers=headers)
                _error(response, 401, "UNAUTHORIZED")
                assert response.headers["www-authenticate"] == "Bearer"
        denied = client.post(
            "/v1/ensure-coverage", json={"symbol": "SPY"}, headers={"Authorization": "Bearer no"}
        )
        _error(denied, 401, "UNAUTHORIZED")
        ok = client.get("/v1/tokens/polygon", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200, ok.text
        lower = client.get("/v1/tokens/polygon", headers={"Authorization": f"bearer {TOKEN}"})
        assert lower.status_code == 200
        document = client.get("/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert document.json()["components"]["securitySchemes"] == {
        "bearerAuth": {"type": "http", "scheme": "bearer"}
    }
    assert document.json()["security"] == [{"bearerAuth": []}]
    # Every candidate credential went through hmac.compare_digest, wrong ones included.
    assert (wrong_same_length.encode(), TOKEN.encode()) in compared
    assert (TOKEN.encode(), TOKEN.encode()) in compared


def test_token_matches() -> None:
    token = b"abc"
    assert token_matches(b"Bearer abc", token)
    assert token_matches(b"  bearer   abc ", token)
    assert not token_matches(None, token)
    assert not token_matches(b"", token)
    assert not token_matches(b"Bearer abd", token)
    assert not token_matches(b"Token abc", token)


def test_open_app_documents_no_security(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    assert "security" not in document
    assert "securitySchemes" not in document.get("components", {})


def test_status_shows_runs_buckets_breakers_and_parked_symbols(
    client: TestClient, conn: psycopg.Connection, instance: dg.DagsterInstance
) -> None:
    (dead,) = watchlist.add(conn, ["ZZDEAD"])
    now = datetime(2026, 3, 20, 12, tzinfo=UTC)
    for _ in range(3):  # three SYMBOL_NOT_FOUND answers in a row park it
        watchlist.record_outcome(
            conn, dead.id, error_code="SYMBOL_NOT_FOUND", error_message="no bars", now=now,
            retry_after=now,
        )  # fmt: skip
    conn.execute("UPDATE provider_breakers SET state = 'open', opened_at = now() "
                 "WHERE provider = 'polygon'")  # fmt: skip
    conn.commit()
    instance.add_run(
        dg.DagsterRun(
            job_name="bars_job",
            run_id="a" * 36,
            status=dg.DagsterRunStatus.NOT_STARTED,  # queued without a code location
            tags=range_tags("SPY", "SPY", date(2026, 3, 2), date(2026, 3, 6)),
        )
    )
    body = client.get("/v1/status").json()
    assert body["runs"]["queued"] == 1 and body["runs"]["running"] == 0
    (run,) = body["runs"]["recent"]
    assert (run["status"], run["symbols"], run["days"]) == (
        "NOT_STARTED",
        "SPY..SPY",
        "2026-03-02..2026-03-06",
    )
    assert {b["provider"] for b in body["token_buckets"]} >= {"polygon", "tradier", "alpaca"}
    states = {b["provider"]: b["state"] for b in body["breakers"]}
    assert states["polygon"] == "open" and states["tradier"] == "closed"
    (parked,) = body["parked_symbols"]
    assert parked["symbol"] == "ZZDEAD" and "SYMBOL_NOT_FOUND" in parked["reason"]
