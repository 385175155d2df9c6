"""The live page's event streams (``GET /live/link-events``): a few per live session, kept apart
from the owners' ``/events`` streams.

Each live session a link opened gets its own small :class:`hub.server.events.EventBus` of at most
:data:`MAX_STREAMS_PER_SESSION` subscribers, so whoever holds a session's feed secret can open only
that many streams, and page streams never take the owners' slots
(``hub.server.events.MAX_SUBSCRIBERS``). One subscription of the owners' bus feeds every page
(``hub.server.routes.live``); each session's page gets the events of its own camera. A session's
bus goes once the session ends. Everything runs on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable

from hub.server.events import EventBus, Subscription
from hub.server.live.relay import LiveSession
from hub.wire.events import Event

__all__ = ["MAX_STREAMS_PER_SESSION", "PageFeeds"]

MAX_STREAMS_PER_SESSION = 4  # a page and a reload or two; a leaked feed secret opens no more


class PageFeeds:
    """The event streams of live sessions' pages: one capped bus per session."""

    def __init__(
        self, *, clock: Callable[[], float], max_per_session: int = MAX_STREAMS_PER_SESSION
    ) -> None:
        self._clock = clock
        self.max_per_session = max_per_session
        self._buses: dict[str, tuple[LiveSession, EventBus]] = {}

    def subscribe(self, session: LiveSession, kinds: frozenset[str]) -> Subscription | None:
        """A stream of ``kinds`` for ``session``'s page, or None when it has enough already."""
        self._forget_ended()
        entry = self._buses.get(session.session_id)
        if entry is None:
            entry = (session, EventBus(clock=self._clock, max_subscribers=self.max_per_session))
            self._buses[session.session_id] = entry
        return entry[1].subscribe(kinds)

    def publish(self, event: Event) -> None:
        """Hand an event of the owners' bus to the pages of the sessions watching its camera."""
        self._forget_ended()
        for session, bus in self._buses.values():
            if event.data.get("camera") == session.camera:
                bus.publish(event.kind, **event.data)

    def close(self) -> None:
        """End every page stream (at shutdown)."""
        for _, bus in self._buses.values():
            bus.close()
        self._buses.clear()

    def _forget_ended(self) -> None:
        for session_id, (session, bus) in list(self._buses.items()):
            if session.ended.is_set():
                bus.close()
                del self._buses[session_id]
