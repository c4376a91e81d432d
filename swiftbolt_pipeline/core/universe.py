"""Universe names and member lists as the user gives them (pure validation, no I/O)."""

from __future__ import annotations

import re

from swiftbolt_pipeline.core.models import InvalidInput, is_crypto, normalize_ticker

INVALID_UNIVERSE = "INVALID_UNIVERSE"
UNKNOWN_UNIVERSE = "UNKNOWN_UNIVERSE"

# Also a Dagster dynamic partition key: no separators Dagster reserves (`|`, `,`, `[`, ...).
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def normalize_universe_name(raw: str) -> str:
    """Lower-case and validate a universe name such as `us-large`."""
    name = raw.strip().lower()
    if not _NAME.match(name):
        raise InvalidInput(
            INVALID_UNIVERSE,
            f"{raw!r} is not a valid universe name (a letter, then up to 39 letters, digits, "
            "'-' or '_')",
        )
    return name


def parse_ticker_lines(text: str, *, source: str) -> list[str]:
    """One ticker per line (blank lines ignored), normalized, duplicates dropped in order.

    Every line is checked before anything is returned, so a bad line changes nothing."""
    tickers: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            tickers.append(normalize_ticker(line))
        except InvalidInput as exc:
            raise InvalidInput(exc.code, f"{source} line {number}: {exc.message}") from None
    if not tickers:
        raise InvalidInput("INVALID_SYMBOL", f"{source} lists no ticker symbols")
    return list(dict.fromkeys(tickers))


def equities_only(tickers: list[str]) -> list[str]:
    """`tickers` unchanged when none is a crypto pair: a universe runs on the NYSE calendar,
    while crypto pairs trade 24/7 on their own assets (the watchlist takes them)."""
    pairs = [t for t in tickers if is_crypto(t)]
    if pairs:
        raise InvalidInput(
            "INVALID_SYMBOL",
            f"a universe holds US equities on the NYSE calendar; crypto pairs "
            f"({', '.join(pairs[:3])}) trade 24/7: add them with `swiftbolt watch add`",
        )
    return tickers
