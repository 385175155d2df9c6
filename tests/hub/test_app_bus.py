"""The event bus (bounded queues, slow subscribers dropped, never blocking) and the owners table."""

from __future__ import annotations

from pathlib import Path

import pytest

from crypto.keys import KeyBundle
from device.events import ClipFinished, DoorbellPressed, RecordingError
from hub.server.events import QUEUE_LENGTH, EventBus, device_event
from hub.server.owners import MAX_OWNERS, OwnerError, OwnersTable


@pytest.mark.asyncio
async def test_a_slow_subscriber_is_dropped_and_others_keep_receiving() -> None:
    bus = EventBus(clock=lambda: 1000.0)
    slow = bus.subscribe()
    fast = bus.subscribe(frozenset({"motion"}))
    assert slow is not None
    assert fast is not None
    for i in range(QUEUE_LENGTH + 1):
        bus.publish("motion", n=i)
        event = await fast.get()
        assert event is not None
        assert event.data == {"n": i}
    assert slow.dropped
    assert bus.subscriber_count == 1
    assert bus.dropped_subscribers == 1
    # The slow reader gets what was queued, then its stream ends: no silent gap.
    received = [e async for e in slow]
    assert [e.seq for e in received] == list(range(1, QUEUE_LENGTH + 1))
    assert slow.offer(received[0]) is False


@pytest.mark.asyncio
async def test_bus_caps_subscribers_and_checks_kinds() -> None:
    bus = EventBus(clock=lambda: 0.0, max_subscribers=2)
    first, second = bus.subscribe(), bus.subscribe()
    assert bus.subscribe() is None
    assert first is not None
    assert second is not None
    first.close()
    assert bus.subscribe() is not None
    with pytest.raises(ValueError, match=r"^event kind must be one of .*, got 'sneeze'$"):
        bus.publish("sneeze")


def test_device_events_map_to_bus_kinds() -> None:
    assert device_event(DoorbellPressed("front", 1.5)) == ("doorbell.pressed", {"camera": "front"})
    assert device_event(ClipFinished("front", "c1", 10.0, 3)) == (
        "clip.finished",
        {"camera": "front", "clip_id": "c1", "end": 10.0, "segments": 3},
    )
    assert device_event(RecordingError("front", "disk full")) is None


def test_owners_table(tmp_path: Path) -> None:
    table = OwnersTable(tmp_path / "doorward.db")
    first, second = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    admin = table.add(first.public(), name="Ada", now=100)
    other = table.add(second.public(), name="Bo", now=101, admin=False)
    assert (admin.admin, other.admin) == (True, False)
    assert "recipient" not in repr(admin)
    assert [str(r) for r in table.recipients()] == [str(first.recipient), str(second.recipient)]
    with pytest.raises(OwnerError, match=f"^owner key {first.key_id} is already paired$"):
        table.add(first.public(), name="again", now=102)
    with pytest.raises(OwnerError, match=f"^owner {first.key_id} is the last admin; "):
        table.remove(first.key_id, 103)
    removed = table.remove(second.key_id, 104)
    assert removed.removed_s == 104
    assert table.active(second.key_id) is None
    assert [o.removed for o in table.paired_owners()] == [False, True]
    with pytest.raises(OwnerError, match="was removed; pair a new key"):
        table.add(second.public(), name="back", now=105)
    table.close()
    reopened = OwnersTable(tmp_path / "doorward.db")
    assert [o.key_id for o in reopened.list_owners()] == [first.key_id]
    assert reopened.count() == 1
    with pytest.raises(OwnerError, match=r"^owner name must be 1-64 printable characters$"):
        reopened.add(KeyBundle.generate("x25519").public(), name="a\nb", now=1)
    assert MAX_OWNERS == 32
    reopened.close()
