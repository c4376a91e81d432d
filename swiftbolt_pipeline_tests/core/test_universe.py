"""Universe names and ticker files as the user gives them."""

from __future__ import annotations

import pytest

from swiftbolt_pipeline.core.models import InvalidInput
from swiftbolt_pipeline.core.universe import normalize_universe_name, parse_ticker_lines


def test_names_are_lower_cased_and_safe_as_partition_keys() -> None:
    assert normalize_universe_name("  US-Broad_1 ") == "us-broad_1"
    for bad in ("", "1abc", "a|b", "a,b", "a b", "x" * 41):
        with pytest.raises(InvalidInput) as caught:
            normalize_universe_name(bad)
        assert caught.value.code == "INVALID_UNIVERSE"


def test_ticker_lines_are_normalized_in_order_without_duplicates() -> None:
    text = "aapl\n\n  MSFT \nbrk.b\r\nAAPL\n"
    assert parse_ticker_lines(text, source="f") == ["AAPL", "MSFT", "BRK.B"]


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "f lists no ticker symbols"), ("\n \n", "f lists no ticker symbols"),
     ("SPY\nSPY QQQ\n", "f line 2: 'SPY QQQ' is not a valid ticker symbol")],
)  # fmt: skip
def test_bad_files_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_ticker_lines(text, source="f")
    assert caught.value.code == "INVALID_SYMBOL"
    assert caught.value.message == message
