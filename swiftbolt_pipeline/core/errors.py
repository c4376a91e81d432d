"""Provider failures, each with a stable code: the codes the CLI, the API and
`job_runs.error_code` share."""

from __future__ import annotations

from collections.abc import Callable

RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
SYMBOL_NOT_FOUND = "SYMBOL_NOT_FOUND"
INVALID_TIMEFRAME = "INVALID_TIMEFRAME"
PROVIDER_UNAVAILABLE = "PROVIDER_UNAVAILABLE"
AUTH_FAILED = "AUTH_FAILED"
MALFORMED_RESPONSE = "MALFORMED_RESPONSE"
BAD_REQUEST = "BAD_REQUEST"


class ProviderError(RuntimeError):
    """A fetch that failed for good. Messages never contain credentials."""

    def __init__(self, code: str, message: str, *, provider: str, requests: int = 0) -> None:
        super().__init__(f"[{code}] {provider}: {message}")
        self.code = code
        self.provider = provider
        self.message = message
        self.requests = requests

    def __reduce__(self) -> tuple[Callable[..., ProviderError], tuple[str, str, str, int]]:
        # Outcomes cross step boundaries pickled; the keyword arguments must survive.
        return (_provider_error, (self.code, self.message, self.provider, self.requests))


def _provider_error(code: str, message: str, provider: str, requests: int) -> ProviderError:
    return ProviderError(code, message, provider=provider, requests=requests)
