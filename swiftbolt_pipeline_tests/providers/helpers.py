"""Fakes for the provider tests: a counting limiter and scripted httpx transports."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from swiftbolt_pipeline_tests.doubles import FakeClock

KEY = "sk_live_TOPSECRET_4f9a"
BASE = "https://api.polygon.test"
NOW = datetime(2026, 3, 20, 16, 0, tzinfo=UTC)


class CountingLimiter:
    def __init__(self, wait: float = 0.0) -> None:
        self.calls = 0
        self.wait = wait

    def acquire(self) -> float:
        self.calls += 1
        return self.wait


Step = httpx.Response | BaseException | Callable[[httpx.Request], httpx.Response]


class Script:
    """A transport answering each request with the next scripted step (the last one repeats)."""

    def __init__(self, *steps: Step) -> None:
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = self.steps[min(len(self.requests), len(self.steps)) - 1]
        if isinstance(step, BaseException):
            raise step
        if callable(step) and not isinstance(step, httpx.Response):
            return step(request)
        return step

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self)


def ok(body: Any) -> httpx.Response:
    return httpx.Response(200, json=body)


def status(code: int, headers: dict[str, str] | None = None, body: Any = None) -> httpx.Response:
    return httpx.Response(
        code, headers=headers, json=body if body is not None else {"status": "ERROR"}
    )


def raw(text: str, code: int = 200) -> httpx.Response:
    return httpx.Response(code, content=text.encode(), headers={"content-type": "application/json"})


def truncated(body: Any) -> httpx.Response:
    text = json.dumps(body)
    return raw(text[: len(text) // 2])


def fake_clock() -> FakeClock:
    return FakeClock(NOW)
