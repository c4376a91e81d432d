"""The shared circuit breaker: open after 5 failures, one probe after the cooldown, close on
success — the state lives in PostgreSQL, so separate connections (workers) agree."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import psycopg
import pytest

from swiftbolt_pipeline.core.errors import PROVIDER_UNAVAILABLE, ProviderError
from swiftbolt_pipeline.providers.http import RequestStats, ResilientClient, UnlimitedLimiter
from swiftbolt_pipeline.storage.breaker import PostgresCircuitBreaker, breaker_state
from swiftbolt_pipeline.storage.migrate import migrate
from swiftbolt_pipeline_tests.doubles import FakeClock

COOLDOWN = 0.3


@pytest.fixture
def breakers(db_url: str, conn: psycopg.Connection):
    migrate(conn)
    conn.execute("UPDATE provider_breakers SET state = 'closed', consecutive_failures = 0")
    conn.commit()
    made: list[psycopg.Connection] = []

    def make() -> PostgresCircuitBreaker:
        # Each worker has its own connection, as separate processes do.
        made.append(psycopg.connect(db_url, autocommit=True))
        return PostgresCircuitBreaker(made[-1], "polygon", cooldown_s=COOLDOWN)

    yield make
    for worker_conn in made:
        worker_conn.close()


def test_opens_after_five_consecutive_failures_for_every_worker(breakers, conn) -> None:
    worker_a, worker_b = breakers(), breakers()
    for _ in range(4):
        worker_a.failure()
    assert worker_b.allow()
    worker_a.success()  # a success resets the count: failures must be consecutive
    for _ in range(4):
        worker_a.failure()
    assert worker_b.allow()
    worker_b.failure()
    assert not worker_a.allow() and not worker_b.allow()
    state = breaker_state(conn, "polygon")
    assert state is not None and (state.state, state.consecutive_failures) == ("open", 5)


def test_half_open_lets_exactly_one_probe_through_then_closes(breakers, conn) -> None:
    worker_a, worker_b = breakers(), breakers()
    for _ in range(5):
        worker_a.failure()
    assert not worker_b.allow()
    time.sleep(COOLDOWN + 0.05)
    assert worker_b.allow()  # the probe
    assert not worker_a.allow()  # everyone else waits for its outcome
    worker_b.success()
    assert worker_a.allow() and worker_b.allow()
    state = breaker_state(conn, "polygon")
    assert state is not None and (state.state, state.consecutive_failures) == ("closed", 0)


def test_failed_probe_reopens_for_another_cooldown(breakers) -> None:
    worker = breakers()
    for _ in range(5):
        worker.failure()
    time.sleep(COOLDOWN + 0.05)
    assert worker.allow()
    worker.failure()
    assert not worker.allow()
    time.sleep(COOLDOWN + 0.05)
    assert worker.allow()


def test_an_open_breaker_fails_fast_without_sending(breakers) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(503)

    client = ResilientClient(
        "polygon",
        httpx.Client(transport=httpx.MockTransport(handler)),
        UnlimitedLimiter(),
        FakeClock(start=datetime(2026, 1, 2, tzinfo=UTC)),
        secrets=[],
        max_attempts=5,
        breaker=breakers(),
    )
    with pytest.raises(ProviderError) as first:
        client.get_json("http://provider.test/x", RequestStats())
    assert first.value.code == PROVIDER_UNAVAILABLE and len(sent) == 5
    stats = RequestStats()
    with pytest.raises(ProviderError) as second:
        client.get_json("http://provider.test/x", stats)
    assert second.value.code == PROVIDER_UNAVAILABLE
    assert "circuit breaker open" in second.value.message
    assert len(sent) == 5 and stats.requests == 0
