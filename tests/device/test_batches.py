"""Batches of waiting items: a burst goes together, a paced source one at a time, errors in order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from device._batches import batches
from hardware import CameraDisconnected


async def burst(count: int, log: list[str]) -> AsyncIterator[int]:
    """Items that are all ready at once, like a file decoded as fast as it goes."""
    try:
        for i in range(count):
            yield i
    finally:
        log.append("source closed")


@pytest.mark.asyncio
async def test_a_burst_goes_in_full_batches_in_order() -> None:
    got = [batch async for batch in batches(burst(10, []), 4)]
    assert [item for batch in got for item in batch] == list(range(10))
    assert max(len(batch) for batch in got) == 4
    assert got[0] == [0, 1, 2, 3]


@pytest.mark.asyncio
async def test_no_more_than_size_items_are_out_at_once() -> None:
    """The items of the last batch count until the next batch is asked for (memory stays
    bounded: a decoded picture is megabytes)."""
    taken: list[int] = []

    async def counted() -> AsyncIterator[int]:
        for i in range(10):
            taken.append(i)
            yield i

    stream = batches(counted(), 3)
    assert await anext(stream) == [0, 1, 2]
    assert taken == [0, 1, 2]
    assert await anext(stream) == [3, 4, 5]
    assert taken == [0, 1, 2, 3, 4, 5]
    await stream.aclose()


@pytest.mark.asyncio
async def test_a_paced_source_goes_one_item_at_a_time() -> None:
    """A live camera: the next frame comes only after the last one was handled."""
    handled = [asyncio.Event() for _ in range(5)]

    async def paced() -> AsyncIterator[int]:
        for i in range(5):
            if i:
                await handled[i - 1].wait()
            yield i

    got = []
    async for batch in batches(paced(), 4):
        got.append(batch)
        handled[batch[-1]].set()
    assert got == [[0], [1], [2], [3], [4]]


@pytest.mark.asyncio
async def test_a_source_error_comes_after_the_items_before_it() -> None:
    async def failing() -> AsyncIterator[int]:
        yield 1
        yield 2
        raise CameraDisconnected("camera cam: stream ended")

    stream = batches(failing(), 4)
    assert await anext(stream) == [1, 2]
    with pytest.raises(CameraDisconnected, match=r"^camera cam: stream ended$"):
        await anext(stream)


@pytest.mark.asyncio
async def test_closing_early_stops_reading_and_leaves_the_source_closable() -> None:
    log: list[str] = []
    source = burst(100, log)
    stream = batches(source, 4)
    assert await anext(stream) == [0, 1, 2, 3]
    await stream.aclose()
    await source.aclose()  # raises RuntimeError if the read-ahead task were still in it
    assert log == ["source closed"]


@pytest.mark.asyncio
async def test_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^size must be >= 1, got 0$"):
        await anext(batches(burst(1, []), 0))
