"""The doorbell button: its events, the protocol every button implements, and a button pressed by code."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from hardware._clock import Clock, SystemClock
from hardware.errors import HardwareError

__all__ = ["ButtonEvent", "DoorbellButton", "SoftButton"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ButtonEvent:
    """A press, or a hold that lasted ``held_s`` seconds; ``at_s`` is when it started."""

    kind: Literal["press", "hold"]
    at_s: float
    held_s: float = 0.0

    def __post_init__(self) -> None:
        if self.held_s < 0:
            raise ValueError(f"held_s must be >= 0, got {self.held_s}")


@runtime_checkable
class DoorbellButton(Protocol):
    """A doorbell button: its presses and holds, in order, until closed."""

    def events(self) -> AsyncIterator[ButtonEvent]:
        """Presses and holds in the order they happen, until :meth:`close`."""
        ...

    async def close(self) -> None:
        """Stop the button; :meth:`events` then ends."""
        ...


class SoftButton:
    """A button pressed by code: the simulated camera's, and the one ``serve`` feeds each pipeline.

    Events wait in a queue of at most ``max_pending``; past that the oldest is dropped (logged).
    ``at_s`` defaults to the clock's monotonic time.
    """

    def __init__(self, *, clock: Clock | None = None, max_pending: int = 64) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self._clock = clock or SystemClock()
        self._max_pending = max_pending
        self._queue: asyncio.Queue[ButtonEvent | None] = asyncio.Queue()
        self._closed = False
        self._pending = 0

    def press(self, at_s: float | None = None) -> ButtonEvent:
        """Press and release the button."""
        return self._emit(ButtonEvent("press", self._at(at_s)))

    def hold(self, seconds: float, at_s: float | None = None) -> ButtonEvent:
        """Hold the button down for ``seconds``."""
        return self._emit(ButtonEvent("hold", self._at(at_s), held_s=seconds))

    @property
    def pending(self) -> int:
        """Events emitted and not yet taken by ``events()``."""
        return self._pending

    async def events(self) -> AsyncIterator[ButtonEvent]:
        """Presses and holds in the order they were made, until :meth:`close`."""
        while True:
            event = await self._queue.get()
            if event is None:
                return
            self._pending -= 1
            yield event

    async def close(self) -> None:
        """Stop the button; :meth:`events` ends after the events already queued."""
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(None)

    def _at(self, at_s: float | None) -> float:
        return self._clock.monotonic() if at_s is None else at_s

    def _emit(self, event: ButtonEvent) -> ButtonEvent:
        if self._closed:
            raise HardwareError("the button is closed: make a new one")
        if self._pending >= self._max_pending:
            dropped = self._queue.get_nowait()
            self._pending -= 1
            logger.warning(
                "button.event_dropped kind=%s at_s=%s",
                getattr(dropped, "kind", None),
                getattr(dropped, "at_s", None),
            )
        self._queue.put_nowait(event)
        self._pending += 1
        logger.debug("button.event kind=%s at_s=%s held_s=%s", event.kind, event.at_s, event.held_s)
        return event
