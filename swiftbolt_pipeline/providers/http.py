"""One resilient GET: a rate-limit token before every attempt, bounded retries with backoff.

Retried: 429 (honouring Retry-After), 500/502/503/504, timeouts, connection errors and bodies
that are not valid JSON. Not retried: 401/403 (a bad key stays bad) and other 4xx."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self, TypedDict, Unpack, cast

import httpx
import msgspec

from swiftbolt_pipeline.core.clock import Clock
from swiftbolt_pipeline.core.errors import (
    AUTH_FAILED,
    BAD_REQUEST,
    MALFORMED_RESPONSE,
    PROVIDER_UNAVAILABLE,
    RATE_LIMIT_EXCEEDED,
    ProviderError,
)
from swiftbolt_pipeline.core.models import Provider
from swiftbolt_pipeline.core.ratemath import backoff_delay, parse_retry_after

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class TokenLimiter(Protocol):
    def acquire(self) -> float:
        """Block until a request may be sent; returns the seconds spent waiting."""
        ...


class UnlimitedLimiter:
    def acquire(self) -> float:
        return 0.0


class CircuitBreaker(Protocol):
    def allow(self) -> bool:
        """May a request go out now?"""
        ...

    def success(self) -> None: ...

    def failure(self) -> None: ...


class AlwaysClosed:
    def allow(self) -> bool:
        return True

    def success(self) -> None:
        pass

    def failure(self) -> None:
        pass


@dataclass
class RequestStats:
    """What a fetch cost: every HTTP attempt counts, pages and retries included."""

    requests: int = 0
    retries: int = 0
    rate_limited: int = 0
    token_wait_s: float = 0.0

    def add(self, other: RequestStats) -> None:
        self.requests += other.requests
        self.retries += other.retries
        self.rate_limited += other.rate_limited
        self.token_wait_s += other.token_wait_s


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class ResilientClient:
    def __init__(
        self,
        provider: str,
        http: httpx.Client,
        limiter: TokenLimiter,
        clock: Clock,
        *,
        secrets: list[str],
        max_attempts: int = 5,
        backoff_base_s: float = 1.0,
        breaker: CircuitBreaker | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.provider = provider
        self.breaker = breaker or AlwaysClosed()
        self.http = http
        self.limiter = limiter
        self.clock = clock
        self.secrets = secrets
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.rng = rng or random.Random()

    def _fail(self, code: str, message: str, stats: RequestStats) -> ProviderError:
        return ProviderError(
            code, redact(message, self.secrets), provider=self.provider, requests=stats.requests
        )

    def get_json(
        self,
        url: str,
        stats: RequestStats,
        *,
        params: dict[str, str] | None = None,
        decoder: msgspec.json.Decoder[Any] | None = None,
    ) -> Any:
        """The answer's JSON body, after retries. `decoder`: a typed decoder that also checks
        the body's shape (a provider's page format) while parsing, far faster than walking
        the parsed objects; valid JSON of the wrong shape is MALFORMED_RESPONSE at once, a
        body that is not JSON (truncated) is retried like a server error."""
        problem = ""
        for attempt in range(1, self.max_attempts + 1):
            if attempt > 1:
                stats.retries += 1
            if not self.breaker.allow():
                raise self._fail(
                    PROVIDER_UNAVAILABLE,
                    "circuit breaker open after repeated failures; not sending requests",
                    stats,
                )
            stats.token_wait_s += self.limiter.acquire()
            stats.requests += 1
            delay: float | None = None
            try:
                response = self.http.get(url, params=params)
            except httpx.TimeoutException:
                problem = "timed out"
                self.breaker.failure()
            except httpx.TransportError as exc:
                problem = f"connection failed ({type(exc).__name__})"
                self.breaker.failure()
            else:
                status = response.status_code
                if status in (401, 403):
                    raise self._fail(
                        AUTH_FAILED,
                        f"credentials rejected (HTTP {status}); check the API key",
                        stats,
                    )
                if status == 429:
                    stats.rate_limited += 1
                    problem = "rate limited (HTTP 429)"
                    delay = parse_retry_after(response.headers.get("Retry-After"), self.clock.now())
                elif status in RETRYABLE_STATUS:
                    problem = f"server error (HTTP {status})"
                    self.breaker.failure()
                elif status >= 400:
                    raise self._fail(BAD_REQUEST, f"HTTP {status}: {response.text[:200]}", stats)
                else:
                    try:
                        payload = (
                            response.json() if decoder is None else decoder.decode(response.content)
                        )
                    except msgspec.ValidationError as exc:
                        self.breaker.success()  # the server answered; the answer is wrong
                        raise self._fail(
                            MALFORMED_RESPONSE, f"unexpected answer: {exc}", stats
                        ) from None
                    except ValueError:
                        problem = "malformed JSON body"
                        self.breaker.failure()
                    else:
                        self.breaker.success()
                        return payload
            if attempt == self.max_attempts:
                break
            wait = (
                delay
                if delay is not None
                else backoff_delay(attempt, self.rng, base_s=self.backoff_base_s)
            )
            log.warning(
                "%s: %s; retry %d/%d in %.1fs",
                self.provider,
                problem,
                attempt,
                self.max_attempts - 1,
                wait,
            )
            self.clock.sleep(wait)
        code = (
            RATE_LIMIT_EXCEEDED
            if problem.startswith("rate limited")
            else MALFORMED_RESPONSE
            if problem.startswith("malformed")
            else PROVIDER_UNAVAILABLE
        )
        raise self._fail(code, f"{problem} after {self.max_attempts} attempts", stats)


class ClientOptions(TypedDict, total=False):
    """Keyword options every provider client accepts (tests inject transports and clocks)."""

    transport: httpx.BaseTransport | None
    timeout_s: float
    max_attempts: int
    backoff_base_s: float
    breaker: CircuitBreaker | None
    rng: random.Random | None


class ProviderClient:
    """Plumbing shared by the provider clients: one pooled httpx client carrying the
    credentials in headers (never in URLs), behind the resilient request loop."""

    provider: Provider

    def __init__(
        self,
        base_url: str,
        limiter: TokenLimiter,
        clock: Clock,
        *,
        headers: dict[str, str],
        secrets: list[str],
        **options: Unpack[ClientOptions],
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.rng = options.get("rng") or random.Random()
        self._http = httpx.Client(
            headers=headers,
            timeout=options.get("timeout_s", 30.0),
            transport=options.get("transport"),
        )
        self._client = ResilientClient(
            self.provider,
            self._http,
            limiter,
            clock,
            secrets=secrets,
            max_attempts=options.get("max_attempts", 5),
            backoff_base_s=options.get("backoff_base_s", 1.0),
            breaker=options.get("breaker"),
            rng=self.rng,
        )

    @classmethod
    def configured(
        cls,
        base_url: str,
        credentials: Sequence[str],
        limiter: TokenLimiter,
        clock: Clock,
        **options: Unpack[ClientOptions],
    ) -> Self:
        """A client from its credentials in the order the registry lists their variables: every
        client's constructor takes them positionally, right after `base_url`."""
        construct = cast("Callable[..., Self]", cls)  # a subclass's constructor, not this one's
        return construct(base_url, *credentials, limiter, clock, **options)

    def close(self) -> None:
        self._http.close()
