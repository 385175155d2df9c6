"""Items of an async iterator in batches of those already waiting, read ahead by a small task.

The pipeline hands frames to its worker thread; each trip costs two thread hand-offs, an event
loop wake-up and the caches the other threads evicted meanwhile. A source that delivers frames
in bursts (a file decoded a few pictures at a time, as fast as it goes) can send a burst in one
trip. A live camera, whose frames arrive one at a time and further apart than one takes to
process, still sends one frame per trip: nothing waits for a batch to fill.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

__all__ = ["batches"]

T = TypeVar("T")


class _End:
    """Queued after the last item: the source ended, or raised ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


async def batches(
    source: AsyncIterator[T], size: int, *, on_item: Callable[[T], None] | None = None
) -> AsyncIterator[list[T]]:
    """Lists of 1 to ``size`` items of ``source``, in order: all that are waiting, at most
    ``size``. A task reads ahead, but no more than ``size`` items are out at once: those of the
    last batch count until the next one is asked for. ``on_item`` gets each item as the task
    reads it, before it waits for a batch. An error the source raises is raised here after the
    items before it. Closing this generator cancels the task."""
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    waiting: asyncio.Queue[T | _End] = asyncio.Queue()
    free = asyncio.Semaphore(size)
    reader = asyncio.create_task(_read(source, waiting, free, on_item))
    try:
        while True:
            batch: list[T] = []
            item = await waiting.get()
            while not isinstance(item, _End):
                batch.append(item)
                if len(batch) == size or waiting.empty():
                    break
                item = waiting.get_nowait()
            if batch:
                yield batch
                for _ in batch:  # the caller is done with them
                    free.release()
            if isinstance(item, _End):
                if item.error is not None:
                    raise item.error
                return
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def _read(
    source: AsyncIterator[T],
    waiting: asyncio.Queue[T | _End],
    free: asyncio.Semaphore,
    on_item: Callable[[T], None] | None,
) -> None:
    try:
        while True:
            await free.acquire()
            try:
                item = await anext(source)
            except StopAsyncIteration:
                break
            if on_item is not None:
                on_item(item)
            waiting.put_nowait(item)
    except Exception as exc:  # handed to the consumer, which raises it
        waiting.put_nowait(_End(exc))
    else:
        waiting.put_nowait(_End(None))
