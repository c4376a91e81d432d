"""Alert messages: the JSON fields, and no secret in them whatever the reason quotes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from swiftbolt_pipeline.core.alerts import MAX_REASON_CHARS, Alert, AlertKind, message

KEY = "pk_live_9f8e7d6c5b4a"
TOKEN = "trd-0123456789abcdef"


def _alert(reason: str, subject: str = "polygon") -> Alert:
    at = datetime(2026, 3, 20, 12, 0, 5, tzinfo=timezone(timedelta(hours=-4)))
    return Alert(7, AlertKind.BREAKER_OPENED, subject, reason, at)


def test_message_fields_and_utc_time() -> None:
    body = message(_alert("5 consecutive failed requests"), [])
    assert body == {
        "id": 7,
        "kind": "breaker_opened",
        "subject": "polygon",
        "reason": "5 consecutive failed requests",
        "at": "2026-03-20T16:00:05Z",
    }
    assert datetime.fromisoformat(str(body["at"])).tzinfo == UTC


def test_no_secret_survives_in_any_shape() -> None:
    reason = (
        f"GET https://api.polygon.io/v2/aggs/ticker/SPY?apiKey={KEY}&limit=50000 failed; "
        f"headers {{'Authorization': 'Bearer {TOKEN}', 'APCA-API-SECRET-KEY': 'alp-secret-1'}}; "
        "database postgresql://swiftbolt:hunter2pw@db.internal:5432/bars unreachable; "
        "token=abc123xyz password=letmein; the key was pk_other_unlisted"
    )
    text = str(message(_alert(reason, subject=f"run {KEY}"), [KEY, "pk_other_unlisted"]))
    for secret in (KEY, TOKEN, "alp-secret-1", "hunter2pw", "abc123xyz", "letmein", "pk_other"):
        assert secret not in text
    # What is not secret stays readable.
    assert "api.polygon.io/v2/aggs/ticker/SPY" in text
    assert "postgresql://swiftbolt:***@db.internal:5432/bars" in text


def test_long_reasons_are_cut() -> None:
    body = message(_alert("x" * 5000), [])
    assert len(str(body["reason"])) == MAX_REASON_CHARS
