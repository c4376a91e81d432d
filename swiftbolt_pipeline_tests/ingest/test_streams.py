"""How a universe's members are shared out to the fetch streams."""

from __future__ import annotations

import math

import pytest

from swiftbolt_pipeline.ingest.universe import deal, stream_shares

BATCH = 50


def _tickers(n: int) -> list[str]:
    return [f"T{k:05d}" for k in range(n)]


@pytest.mark.parametrize("members", [1, 49, 50, 51, 121, 399, 400])
def test_up_to_a_batch_per_stream_each_stream_takes_one_whole_batch(members: int) -> None:
    shares = stream_shares(_tickers(members), BATCH, 8)
    assert [len(s) for s in shares] == [min(BATCH, members - k) for k in range(0, members, BATCH)]
    assert [t for s in shares for t in s] == _tickers(members)


@pytest.mark.parametrize(
    ("members", "streams"), [(401, 8), (500, 8), (1000, 8), (5000, 8), (1003, 3)]
)
def test_more_batches_than_streams_share_the_members_evenly_in_order(
    members: int, streams: int
) -> None:
    shares = stream_shares(_tickers(members), BATCH, streams)
    assert len(shares) == streams
    assert [t for s in shares for t in s] == _tickers(members)  # contiguous, in order
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1
    # Each share is cut into batches of 50: at most one partial batch per stream.
    batches = sum(math.ceil(size / BATCH) for size in sizes)
    assert batches <= math.ceil(members / BATCH) + streams


def test_dealing_gives_every_share_a_turn() -> None:
    assert deal([1, 2, 3, 4, 5], 2) == [[1, 3, 5], [2, 4]]
    assert deal([1, 2], 8) == [[1], [2]]
    assert deal([], 8) == []
