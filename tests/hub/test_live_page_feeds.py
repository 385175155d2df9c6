"""Page event streams: at most a few per live session, only that session's camera, gone with the
session; the owners' bus is not where they count."""

from __future__ import annotations

import pytest

from hub.server.live.page_feeds import MAX_STREAMS_PER_SESSION, PageFeeds
from hub.server.live.relay import LiveSession
from hub.wire.events import Event

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(10)]

KINDS = frozenset({"doorbell.pressed", "motion"})


async def test_each_session_gets_a_few_streams_of_its_own_camera() -> None:
    feeds = PageFeeds(clock=lambda: 5.0)
    front = LiveSession("s1", "owner", "front", "link")
    back = LiveSession("s2", "owner", "back", "link")
    mine = [feeds.subscribe(front, KINDS) for _ in range(MAX_STREAMS_PER_SESSION)]
    assert None not in mine
    assert feeds.subscribe(front, KINDS) is None  # the fifth of one session
    other = feeds.subscribe(back, KINDS)  # another session has its own allowance
    assert other is not None

    feeds.publish(Event(7, "doorbell.pressed", 5.0, {"camera": "back"}))
    feeds.publish(Event(8, "motion", 5.0, {"camera": "front", "score": 0.5}))
    got = await other.get()
    assert got is not None
    assert (got.kind, got.data) == ("doorbell.pressed", {"camera": "back"})
    for subscription in mine:
        assert subscription is not None
        event = await subscription.get()
        assert event is not None
        assert (event.kind, event.data["camera"]) == ("motion", "front")


async def test_an_ended_sessions_streams_end_and_its_slots_go() -> None:
    feeds = PageFeeds(clock=lambda: 5.0, max_per_session=1)
    session = LiveSession("s1", "owner", "front", "link")
    subscription = feeds.subscribe(session, KINDS)
    assert subscription is not None
    session.ended.set()
    feeds.publish(Event(1, "motion", 5.0, {"camera": "front"}))
    assert await subscription.get() is None
    again = LiveSession("s1", "owner", "front", "link")  # a session id is never reused, but
    assert feeds.subscribe(again, KINDS) is not None  # the ended one holds no slot
    feeds.close()
