"""Operator alerts: what happened, and the JSON message a webhook receives for it.

A message never carries a secret: every text is scrubbed of the configured secret values and
of the shapes secrets take in URLs, headers and error messages (`apiKey=...`, `Bearer ...`,
a password in a connection URL)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

MAX_REASON_CHARS = 1000
MASK = "***"

_SECRET_SHAPES = (
    # key=value in query strings and messages: apiKey=..., token=..., secret_key=...
    (re.compile(r"(?i)\b(api[_-]?key|token|secret[_-]?key|secret|password)=[^&\s'\"]+"), r"\1=***"),
    (re.compile(r"(?i)\b(bearer\s+)[^\s'\"]+"), r"\1***"),
    # Alpaca's credential headers, as a header line or a dict's repr
    (
        re.compile(r"(?i)\b(apca-api-(?:key-id|secret-key)['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"),
        r"\1***",
    ),
    # user:password@host in a connection URL
    (re.compile(r"(://[^/:@\s]*):[^@/\s]+@"), r"\1:***@"),
)


class AlertKind(StrEnum):
    RUN_FAILED = "run_failed"
    BREAKER_OPENED = "breaker_opened"
    SYMBOL_PARKED = "symbol_parked"


@dataclass(frozen=True)
class Alert:
    id: int
    kind: AlertKind
    subject: str  # run id, provider or ticker
    reason: str
    at: datetime


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    for pattern, replacement in _SECRET_SHAPES:
        text = pattern.sub(replacement, text)
    return text


def message(alert: Alert, secrets: Iterable[str]) -> dict[str, str | int]:
    """The webhook's JSON body. `id` lets a receiver drop a message it already has: a sender
    that dies between the post and recording the delivery posts it again."""
    secrets = list(secrets)
    reason = redact(alert.reason, secrets)
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 1] + "…"
    return {
        "id": alert.id,
        "kind": alert.kind.value,
        "subject": redact(alert.subject, secrets),
        "reason": reason,
        "at": alert.at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
