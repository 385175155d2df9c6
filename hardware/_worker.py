"""One worker thread per source, so blocking PyAV calls never hold up the event loop."""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["Worker"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_Call = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class Worker:
    """Runs calls one at a time, in order, on a dedicated thread (PyAV objects are not shared).

    A call costs one hand-off each way and nothing else: about half of what
    ``loop.run_in_executor`` spends on its two chained futures, which matters at one call per
    frame. Cancelling the awaiting task does not stop a call that has started; calls queued
    before :meth:`shutdown` still run. The thread starts with the first call and also ends when
    the worker is garbage-collected.
    """

    def __init__(self, name: str) -> None:
        self._name = f"camera-{name}"
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._stop: weakref.finalize[..., Worker] | None = None
        self._shut = False

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue ``fn(*args)``; await the result (or the exception it raised)."""
        loop = asyncio.get_running_loop()
        if self._shut:
            raise RuntimeError(f"worker {self._name} is shut down")
        future: asyncio.Future[T] = loop.create_future()
        if self._stop is None:
            thread = threading.Thread(
                target=_serve, args=(self._calls,), name=self._name, daemon=True
            )
            thread.start()
            self._stop = weakref.finalize(self, self._calls.put, None)
        self._calls.put((loop, future, fn, args))
        return future

    def shutdown(self) -> None:
        """Let the thread end once the calls already queued have run; refuse new calls."""
        self._shut = True
        if self._stop is not None:
            self._stop()


def _serve(calls: queue.SimpleQueue[_Call | None]) -> None:
    while (call := calls.get()) is not None:
        loop, future, fn, args = call
        try:
            outcome: tuple[Any, BaseException | None] = (fn(*args), None)
        except StopIteration as exc:  # a future cannot carry StopIteration
            outcome = (None, RuntimeError(f"worker call raised StopIteration: {exc!r}"))
        except BaseException as exc:  # handed to the awaiting task, which re-raises it
            outcome = (None, exc)
        try:
            loop.call_soon_threadsafe(_settle, future, *outcome)
        except RuntimeError:  # the loop has closed: nobody is waiting for this result any more
            logger.debug("camera.worker_result_dropped call=%s", getattr(fn, "__name__", fn))
        del call, loop, future, fn, args, outcome  # hold no frame while waiting for the next call


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
