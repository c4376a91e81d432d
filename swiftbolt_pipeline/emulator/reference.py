"""What Polygon's reference endpoints (``/v3/reference/splits``, ``/v3/reference/dividends``)
share: the ``limit`` and date-bound query parameters, and pages linked by ``next_url``, whose
opaque cursor carries the query plus an offset and never the API key."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from datetime import date
from typing import Any, Protocol, TypeVar
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .polygon import BadRequest, error, request_id
from .state import RuntimeConfig

DEFAULT_LIMIT = 10
MAX_LIMIT = 1000

T = TypeVar("T")


class Result(Protocol):
    def to_json(self) -> dict[str, Any]: ...


def encode_cursor(query: dict[str, str], offset: int) -> str:
    raw = json.dumps({"q": query, "offset": offset}, sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dict[str, str], int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()).decode())
        query, offset = data["q"], data["offset"]
        if not isinstance(query, dict) or not isinstance(offset, int) or offset < 0:
            raise ValueError
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise BadRequest("Invalid cursor") from exc
    return {str(k): str(v) for k, v in query.items()}, offset


def query_of(request: Request) -> tuple[dict[str, str], int]:
    cursor = request.query_params.get("cursor")
    if cursor:
        return decode_cursor(cursor)
    query = {k: v for k, v in request.query_params.items() if k.lower() != "apikey"}
    return query, 0


def compare(value: date, op: str, bound: date) -> bool:
    return {
        "eq": value == bound,
        "gte": value >= bound,
        "gt": value > bound,
        "lte": value <= bound,
        "lt": value < bound,
    }[op]


def within_dates(
    items: list[T], query: dict[str, str], field: str, day: Callable[[T], date]
) -> list[T]:
    """The items whose `day` meets the query's `field`, `field.gte`, `.gt`, `.lte` and `.lt`
    bounds (``YYYY-MM-DD``)."""
    for name in (field, *(f"{field}.{op}" for op in ("gte", "gt", "lte", "lt"))):
        raw = query.get(name)
        if raw is None:
            continue
        try:
            bound = date.fromisoformat(raw)
        except ValueError:
            raise BadRequest(f"Could not parse '{name}': use YYYY-MM-DD") from None
        op = name.rpartition(".")[2] if "." in name else "eq"
        items = [i for i in items if compare(day(i), op, bound)]
    return items


def serve_page(
    request: Request,
    config: RuntimeConfig,
    path: str,
    select: Callable[[dict[str, str]], Sequence[Result]],
    *,
    next_host: str | None,
) -> Response:
    """One page of what `select` finds for the request's query (or its cursor's); `next_url`
    names `next_host`, else the host asked, when more remain."""
    try:
        query, offset = query_of(request)
        raw_limit = query.get("limit", str(DEFAULT_LIMIT))
        if not raw_limit.isdigit() or int(raw_limit) < 1:
            raise BadRequest("limit must be a positive integer")
        limit = min(int(raw_limit), MAX_LIMIT)
        if config.page_size is not None:
            limit = min(limit, config.page_size)
        selected = select(query)
    except BadRequest as exc:
        return error(400, str(exc))
    body: dict[str, Any] = {
        "results": [r.to_json() for r in selected[offset : offset + limit]],
        "status": "OK",
        "request_id": request_id(),
    }
    if offset + limit < len(selected):
        base = next_host or str(request.base_url).rstrip("/")
        cursor = encode_cursor(query, offset + limit)
        body["next_url"] = f"{base}{path}?{urlencode({'cursor': cursor})}"
    return JSONResponse(body)
