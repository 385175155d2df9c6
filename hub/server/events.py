"""An in-process event bus for owners' WebSocket streams.

:meth:`EventBus.publish` never blocks and never waits: each subscriber has a bounded queue, and a
subscriber whose queue is full is dropped (its stream ends with ``dropped = True``), so one slow
phone cannot hold up the cameras or the other phones. A subscription taken for an owner's key is
ended by :meth:`EventBus.end_key` when that owner is removed: whatever it had queued is discarded,
so a removed owner gets no event after its removal. Everything runs on the event loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from device.events import (
    ClipFinished,
    ClipStarted,
    DetectStreamLost,
    DetectStreamRestored,
    DeviceEvent,
    DoorbellPressed,
    MotionDetected,
)
from hub.wire.events import EVENT_KINDS, Event

__all__ = [
    "MAX_SUBSCRIBERS",
    "EventBus",
    "Subscription",
    "device_event",
]

logger = logging.getLogger(__name__)

MAX_SUBSCRIBERS = 64  # each open WebSocket holds one queue: cap them so sockets cannot pile up
QUEUE_LENGTH = 256


class Subscription:
    """A subscriber's stream of events; iterate it, and :meth:`close` it when done."""

    def __init__(self, bus: EventBus, kinds: frozenset[str] | None, key_id: str | None) -> None:
        self._bus = bus
        self._kinds = kinds
        self.key_id = key_id
        # One slot more than the events it may hold: the end marker always fits.
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_LENGTH + 1)
        self.dropped = False
        self.revoked = False
        self.closed = False

    def wants(self, kind: str) -> bool:
        """Whether this subscriber asked for events of ``kind``."""
        return self._kinds is None or kind in self._kinds

    def offer(self, event: Event) -> bool:
        """Queue an event; False (and the subscriber ends) when its queue is full."""
        if self.closed:
            return False
        if self._queue.qsize() >= QUEUE_LENGTH:
            self.dropped = True
            self._end()
            return False
        self._queue.put_nowait(event)
        return True

    async def get(self) -> Event | None:
        """The next event, or None once the subscription has ended."""
        if self.closed and self._queue.empty():
            return None
        return await self._queue.get()

    def close(self) -> None:
        """End the stream and leave the bus; safe to call more than once."""
        self._end()
        self._bus.unsubscribe(self)

    def revoke(self) -> None:
        """End the stream now, discarding what it had queued (its owner was removed)."""
        self.revoked = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self.closed = True
        self._queue.put_nowait(None)  # the end marker, even if the stream had ended before
        self._bus.unsubscribe(self)

    def _end(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[Event]:
        while (event := await self.get()) is not None:
            yield event


class EventBus:
    """Fan-out of events to subscribers, bounded in subscribers and in queued events each."""

    def __init__(
        self, *, clock: Callable[[], float], max_subscribers: int = MAX_SUBSCRIBERS
    ) -> None:
        self._clock = clock
        self._max = max_subscribers
        self._subscribers: list[Subscription] = []
        self._seq = itertools.count(1)
        self._subscribed = asyncio.Event()
        self.dropped_subscribers = 0

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open now."""
        return len(self._subscribers)

    def subscribe(
        self, kinds: frozenset[str] | None = None, *, key_id: str | None = None
    ) -> Subscription | None:
        """A new subscription (to ``kinds``, default all; held by the owner ``key_id``, if any),
        or None when the bus is full."""
        if len(self._subscribers) >= self._max:
            return None
        subscription = Subscription(self, kinds, key_id)
        self._subscribers.append(subscription)
        self._subscribed.set()
        return subscription

    async def wait_for_subscriber(self, count: int = 1) -> None:
        """Return once the bus has at least ``count`` subscribers (tests, startup checks)."""
        while len(self._subscribers) < count:
            self._subscribed.clear()
            await self._subscribed.wait()

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop sending to ``subscription`` (no-op if it already left); does not end its stream."""
        if subscription in self._subscribers:
            self._subscribers.remove(subscription)

    def publish(self, kind: str, **data: Any) -> Event:
        """Send an event to every subscriber that wants it; never blocks (call on the loop)."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"event kind must be one of {sorted(EVENT_KINDS)}, got {kind!r}")
        event = Event(next(self._seq), kind, self._clock(), data)
        for subscription in list(self._subscribers):
            if subscription.wants(kind) and not subscription.offer(event):
                self.unsubscribe(subscription)
                self.dropped_subscribers += 1
                logger.warning("events.subscriber_dropped kind=%s seq=%d", kind, event.seq)
        return event

    def end_key(self, key_id: str) -> int:
        """Revoke every subscription held by the owner ``key_id`` (just removed); returns how
        many. Call on the loop right after the removal is stored, before publishing anything."""
        held = [s for s in self._subscribers if s.key_id == key_id]
        for subscription in held:
            subscription.revoke()
        return len(held)

    def close(self) -> None:
        """End every subscription (at shutdown)."""
        for subscription in list(self._subscribers):
            subscription.close()


def device_event(event: DeviceEvent) -> tuple[str, dict[str, Any]] | None:
    """The bus kind and fields of a pipeline event, or None for events owners do not stream."""
    if isinstance(event, MotionDetected):
        return "motion", {"camera": event.camera, "score": round(event.score, 4)}
    if isinstance(event, ClipStarted):
        return "clip.started", {
            "camera": event.camera,
            "clip_id": event.clip_id,
            "start": event.start_s,
        }
    if isinstance(event, ClipFinished):
        return "clip.finished", {
            "camera": event.camera,
            "clip_id": event.clip_id,
            "end": event.end_s,
            "segments": event.segments,
        }
    if isinstance(event, DoorbellPressed):
        return "doorbell.pressed", {"camera": event.camera}
    if isinstance(event, DetectStreamLost):
        return "camera.detect_lost", {"camera": event.camera, "reason": event.reason}
    if isinstance(event, DetectStreamRestored):
        return "camera.detect_restored", {"camera": event.camera}
    return None
