"""Worker: calls run in order on one thread; results, errors and shutdown reach the caller."""

from __future__ import annotations

import asyncio
import threading

import pytest

from hardware._worker import Worker


@pytest.mark.asyncio
async def test_calls_run_in_order_on_one_named_thread() -> None:
    worker = Worker("door")
    seen: list[tuple[int, str]] = []

    def note(i: int) -> int:
        seen.append((i, threading.current_thread().name))
        return i * i

    futures = [worker.run(note, i) for i in range(20)]
    assert await asyncio.wait_for(asyncio.gather(*futures), timeout=30) == [
        i * i for i in range(20)
    ]
    assert seen == [(i, "camera-door") for i in range(20)]
    worker.shutdown()


@pytest.mark.asyncio
async def test_an_exception_reaches_the_caller_and_the_worker_carries_on() -> None:
    worker = Worker("door")

    def fail() -> None:
        raise ValueError("bad packet")

    with pytest.raises(ValueError, match=r"^bad packet$"):
        await asyncio.wait_for(worker.run(fail), timeout=30)
    with pytest.raises(
        RuntimeError, match=r"^worker call raised StopIteration: StopIteration\(\)$"
    ):
        await asyncio.wait_for(worker.run(next, iter(())), timeout=30)
    assert await asyncio.wait_for(worker.run(len, "abc"), timeout=30) == 3
    worker.shutdown()


@pytest.mark.asyncio
async def test_shutdown_runs_queued_calls_then_refuses_new_ones() -> None:
    worker = Worker("door")
    release = threading.Event()
    thread = worker.run(threading.current_thread)
    first = worker.run(release.wait)
    second = worker.run(len, "ab")
    worker.shutdown()  # both calls were queued before: they still run
    release.set()
    assert await asyncio.wait_for(first, timeout=30) is True
    assert await asyncio.wait_for(second, timeout=30) == 2
    with pytest.raises(RuntimeError, match=r"^worker camera-door is shut down$"):
        worker.run(len, "")
    (await thread).join(timeout=30)
    assert not (await thread).is_alive()


@pytest.mark.asyncio
async def test_a_cancelled_wait_does_not_stop_the_call() -> None:
    worker = Worker("door")
    started, release = threading.Event(), threading.Event()
    done: list[str] = []

    def slow() -> str:
        started.set()
        release.wait()
        done.append("slow")
        return "slow"

    task = asyncio.ensure_future(worker.run(slow))
    await asyncio.wait_for(asyncio.to_thread(started.wait), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    assert await asyncio.wait_for(worker.run(len, "later"), timeout=30) == 5  # runs after slow
    assert done == ["slow"]
    worker.shutdown()
