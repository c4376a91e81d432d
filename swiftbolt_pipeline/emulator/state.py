"""Mutable emulator state: runtime config, rolling-window rate limiter, faults and stats."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

ROUTES = ("polygon", "tradier", "alpaca")
# Counters always list these routes; other routes appear once called since the last reset.
REPORTED_ROUTES = ("polygon", "tradier")
FAULT_KINDS = ("status", "malformed", "delay", "hold", "disconnect")
LOG_SIZE = 200


@dataclass
class RuntimeConfig:
    rate_limit: int | None = None
    rate_window_s: float = 60.0
    retry_after: bool = False
    page_size: int | None = None
    # The scheme and host Polygon's `next_url` names (e.g. "https://api.massive.com", as the
    # real API does since its rebrand, whatever host was asked); None: the host asked.
    next_url_base: str | None = None
    # The emulator's clock (ISO-8601 with offset), for a caller whose own clock is simulated.
    now: str | None = None

    def update(self, data: dict[str, Any]) -> None:
        unknown = set(data) - set(asdict(self))
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        if "rate_limit" in data:
            self.rate_limit = _opt_pos_int(data["rate_limit"], "rate_limit")
        if "rate_window_s" in data:
            w = data["rate_window_s"]
            if isinstance(w, bool) or not isinstance(w, int | float) or w <= 0:
                raise ValueError("rate_window_s must be a positive number")
            self.rate_window_s = float(w)
        if "retry_after" in data:
            if not isinstance(data["retry_after"], bool):
                raise ValueError("retry_after must be a boolean")
            self.retry_after = data["retry_after"]
        if "page_size" in data:
            self.page_size = _opt_pos_int(data["page_size"], "page_size")
        if "next_url_base" in data:
            self.next_url_base = _opt_base_url(data["next_url_base"])
        if "now" in data:
            self.now = _opt_instant(data["now"])


def _opt_instant(value: Any) -> str | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise ValueError("now must be ISO-8601 with a UTC offset, or null")
    return value


def _opt_base_url(value: Any) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.netloc
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
    ):
        raise ValueError("next_url_base must be an http(s) scheme and host, or null")
    return f"{parts.scheme}://{parts.netloc}"


def _opt_pos_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer or null")
    return value


class RollingWindow:
    """Allows at most N accepted requests in any rolling window of W seconds."""

    def __init__(self) -> None:
        self._accepted: deque[float] = deque()

    def try_acquire(self, limit: int | None, window_s: float, now: float | None = None) -> float:
        """Record and return 0.0 if allowed, else the seconds until a slot frees (not recorded)."""
        if limit is None:
            return 0.0
        now = time.monotonic() if now is None else now
        while self._accepted and self._accepted[0] <= now - window_s:
            self._accepted.popleft()
        if len(self._accepted) < limit:
            self._accepted.append(now)
            return 0.0
        return max(1e-3, self._accepted[len(self._accepted) - limit] + window_s - now)

    def clear(self) -> None:
        self._accepted.clear()


@dataclass
class Fault:
    route: str
    kind: str
    count: int = 1
    status: int = 503
    seconds: float = 1.0

    @staticmethod
    def parse(data: Any) -> Fault:
        if not isinstance(data, dict):
            raise ValueError("a fault is a JSON object")
        route = data.get("route", "*")
        kind = data.get("kind")
        if route not in (*ROUTES, "*"):
            raise ValueError(f"route must be one of {[*ROUTES, '*']}")
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {list(FAULT_KINDS)}")
        count, status, seconds = (
            data.get("count", 1),
            data.get("status", 503),
            data.get("seconds", 1),
        )
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("count must be a positive integer")
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status code")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
            raise ValueError("seconds must be a non-negative number")
        return Fault(route, kind, count, status, float(seconds))


@dataclass
class EmulatorState:
    config: RuntimeConfig
    windows: dict[str, RollingWindow] = field(
        default_factory=lambda: {r: RollingWindow() for r in ROUTES}
    )
    faults: list[Fault] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REPORTED_ROUTES, 0))
    rejected_429: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REPORTED_ROUTES, 0))
    by_status: dict[str, int] = field(default_factory=dict)
    log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=LOG_SIZE))
    # Requests held by a `hold` fault wait for it (or for their `seconds` to pass).
    released: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        """Let every held request answer; later holds wait for the next release."""
        self.released.set()
        self.released = asyncio.Event()

    def count_request(self, route: str) -> None:
        self.requests[route] = self.requests.get(route, 0) + 1
        self.rejected_429.setdefault(route, 0)

    def rate_check(self, route: str) -> float:
        wait = self.windows[route].try_acquire(self.config.rate_limit, self.config.rate_window_s)
        if wait:
            self.rejected_429[route] = self.rejected_429.get(route, 0) + 1
        return wait

    def retry_after_header(self, wait: float) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(wait)))} if self.config.retry_after else {}

    def take_fault(self, route: str) -> Fault | None:
        for i, f in enumerate(self.faults):
            if f.route in (route, "*"):
                f.count -= 1
                if f.count <= 0:
                    del self.faults[i]
                return Fault(f.route, f.kind, 1, f.status, f.seconds)
        return None

    def record(self, route: str, path: str, query: str, status: int, fault: str | None) -> None:
        key = str(status)
        self.by_status[key] = self.by_status.get(key, 0) + 1
        entry: dict[str, Any] = {
            "route": route,
            "path": path,
            "query": query,
            "status": status,
            "at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        if fault:
            entry["fault"] = fault
        self.log.append(entry)

    def stats(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "rejected_429": dict(self.rejected_429),
            "by_status": dict(self.by_status),
            "faults_pending": [asdict(f) for f in self.faults],
            "config": asdict(self.config),
            "log": list(self.log),
        }

    def reset(self) -> None:
        self.faults.clear()
        self.requests.clear()
        self.rejected_429.clear()
        for r in REPORTED_ROUTES:
            self.requests[r] = 0
            self.rejected_429[r] = 0
        for window in self.windows.values():
            window.clear()
        self.by_status.clear()
        self.log.clear()
