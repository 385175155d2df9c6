"""Repeated log lines are counted, not written: a flood of one event (asyncio's failed accept
among them) gives a few lines per window and one summary, whatever its size."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
from collections.abc import Iterator

import pytest

from hub.server.quietlog import RepeatFilter, limit_repeats


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


Captured = tuple[logging.Logger, io.StringIO, logging.Handler]


@pytest.fixture
def captured() -> Iterator[Captured]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    log = logging.getLogger("tests.quietlog")
    log.setLevel(logging.INFO)
    log.propagate = False
    log.addHandler(handler)
    summaries = logging.getLogger("hub.server.quietlog")
    summaries.addHandler(handler)
    yield log, stream, handler
    log.removeHandler(handler)
    summaries.removeHandler(handler)


def test_a_flood_of_one_event_gives_a_few_lines_and_one_summary(captured: Captured) -> None:
    log, stream, handler = captured
    clock = _Clock()
    with limit_repeats(RepeatFilter(limit=3, window_s=60, clock=clock), [handler]) as quiet:
        for i in range(10_000):
            log.warning("guard.refused address=%s", f"10.0.{i // 256}.{i % 256}")
        log.info("other.event n=%d", 1)
        assert quiet.summarise() == {
            ("tests.quietlog", logging.WARNING, "guard.refused address=%s"): 9997
        }
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 + 1 + 1
    assert lines[-1] == (
        "WARNING hub.server.quietlog log.repeated logger=tests.quietlog level=WARNING "
        "count=9997 message='guard.refused address=%s'"
    )


def test_each_window_lets_a_few_through_again(captured: Captured) -> None:
    log, stream, handler = captured
    clock = _Clock()
    quiet = RepeatFilter(limit=2, window_s=60, clock=clock)
    handler.addFilter(quiet)
    try:
        for _ in range(5):
            log.warning("api.refused")
        clock.now = 61
        for _ in range(5):
            log.warning("api.refused")
    finally:
        handler.removeFilter(quiet)
    assert stream.getvalue().count("api.refused") == 4
    assert sum(quiet.summarise().values()) == 6


def test_one_record_through_two_handlers_counts_once(captured: Captured) -> None:
    log, stream, handler = captured
    second = logging.StreamHandler(io.StringIO())
    log.addHandler(second)
    quiet = RepeatFilter(limit=2, window_s=60, clock=_Clock())
    try:
        with limit_repeats(quiet, [handler, second]):
            for _ in range(2):
                log.warning("api.refused")
            assert quiet.summarise() == {}
    finally:
        log.removeHandler(second)
    assert stream.getvalue().count("api.refused") == 2


@pytest.mark.asyncio
async def test_asyncios_failed_accept_tracebacks_are_bounded(captured: Captured) -> None:
    """The loop's own report of a failed accept (one traceback each, its text naming a new socket
    every time) is held back after the first few."""
    _, stream, handler = captured
    logging.getLogger("asyncio").addHandler(handler)
    loop = asyncio.get_running_loop()
    listener = socket.socket()
    try:
        with limit_repeats(RepeatFilter(limit=2, window_s=60, clock=_Clock()), [handler]):
            for _ in range(500):
                loop.call_exception_handler(
                    {
                        "message": "socket.accept() out of system resource",
                        "exception": OSError(24, "Too many open files"),
                        "socket": listener,
                    }
                )
    finally:
        logging.getLogger("asyncio").removeHandler(handler)
        listener.close()
    text = stream.getvalue()
    assert text.count("Traceback") <= 2
    assert text.count("socket.accept() out of system resource") == 2 + 1  # and the summary
    assert "count=498" in text
