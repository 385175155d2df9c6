"""Repeated log lines, counted instead of written. Under attack one event can happen thousands of
times a second (a refused request, a failed accept, a broken handshake, a client gone mid-body),
and a line per event, let alone a traceback, fills the disk.

:class:`RepeatFilter` goes on the log handlers. It passes the first ``limit`` records of each
kind in each window of ``window_s`` and counts the rest. A kind is the logger, the level and the
message template (for a message built per event, as asyncio's are, its first line).
:meth:`RepeatFilter.summarise`, called once a window by ``doorward serve``, logs one
``log.repeated`` line per kind that was held back, with how many were.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator

__all__ = ["RepeatFilter", "limit_repeats"]

logger = logging.getLogger(__name__)

_MAX_KINDS = 512  # kinds are code sites, not peer input; past this, the rest share one count
_OTHER = ("*", 0, "other repeated lines")
_SUMMARY = "doorward_summary"  # set on our own summary records, which always pass
_TEMPLATE_CHARS = 160

Kind = tuple[str, int, str]


class RepeatFilter(logging.Filter):
    """Passes ``limit`` records of each kind per ``window_s``; counts the rest."""

    def __init__(
        self,
        *,
        limit: int = 5,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit}")
        if not window_s > 0:
            raise ValueError(f"window_s must be positive, got {window_s}")
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._lock = threading.Lock()  # handlers are called from the camera threads too
        self._window_start = clock()
        self._passed: Counter[Kind] = Counter()
        self._held: Counter[Kind] = Counter()
        # The same record reaches the filter once per handler: decide once. (A weak reference:
        # a record with a traceback keeps its frames alive.)
        self._last: tuple[weakref.ref[logging.LogRecord] | None, bool] = (None, True)

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether ``record`` is written (the first ``limit`` of its kind this window)."""
        if getattr(record, _SUMMARY, False):
            return True
        kind = _kind(record)
        with self._lock:
            last, decided = self._last
            if last is not None and last() is record:
                return decided
            passed = self._decide(kind)
            self._last = (weakref.ref(record), passed)
            return passed

    def _decide(self, kind: Kind) -> bool:
        """Count one record of ``kind``; whether it passes. Call with the lock held."""
        now = self._clock()
        if now - self._window_start >= self.window_s:
            self._window_start = now
            self._passed.clear()
        if kind not in self._passed and len(self._passed) >= _MAX_KINDS:
            kind = _OTHER
        self._passed[kind] += 1
        if self._passed[kind] <= self.limit:
            return True
        self._held[kind] += 1
        return False

    def summarise(self) -> dict[Kind, int]:
        """Log one ``log.repeated`` line per kind held back since the last call; returns the
        counts."""
        with self._lock:
            held, self._held = self._held, Counter()
        for (name, level, template), count in sorted(held.items()):
            logger.warning(
                "log.repeated logger=%s level=%s count=%d message=%r",
                name,
                logging.getLevelName(level),
                count,
                template,
                extra={_SUMMARY: True},
            )
        return dict(held)


@contextlib.contextmanager
def limit_repeats(
    repeat_filter: RepeatFilter, handlers: list[logging.Handler] | None = None
) -> Iterator[RepeatFilter]:
    """Put ``repeat_filter`` on ``handlers`` (default: the root logger's) for the block; what
    is still held back at the end is summarised then."""
    targets = list(logging.getLogger().handlers if handlers is None else handlers)
    for handler in targets:
        handler.addFilter(repeat_filter)
    try:
        yield repeat_filter
    finally:
        repeat_filter.summarise()
        for handler in targets:
            handler.removeFilter(repeat_filter)


def _kind(record: logging.LogRecord) -> Kind:
    template = record.msg if isinstance(record.msg, str) else type(record.msg).__name__
    return record.name, record.levelno, template.split("\n", 1)[0][:_TEMPLATE_CHARS]
