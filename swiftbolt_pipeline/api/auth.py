"""Optional bearer token (`SWIFTBOLT_API_TOKEN`): when set, every request must carry
`Authorization: Bearer <token>`, compared in constant time; 401 with the error body otherwise."""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Receive, Scope, Send

from swiftbolt_pipeline.api.errors import error_response


def token_matches(header: bytes | None, token: bytes) -> bool:
    """Whether an Authorization header value carries `token` as a bearer credential."""
    if not header:
        return False
    scheme, _, credentials = header.strip().partition(b" ")
    if scheme.lower() != b"bearer":
        return False
    # Constant time in the token's content: no early exit on the first differing byte.
    return hmac.compare_digest(credentials.strip(), token)


class BearerTokenMiddleware:
    """Pure ASGI middleware, so it also guards /openapi.json and the docs."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            header = next((v for k, v in scope["headers"] if k == b"authorization"), None)
            if not token_matches(header, self.token):
                response = error_response(
                    "UNAUTHORIZED",
                    "a valid `Authorization: Bearer <token>` header is required",
                    401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
