"""Every failure answers `{"error": {"code", "message"}}` with a fitting status; never a
traceback. FastAPI's own validation errors are reshaped into the same body."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from swiftbolt_pipeline.api.models import ErrorBody
from swiftbolt_pipeline.core.models import InvalidInput, Timeframe
from swiftbolt_pipeline.storage.database import DatabaseUnavailable

log = logging.getLogger(__name__)

# Codes with a status other than 422 (invalid input).
STATUS_BY_CODE = {
    "INVALID_REQUEST": 422,
    "MALFORMED_REQUEST": 400,
    "INVALID_HOST": 400,
    "UNAUTHORIZED": 401,
    "WRITES_DISABLED": 403,
    "SYMBOL_NOT_FOUND": 404,
    "UNKNOWN_PROVIDER": 404,
    "SERIES_NOT_FOUND": 404,
    "NOT_FOUND": 404,
    "METHOD_NOT_ALLOWED": 405,
    "DATABASE_UNAVAILABLE": 503,
    "INTERNAL": 500,
}

# Which contract code a validation error of a given field maps to.
CODE_BY_FIELD = {
    "symbol": "INVALID_SYMBOL",
    "timeframe": "INVALID_TIMEFRAME",
    "start": "INVALID_RANGE",
    "end": "INVALID_RANGE",
    "window_days": "INVALID_RANGE",
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "Malformed request (MALFORMED_REQUEST) or unknown Host header (INVALID_HOST)"),
        (401, "Missing or wrong bearer token (UNAUTHORIZED)"),
        (403, "A write to a server without an API token (WRITES_DISABLED)"),
        (404, "SYMBOL_NOT_FOUND, UNKNOWN_PROVIDER, SERIES_NOT_FOUND (a crypto pair's w1/mo1)"),
        (422, "INVALID_SYMBOL, INVALID_TIMEFRAME, INVALID_RANGE, INVALID_REQUEST"),
        (500, "INTERNAL"),
        (503, "DATABASE_UNAVAILABLE"),
    )
}


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status or STATUS_BY_CODE.get(code, 422)


def error_response(
    code: str, message: str, status: int | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}},
        status_code=status or STATUS_BY_CODE.get(code, 422),
        headers=headers,
    )


def _field(loc: Sequence[Any]) -> str | None:
    names = [part for part in loc[1:] if isinstance(part, str)]
    return names[0] if names else None


def _validation_message(error: dict[str, Any], field: str | None) -> str:
    kind = error.get("type", "")
    if kind == "missing":
        return f"{field or 'the request body'} is required"
    if field == "symbol" and kind == "string_pattern_mismatch":
        return f"{error.get('input')!r} is not a valid ticker symbol"
    if field == "timeframe" and kind == "enum":
        valid = ", ".join(t.value for t in Timeframe)
        return f"unknown timeframe {error.get('input')!r} (valid: {valid})"
    message = str(error.get("msg", "invalid value"))
    return f"{field}: {message}" if field else message


def _from_validation(exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    if not errors:
        return error_response("INVALID_REQUEST", "invalid request")
    first = errors[0]
    if first.get("type") == "json_invalid":
        return error_response("MALFORMED_REQUEST", "the request body is not valid JSON")
    loc = first.get("loc", ())
    if loc and loc[0] == "body" and len(loc) == 1 and first.get("type") != "missing":
        return error_response("MALFORMED_REQUEST", "the request body must be a JSON object")
    field = _field(loc)
    code = CODE_BY_FIELD.get(field or "", "INVALID_REQUEST")
    return error_response(code, _validation_message(first, field))


def install_error_handlers(app: FastAPI) -> None:
    async def on_api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc.code, exc.message, exc.status)

    async def on_invalid_input(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, InvalidInput)
        return error_response(exc.code, exc.message)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return _from_validation(exc)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        if exc.status_code == 404:
            return error_response("NOT_FOUND", f"no such endpoint: {request.url.path}", 404)
        if exc.status_code == 405:
            return error_response(
                "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here", 405, headers
            )
        return error_response("HTTP_ERROR", str(exc.detail), exc.status_code, headers)

    async def on_database(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", type(exc).__name__)
        return error_response("DATABASE_UNAVAILABLE", "the database is unavailable; retry later")

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette re-raises after answering, so the server logs the traceback; not the client.
        log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return error_response("INTERNAL", "internal error")

    app.add_exception_handler(ApiError, on_api_error)
    app.add_exception_handler(InvalidInput, on_invalid_input)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    for db_error in (DatabaseUnavailable, PoolTimeout, psycopg.OperationalError):
        app.add_exception_handler(db_error, on_database)
    app.add_exception_handler(Exception, on_unexpected)
