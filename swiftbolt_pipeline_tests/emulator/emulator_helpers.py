"""Helpers shared by the emulator tests (a unique module name, unlike ``conftest``)."""

from __future__ import annotations

from typing import Any

import httpx

KEY = "test-key"


def aggs(
    base: str, ticker: str, frm: str, to: str, mult: int = 15, **params: Any
) -> httpx.Response:
    params.setdefault("apiKey", KEY)
    url = f"{base}/v2/aggs/ticker/{ticker}/range/{mult}/minute/{frm}/{to}"
    return httpx.get(url, params=params, timeout=30)
