"""One worker thread for the consent desk and the audit log, whose SQLite connection is single-owner.

Every call that touches consent or audit records, reads included, goes through
:class:`SerialWorker`: one at a time, each shielded from handler cancellation and tracked, so a
client hanging up never leaves a half-recorded decision and shutdown waits for every call to finish.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["SerialWorker"]

T = TypeVar("T")


class SerialWorker:
    """Runs consent and audit calls one at a time on a worker thread, shielded and tracked."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-writes")
        self._tasks: set[asyncio.Future[Any]] = set()
        self._submitted: dict[asyncio.Future[Any], float] = {}

    def backlog(self) -> tuple[int, float | None]:
        """Calls queued or running, and when (``time.monotonic()``) the oldest was queued."""
        return len(self._submitted), min(self._submitted.values(), default=None)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the worker; a cancelled caller does not cancel the call."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, fn, *args)
        self._tasks.add(future)
        self._submitted[future] = time.monotonic()
        future.add_done_callback(self._done)
        return await asyncio.shield(future)

    def _done(self, future: asyncio.Future[Any]) -> None:
        self._tasks.discard(future)
        self._submitted.pop(future, None)

    async def close(self) -> None:
        """Wait for every call in flight, then stop the worker."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pool.shutdown(wait=True)
