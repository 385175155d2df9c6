"""The pure half of the Home Assistant role: discovery configs against the documented schemas,
and the states the device's events make, driven with a hand-held clock."""

from __future__ import annotations

import json

import pytest

from hub.relay.ha_discovery import (
    HomeAssistantNode,
    Message,
    StateBoard,
    discovery_messages,
    object_slug,
)
from hub.wire.events import Event
from tests.relay.homeassistantkit import Entity, check_discovery

NODE = HomeAssistantNode("abcdefghijklmnop", "doorward_test", "Porch", "0.1.0", ("front", "back"))


def event(kind: str, **data: object) -> Event:
    return Event(1, kind, 0.0, dict(data))


def states(messages: list[Message]) -> list[tuple[str, bytes]]:
    return [(m.topic.removeprefix("doorward/doorward_test/"), m.payload) for m in messages]


def test_configs_follow_the_documented_schemas_and_name_published_topics() -> None:
    configs = discovery_messages(NODE)
    assert all(m.retain for m in configs)
    entities = [Entity(m.topic.split("/")[1], m.topic, json.loads(m.payload)) for m in configs]
    board = StateBoard(NODE, hold_s=10)
    board.set_pending(0)
    published = {m.topic for m in board.snapshot()}
    published |= {NODE.availability_topic, NODE.doorbell_topic}
    check_discovery(entities, published)
    assert sorted(e.topic for e in entities) == [
        "homeassistant/binary_sensor/doorward_test/motion_back/config",
        "homeassistant/binary_sensor/doorward_test/motion_front/config",
        "homeassistant/event/doorward_test/doorbell/config",
        "homeassistant/sensor/doorward_test/pending_requests/config",
    ]
    [doorbell] = [e.config for e in entities if e.component == "event"]
    assert (doorbell["event_types"], doorbell["device_class"]) == (["press"], "doorbell")


def test_a_config_that_misses_or_misspells_an_option_is_caught() -> None:
    import jsonschema

    [message, *_] = discovery_messages(NODE)
    config = json.loads(message.payload)
    published = {NODE.availability_topic, NODE.doorbell_topic}
    for broken in (
        {k: v for k, v in config.items() if k != "event_types"},
        {**config, "evnt_types": ["press"]},
        {**config, "device_class": "bell"},
        {**config, "state_topic": "doorward/elsewhere"},
    ):
        with pytest.raises((jsonschema.ValidationError, AssertionError)):
            check_discovery([Entity("event", message.topic, broken)], published)


def test_camera_names_become_distinct_topic_levels() -> None:
    node = HomeAssistantNode("d", "n", "x", "1", ("front door", "front/door", "Ümlaut"))
    assert node.camera_slugs == {
        "front door": "front_door",
        "front/door": "front_door_2",
        "Ümlaut": "mlaut",
    }
    assert object_slug("+#") == "camera"
    with pytest.raises(ValueError, match="node_id must be letters"):
        HomeAssistantNode("d", "bad/node", "x", "1", ())


def test_a_press_is_an_event_that_is_not_retained() -> None:
    board = StateBoard(NODE, hold_s=10)
    [press] = board.on_event(event("doorbell.pressed", camera="front"), 0.0)
    assert (press.topic, press.retain) == ("doorward/doorward_test/doorbell", False)
    assert json.loads(press.payload) == {"event_type": "press", "camera": "front"}


def test_motion_turns_off_when_its_clip_ends() -> None:
    board = StateBoard(NODE, hold_s=10)
    assert states(board.on_event(event("motion", camera="front", score=0.2), 100.0)) == [
        ("motion/front", b"ON")
    ]
    assert board.on_event(event("motion", camera="front", score=0.3), 101.0) == []  # still ON
    assert board.on_event(event("clip.finished", camera="back", clip_id="c0"), 102.0) == []
    assert states(board.on_event(event("clip.finished", camera="front", clip_id="c1"), 105.0)) == [
        ("motion/front", b"OFF")
    ]
    assert board.next_due_s() is None
    assert board.due(1000.0) == []


def test_motion_turns_off_after_the_hold_clip_or_not() -> None:
    board = StateBoard(NODE, hold_s=10)
    board.on_event(event("motion", camera="back", score=0.2), 100.0)
    board.on_event(event("motion", camera="back", score=0.2), 105.0)  # the hold starts again
    assert board.next_due_s() == 115.0
    assert board.due(114.9) == []
    # A clip that was refused (no owner to encrypt to) never finishes: the hold still ends it.
    assert states(board.due(115.0)) == [("motion/back", b"OFF")]
    assert board.next_due_s() is None
    assert board.due(200.0) == []


def test_unknown_cameras_and_kinds_make_no_state() -> None:
    board = StateBoard(NODE, hold_s=10)
    assert board.on_event(event("motion", camera="garage", score=0.2), 0.0) == []
    assert board.on_event(event("owner.added", owner="Ada"), 0.0) == []
    [press] = board.on_event(event("doorbell.pressed", camera="garage"), 0.0)
    assert json.loads(press.payload) == {"event_type": "press"}


def test_pending_count_is_sent_when_it_changes() -> None:
    board = StateBoard(NODE, hold_s=10)
    assert states(board.set_pending(0)) == [("pending_requests", b"0")]
    assert board.set_pending(0) == []
    assert states(board.set_pending(2)) == [("pending_requests", b"2")]
    assert (NODE.pending_topic, b"2") in [(m.topic, m.payload) for m in board.snapshot()]
    with pytest.raises(ValueError, match="must be >= 0"):
        board.set_pending(-1)
