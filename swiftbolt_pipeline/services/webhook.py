"""Posting the `alerts` outbox to the operators' webhook (`SWIFTBOLT_ALERT_WEBHOOK`).

One post per alert, oldest first, each in its own transaction: the alert row stays locked while
it is posted, so concurrent senders never post it twice, and its delivery is recorded as soon
as the webhook accepts it. The first failed post ends the round: the webhook is down or
refusing, and the rest waits for the alert's backoff rather than hammering it."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from urllib.parse import urlsplit

import httpx
import psycopg

from swiftbolt_pipeline.core.alerts import message
from swiftbolt_pipeline.storage import alerts

log = logging.getLogger(__name__)

TIMEOUT_S = 5.0
MAX_PER_ROUND = 50


def secrets_among(values: Iterable[str | None], database_url: str | None) -> list[str]:
    """Values no message may carry: `values` (credentials, the webhook's own URL: chat
    webhooks embed their token in it) and the database password."""
    password = urlsplit(database_url).password if database_url else None
    return [v for v in (*values, password) if v]


def deliver_pending(conn: psycopg.Connection, url: str, secrets: list[str]) -> int:
    """Post the alerts that are due; returns how many the webhook accepted. `conn` must be
    outside a transaction: each alert's delivery commits on its own."""
    delivered = 0
    with httpx.Client(timeout=TIMEOUT_S) as http:
        for _ in range(MAX_PER_ROUND):
            with conn.transaction():
                alert = alerts.claim_next(conn)
                if alert is None:
                    break
                error = _post(http, url, message(alert, secrets))
                if error is None:
                    alerts.mark_delivered(conn, alert.id)
                else:
                    alerts.postpone(conn, alert.id, error)
            if error is not None:
                log.warning("alert %s not delivered: %s; retried later", alert.id, error)
                break
            delivered += 1
    return delivered


def _post(http: httpx.Client, url: str, body: dict[str, str | int]) -> str | None:
    """None when the webhook took the message, else why not (never the exception's text: it
    may name the URL, which can hold a token)."""
    try:
        http.post(url, json=body).raise_for_status()
    except httpx.HTTPStatusError as exc:
        return f"webhook answered HTTP {exc.response.status_code}"
    except httpx.HTTPError as exc:
        return f"webhook unreachable ({type(exc).__name__})"
    return None
