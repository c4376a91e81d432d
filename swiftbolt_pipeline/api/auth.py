"""Who may call the API.

- The `Host` header must name this server (`AllowedHostsMiddleware`): a web page a user
  visits cannot re-point its own domain at 127.0.0.1 (DNS rebinding) and call the API.
- With a token (`SWIFTBOLT_API_TOKEN`), every request must carry `Authorization: Bearer
  <token>`, compared in constant time; 401 otherwise.
- Without one, the API only answers reads, unless the server was explicitly started to accept
  writes from anyone (`swiftbolt serve --insecure-no-token`): a write adds symbols to the
  watchlist and spends the providers' request budget.

Pure ASGI middleware, so they also guard /openapi.json and the docs."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from swiftbolt_pipeline.api.errors import error_response

# Names of this machine's loopback interface, always accepted in the Host header.
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "[::1]")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_ECHOED_HOST = 100


def token_matches(header: bytes | None, token: bytes) -> bool:
    """Whether an Authorization header value carries `token` as a bearer credential."""
    if not header:
        return False
    scheme, _, credentials = header.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    # Constant time in the token's content: no early exit on the first differing byte.
    return hmac.compare_digest(credentials.strip(), token)


def host_name(value: str) -> str | None:
    """The host of a `Host` header or a configured name, lower case, without port or trailing
    dot; IPv6 addresses in brackets. None when it is not a host[:port]."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, port = value[1:].partition("]")
        name, port = f"[{name}]", port if bracket else "?"
    elif value.count(":") > 1:  # a bare IPv6 address (configured names only)
        name, port = f"[{value}]", ""
    else:
        name, colon, port = value.partition(":")
        port = f":{port}" if colon else ""
    if port and not (port.startswith(":") and port[1:].isdigit()):
        return None
    name = name.removesuffix(".")
    return name or None


def _header(scope: Scope, key: bytes) -> bytes | None:
    return next((v for k, v in scope["headers"] if k == key), None)


class AllowedHostsMiddleware:
    """400 INVALID_HOST unless the Host header names one of `hosts` or a loopback name."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str] = ()) -> None:
        self.app = app
        names = (host_name(h) for h in (*LOOPBACK_HOSTS, *hosts))
        self.hosts = frozenset(n for n in names if n)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = (_header(scope, b"host") or b"").decode("latin-1")
            if host_name(raw) not in self.hosts:
                shown = raw if len(raw) <= MAX_ECHOED_HOST else raw[:MAX_ECHOED_HOST] + "..."
                response = error_response(
                    "INVALID_HOST",
                    f"this server does not answer for Host {shown!r}; it answers for "
                    f"{', '.join(sorted(self.hosts))} (`swiftbolt serve --allow-host NAME` "
                    "adds a name)",
                    400,
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class AccessMiddleware:
    """The bearer token when one is configured; else reads only, unless `tokenless_writes`."""

    def __init__(self, app: ASGIApp, token: str | None, *, tokenless_writes: bool) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.tokenless_writes = tokenless_writes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self._refusal(scope) if scope["type"] == "http" else None
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        if self.token is not None:
            if token_matches(_header(scope, b"authorization"), self.token):
                return None
            return error_response(
                "UNAUTHORIZED",
                "a valid `Authorization: Bearer <token>` header is required",
                401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if scope["method"] in READ_METHODS or self.tokenless_writes:
            return None
        return error_response(
            "WRITES_DISABLED",
            "this server has no API token, so it only answers reads: start `swiftbolt serve` "
            "with SWIFTBOLT_API_TOKEN set and send `Authorization: Bearer <token>`",
            403,
        )
