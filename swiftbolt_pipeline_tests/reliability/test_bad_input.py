"""Bad input through the real CLI: a specific `error [CODE]: message`, a non-zero exit, no
traceback, nothing written. Extends e2e/test_cli_backfill.py (whose matrix covers unknown
ticker, reversed/malformed/out-of-window/weekend dates and an unknown timeframe for
`backfill`). The commands run in this process (click's runner): the same code path as the
installed command, without paying ~5 s of interpreter start and Dagster import per case."""

from __future__ import annotations

import re
import socket

import httpx
import psycopg
import pytest

from swiftbolt_pipeline_tests.conftest import EMULATOR_KEY
from swiftbolt_pipeline_tests.reliability.conftest import PASSWORD, PasswordServer
from swiftbolt_pipeline_tests.reliability.helpers import (
    count_bars,
    invoke,
    reset_emulator,
)

pytestmark = pytest.mark.reliability

START, END = "2026-02-09", "2026-02-13"
TODAY = "2026-03-20"  # TEST_NOW's session (in progress at 12:00 ET)


def _symbols(conn: psycopg.Connection) -> list[str]:
    rows = conn.execute("SELECT ticker FROM symbols ORDER BY ticker").fetchall()
    conn.commit()
    return [r[0] for r in rows]


# (args, code or None for a click usage error, words the message must contain)
REFUSALS: list[tuple[list[str], str | None, list[str]]] = [
    (["backfill", "--symbols", " , ", "--start", START, "--end", END], "INVALID_SYMBOL",
     ["no ticker symbols given"]),
    (["backfill", "--symbols", "SPY,$(reboot)", "--start", START, "--end", END],
     "INVALID_SYMBOL", ["'$(reboot)' is not a valid ticker symbol"]),
    (["watch", "add", "A'; DROP TABLE symbols;--"], "INVALID_SYMBOL", ["not a valid ticker"]),
    (["watch", "add", "SPY", "AAPL OR 1=1"], "INVALID_SYMBOL", ["'AAPL OR 1=1'"]),
    (["watch", "remove", "x'); DELETE FROM symbols;--"], "INVALID_SYMBOL", ["not a valid"]),
    (["coverage", "' OR '1'='1", "--timeframe", "h1"], "INVALID_SYMBOL", ["not a valid"]),
    (["coverage", "SPY", "--timeframe", "m1"], "INVALID_TIMEFRAME",
     ["'m1'", "m5, m15, h1, h4, d1"]),
    (["backfill", "--symbols", "SPY", "--start", START, "--end", END, "--timeframes", "m15,H2"],
     "INVALID_TIMEFRAME", ["'H2'"]),
    (["backfill", "--symbols", "SPY", "--start", "yesterday", "--end", END], "INVALID_RANGE",
     ["--start 'yesterday' is not a date (YYYY-MM-DD)"]),
    (["backfill", "--symbols", "SPY", "--start", START, "--end", END, "--provider", "nope"],
     "INVALID_PROVIDER", ["'nope'"]),
    (["watch", "add", "SPY", "--window-days", "0"], None, ["--window-days"]),
    # A window past the calendar's range once made every gap-sensor tick fail for all symbols.
    (["watch", "add", "SPY", "--window-days", "1000000"], None,
     ["'--window-days': 1000000 is not in the range 1<=x<=3660"]),
    (["watch", "add", "SPY", "--window-days", "3661"], None, ["1<=x<=3660"]),
    (["coverage", "SPY", "--window-days", "1000000"], None,
     ["'--window-days': 1000000 is not in the range 1<=x<=3660"]),
    (["coverage", "SPY", "--window-days", "0"], None, ["1<=x<=3660"]),
]  # fmt: skip


def test_refused_input_exits_with_a_specific_message_and_writes_nothing(
    pipeline_env: dict[str, str], conn: psycopg.Connection
) -> None:
    empty_list = invoke(["watch", "list"], pipeline_env)
    not_watched = invoke(["watch", "remove", "nvda"], pipeline_env)
    bad_now = invoke(["watch", "list"], {**pipeline_env, "SWIFTBOLT_NOW": "next tuesday"})
    refused = [invoke(args, pipeline_env) for args, _, _ in REFUSALS]
    problems = []
    for (args, code, words), result in zip(REFUSALS, refused, strict=True):
        prefix = f"error [{code}]: " if code else "Error: Invalid value"
        lines = result.stderr.strip().splitlines()
        if (
            result.returncode != 2
            or not lines
            or not any(line.startswith(prefix) for line in lines)
            or not all(word in result.stderr for word in words)
            or "Traceback" in result.stderr
        ):
            problems.append((args, result.returncode, result.stderr[-400:]))
    assert problems == []
    # Empty watchlist and unknown symbols: a clear message, not an error.
    assert empty_list.returncode == 0
    assert empty_list.stdout.strip() == (
        "the watchlist is empty; add symbols with `swiftbolt watch add AAPL`"
    )
    assert not_watched.returncode == 0
    assert not_watched.stdout.strip() == "NVDA was not being watched"
    assert bad_now.returncode == 2
    assert bad_now.stderr.startswith("error [INVALID_CONFIG]: SWIFTBOLT_NOW='next tuesday'")
    # Nothing written, and the injection attempts did nothing to the schema.
    assert _symbols(conn) == []
    assert count_bars(conn) == 0
    assert conn.execute("SELECT to_regclass('public.symbols') IS NOT NULL").fetchone() == (True,)


def test_lower_case_and_duplicate_symbols_are_normalized(
    pipeline_env: dict[str, str], conn: psycopg.Connection
) -> None:
    added = invoke(["watch", "add", "aapl", " AAPL", "msft", "Msft", "brk.b"], pipeline_env)
    assert added.returncode == 0, added.stderr
    assert [line.split(" (")[0] for line in added.stdout.splitlines()] == [
        "watching AAPL",
        "watching MSFT",
        "watching BRK.B",
    ]
    assert _symbols(conn) == ["AAPL", "BRK.B", "MSFT"]


def test_invalid_or_missing_api_key_is_one_request_and_a_clear_message(
    pipeline_env: dict[str, str], conn: psycopg.Connection, emulator: str
) -> None:
    """401/403 is never retried: exactly one request per provider, AUTH_FAILED, nothing
    written, the key not echoed. A missing key while other providers have theirs is "not
    configured": no request at all, PROVIDER_UNAVAILABLE (never the emulator's data)."""
    reset_emulator(emulator)
    wrong = "wrong-key-7Qx2"
    missing = {k: v for k, v in pipeline_env.items() if k != "POLYGON_API_KEY"}
    # Every timeframe (the default): the daily run must not send the rejected key again.
    history = ["backfill", "--start", START, "--end", END]
    today = ["backfill", "--start", TODAY, "--end", TODAY, "--timeframes", "m15,h1,h4"]
    results = [
        invoke([*history, "--symbols", "AAPL"], {**pipeline_env, "POLYGON_API_KEY": wrong}),
        invoke([*history, "--symbols", "MSFT"], missing),
        invoke([*today, "--symbols", "NVDA"], {**pipeline_env, "TRADIER_TOKEN": wrong}),
    ]
    expected = (
        "[AUTH_FAILED] polygon: credentials rejected (HTTP 401); check the API key",
        "[PROVIDER_UNAVAILABLE] polygon: not configured: set POLYGON_API_KEY",
        "[AUTH_FAILED] tradier: credentials rejected (HTTP 401); check the API key",
    )
    for result, message in zip(results, expected, strict=True):
        assert result.returncode == 1, result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr
        assert wrong not in result.stdout + result.stderr
    log = httpx.get(f"{emulator}/_emulator/stats").json()["log"]
    per_symbol = {
        symbol: [e["status"] for e in log if f"/{symbol}/" in e["path"] or symbol in e["query"]]
        for symbol in ("AAPL", "MSFT", "NVDA")
    }
    assert per_symbol == {"AAPL": [401], "MSFT": [], "NVDA": [401]}
    assert count_bars(conn) == 0
    failed = conn.execute(
        "SELECT symbol, provider, error_code, actual_cost FROM job_runs ORDER BY symbol"
    ).fetchall()
    assert failed == [
        ("AAPL", "polygon", "AUTH_FAILED", 1),
        ("NVDA", "tradier", "AUTH_FAILED", 1),
    ]  # MSFT's fetch never started: no request, no ledger row
    assert EMULATOR_KEY  # the right key stays configured for the other tests


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_wrong_password_or_unreachable_database_is_a_clear_error(
    pipeline_env: dict[str, str], password_server: PasswordServer
) -> None:
    secret = "Wrong-pw-canary-81d3"
    wrong = {**pipeline_env, "DATABASE_URL": password_server.url(secret)}
    right = {**pipeline_env, "DATABASE_URL": password_server.url(PASSWORD)}
    closed = {
        **pipeline_env,
        "DATABASE_URL": f"postgresql://swift:{secret}@127.0.0.1:{_closed_port()}/swiftbolt",
    }
    backfill = ["backfill", "--symbols", "SPY", "--start", START, "--end", END]
    cases = [
        (["watch", "list"], wrong, "password authentication failed"),
        (["db", "migrate"], wrong, "password authentication failed"),
        (backfill, wrong, "password authentication failed"),
        (["db", "migrate"], closed, "Is the server running on that host"),
        (backfill, closed, "Is the server running on that host"),
    ]
    refused = [invoke(args, env) for args, env, _ in cases]
    accepted = invoke(["watch", "list"], right)
    for (args, _, reason), result in zip(cases, refused, strict=True):
        assert result.returncode == 2, (args, result.stderr)
        assert re.match(
            r"error \[DATABASE_UNAVAILABLE\]: cannot connect to PostgreSQL at postgresql://swift:\*\*\*@",
            result.stderr,
        ), result.stderr
        assert reason in result.stderr, result.stderr
        assert secret not in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
    # The same server with the right password works: it really checks passwords.
    assert accepted.returncode == 0, accepted.stderr
    assert PASSWORD not in accepted.stdout + accepted.stderr
