"""Alerts to the operators' webhook: failed runs enter the outbox here; one sensor delivers the
outbox (breakers and parked symbols enter it where they happen, in storage/)."""

import dagster as dg

from swiftbolt_pipeline.core.alerts import AlertKind
from swiftbolt_pipeline.defs.resources import (
    AlertWebhookResource,
    AlpacaResource,
    PolygonResource,
    TradierResource,
    WarehouseResource,
)
from swiftbolt_pipeline.services.launch import root_cause
from swiftbolt_pipeline.services.webhook import deliver_pending, secrets_among
from swiftbolt_pipeline.storage import alerts


def failure_reason(context: dg.RunFailureSensorContext) -> str:
    """The run's failure message and, per failed step, the error that made it fail."""
    parts = [context.failure_event.message or "run failed"]
    for event in context.get_step_failure_events():
        error = event.step_failure_data.error
        if error is not None:
            parts.append(f"{event.step_key}: {root_cause(error)}")
    return " ".join(parts)


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Each failed run becomes one `run_failed` alert for the operators' webhook.",
)
def run_failure_alert_sensor(
    context: dg.RunFailureSensorContext, warehouse: WarehouseResource
) -> None:
    with warehouse.connect() as conn:
        alerts.record(
            conn,
            AlertKind.RUN_FAILED,
            context.dagster_run.run_id,
            failure_reason(context),
            dedupe_key=f"run_failed:{context.dagster_run.run_id}",
        )
        conn.commit()


def webhook_secrets(
    warehouse: WarehouseResource,
    alert_webhook: AlertWebhookResource,
    polygon: PolygonResource,
    tradier: TradierResource,
    alpaca: AlpacaResource,
) -> list[str]:
    """What no message may carry: the configured credentials, the webhook's own URL and the
    database password."""
    credentials = [polygon.api_key, tradier.token, alpaca.key_id, alpaca.secret_key]
    return secrets_among([*credentials, alert_webhook.url], warehouse.database_url)


@dg.sensor(
    name="alert_delivery_sensor",
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Posts recorded alerts (failed runs, opened breakers, parked symbols) to "
        "SWIFTBOLT_ALERT_WEBHOOK, one JSON message each, retrying with backoff while it is down."
    ),
)
def alert_delivery_sensor(
    context: dg.SensorEvaluationContext,
    warehouse: WarehouseResource,
    alert_webhook: AlertWebhookResource,
    polygon: PolygonResource,
    tradier: TradierResource,
    alpaca: AlpacaResource,
) -> dg.SkipReason:
    if not alert_webhook.url:
        return dg.SkipReason("SWIFTBOLT_ALERT_WEBHOOK is not set")
    secrets = webhook_secrets(warehouse, alert_webhook, polygon, tradier, alpaca)
    with warehouse.connect() as conn:
        sent = deliver_pending(conn, alert_webhook.url, secrets)
    return dg.SkipReason(f"{sent} alert(s) delivered")
