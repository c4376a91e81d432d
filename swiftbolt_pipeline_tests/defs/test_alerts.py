"""Alerts reach a local webhook receiver exactly once per event: a failed run (the emulator
drops every connection), a breaker that opens (failures counted by two workers), a symbol that
gets parked; and an outage of the webhook delays delivery without losing or doubling one."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import psycopg
import pytest

from swiftbolt_pipeline.config import Settings
from swiftbolt_pipeline.core import calendar
from swiftbolt_pipeline.core.alerts import Alert, AlertKind, message
from swiftbolt_pipeline.core.errors import SYMBOL_NOT_FOUND
from swiftbolt_pipeline.defs.alerts import (
    alert_delivery_sensor,
    run_failure_alert_sensor,
    webhook_secrets,
)
from swiftbolt_pipeline.defs.build import build_resources
from swiftbolt_pipeline.defs.resources import (
    AlertWebhookResource,
    AlpacaResource,
    PolygonResource,
    TradierResource,
    WarehouseResource,
)
from swiftbolt_pipeline.services.webhook import deliver_pending
from swiftbolt_pipeline.storage import watchlist
from swiftbolt_pipeline.storage.breaker import PostgresCircuitBreaker
from swiftbolt_pipeline_tests.conftest import EMULATOR_KEY
from swiftbolt_pipeline_tests.receiver import Receiver
from swiftbolt_pipeline_tests.reliability.helpers import inject, materialize, reset_emulator

WEEK = calendar.sessions_between(date(2025, 6, 2), date(2025, 6, 6))


WEBHOOK: dict[str, str] = {}


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[Receiver]:
    with Receiver() as running:
        monkeypatch.setenv("SWIFTBOLT_ALERT_WEBHOOK", running.url)
        monkeypatch.setitem(WEBHOOK, "url", running.url)
        yield running


def _deliver(db_url: str) -> None:
    """One tick of the delivery sensor, as the daemon evaluates it."""
    warehouse = WarehouseResource(database_url=db_url)
    resources = {
        "warehouse": warehouse,
        "alert_webhook": AlertWebhookResource(url=WEBHOOK["url"]),
        "polygon": PolygonResource(warehouse=warehouse, api_key=EMULATOR_KEY),
        "tradier": TradierResource(warehouse=warehouse),
        "alpaca": AlpacaResource(warehouse=warehouse),
    }
    with dg.build_sensor_context(resources=resources) as context:
        alert_delivery_sensor(context)


def _kinds(receiver: Receiver) -> list[tuple[str, str]]:
    return sorted((m["kind"], m["subject"]) for m in receiver.messages())


def test_failed_run_and_its_breaker_alert_once_each(
    pipeline_env: dict[str, str], db_url: str, emulator: str, receiver: Receiver
) -> None:
    """Every Polygon connection dropped: five attempts open the breaker and the run fails.
    The run-failure sensor, evaluated on the run's failure event (twice, as a daemon that
    restarts mid-tick would), and the delivery sensor (twice) post one message per event."""
    reset_emulator(emulator)
    inject(emulator, {"route": "polygon", "kind": "disconnect", "count": 100})
    try:
        with dg.instance_for_test() as instance:
            outcome = materialize("SPY", WEEK, instance)
            assert not outcome.success
            run = instance.get_run_by_id(outcome.run_id)
            assert run is not None
            failures = instance.all_logs(
                outcome.run_id, of_type=dg.DagsterEventType.PIPELINE_FAILURE
            )
            assert len(failures) == 1 and failures[0].dagster_event is not None
            for _ in range(2):
                context = dg.build_run_status_sensor_context(
                    sensor_name="run_failure_alert_sensor",
                    dagster_event=failures[0].dagster_event,
                    dagster_instance=instance,
                    dagster_run=run,
                    resources={"warehouse": WarehouseResource(database_url=db_url)},
                ).for_run_failure()
                run_failure_alert_sensor(context)
    finally:
        reset_emulator(emulator)
    _deliver(db_url)
    _deliver(db_url)
    assert _kinds(receiver) == [("breaker_opened", "polygon"), ("run_failed", outcome.run_id)]
    messages = {m["kind"]: m for m in receiver.messages()}
    assert "PROVIDER_UNAVAILABLE" in messages["run_failed"]["reason"]
    assert messages["breaker_opened"]["reason"].startswith("5 consecutive failed requests")
    for m in receiver.messages():
        assert set(m) == {"id", "kind", "subject", "reason", "at"}
        at = datetime.fromisoformat(m["at"])
        assert at.tzinfo is not None and abs(datetime.now(UTC) - at) < timedelta(minutes=5)
    raw = b"".join(receiver.bodies)
    assert EMULATOR_KEY.encode() not in raw


def test_breaker_alerts_once_per_opening_across_two_workers(
    db_url: str, receiver: Receiver
) -> None:
    """Five failures split over two workers (two connections, as two processes) open the
    breaker once; failures while open add nothing; the failed probe after the cooldown opens
    it again: two openings, two messages."""
    with (
        psycopg.connect(db_url, autocommit=True) as conn_a,
        psycopg.connect(db_url, autocommit=True) as conn_b,
    ):
        a = PostgresCircuitBreaker(conn_a, "alpaca", cooldown_s=0.2)
        b = PostgresCircuitBreaker(conn_b, "alpaca", cooldown_s=0.2)
        for worker in (a, b, a, b, a, b, a):  # the 5th opens it; two more while open
            worker.failure()
        _deliver(db_url)
        assert _kinds(receiver) == [("breaker_opened", "alpaca")]
        time.sleep(0.25)
        assert b.allow()  # the probe
        b.failure()
        a.failure()
        _deliver(db_url)
    assert _kinds(receiver) == [("breaker_opened", "alpaca")] * 2
    reasons = [m["reason"] for m in receiver.messages()]
    assert reasons[1].startswith("the probe request after the cooldown failed")


def test_parked_symbol_alerts_once(db_url: str, receiver: Receiver) -> None:
    """SYMBOL_NOT_FOUND answers counted from two connections: the third parks the symbol and
    alerts; later answers for the parked symbol do not."""
    now = datetime(2026, 3, 20, 16, tzinfo=UTC)
    with psycopg.connect(db_url) as one, psycopg.connect(db_url) as two:
        watchlist.add(one, ["ZZNOPE", "SPY"])
        one.commit()
        ids = watchlist.ensure(one, ["ZZNOPE"])
        one.commit()
        for conn in (one, two, one, two, one):
            with conn.transaction():
                watchlist.record_outcome(
                    conn,
                    ids["ZZNOPE"],
                    error_code=SYMBOL_NOT_FOUND,
                    error_message="polygon has no bars for ZZNOPE",
                    now=now,
                    retry_after=now,
                )
            conn.commit()
    _deliver(db_url)
    _deliver(db_url)
    assert _kinds(receiver) == [("symbol_parked", "ZZNOPE")]
    assert receiver.messages()[0]["reason"].startswith(f"{SYMBOL_NOT_FOUND}: no bars served 3")


def test_webhook_outage_delays_delivery_without_storm_or_duplicate(
    db_url: str, receiver: Receiver
) -> None:
    """The webhook refuses: one attempt per round (not one per alert), nothing lost. When it
    is back and the backoff has passed, two senders racing post each alert once."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        for provider in ("polygon", "tradier"):
            breaker = PostgresCircuitBreaker(conn, provider, cooldown_s=60)
            for _ in range(5):
                breaker.failure()
    receiver.refuse = 1
    _deliver(db_url)
    assert (receiver.attempts, receiver.bodies) == (1, [])
    _deliver(db_url)  # the refused alert waits for its backoff; the other is not tried first
    assert receiver.attempts == 2 and len(receiver.bodies) == 1
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE alerts SET next_attempt_at = now()")  # the backoff has passed
        conn.commit()
    settings = Settings.from_env()
    assert settings.alert_webhook == receiver.url

    def sender() -> None:
        with psycopg.connect(db_url) as conn:
            deliver_pending(conn, receiver.url, [])

    threads = [threading.Thread(target=sender) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert _kinds(receiver) == [("breaker_opened", "polygon"), ("breaker_opened", "tradier")]


def test_configured_secrets_never_reach_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a reason quotes from the configuration, the message masks every credential,
    the database password and the webhook's own URL."""
    secrets = {
        "POLYGON_API_KEY": "pk-0a1b2c3d",
        "TRADIER_TOKEN": "tt-4e5f6a7b",
        "ALPACA_KEY_ID": "AKID8c9d",
        "ALPACA_SECRET_KEY": "as-0e1f2a3b",
        "SWIFTBOLT_ALERT_WEBHOOK": "https://hooks.example/services/T0/B1/s3cr3tpath",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_URL", "postgresql://bars:pw-5c6d7e8f@db.internal/bars")
    reason = " ".join([*secrets.values(), "pw-5c6d7e8f"])
    alert = Alert(1, AlertKind.RUN_FAILED, "run-1", reason, datetime.now(UTC))
    # The resources as the definitions build them, initialized as the daemon does.
    resources = build_resources(Settings.from_env())
    with dg.build_sensor_context(resources=resources) as context:
        r = context.resources
        masked = webhook_secrets(r.warehouse, r.alert_webhook, r.polygon, r.tradier, r.alpaca)
    text = json.dumps(message(alert, masked))
    for value in [*secrets.values(), "pw-5c6d7e8f"]:
        assert value not in text
