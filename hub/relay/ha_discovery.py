"""What the doorbell tells Home Assistant, as MQTT messages: discovery configs and entity states.

Pure: no sockets, no clock. :func:`discovery_messages` describes the device's entities in Home
Assistant's MQTT discovery format (one retained JSON config per entity under
``<prefix>/<component>/<node_id>/<object_id>/config``), and :class:`StateBoard` turns the device's
events into state messages, given the time. :mod:`hub.relay.homeassistant` sends them.

The entities carry counts and booleans only: a doorbell press (an ``event`` entity), motion per
camera (a ``binary_sensor``), the number of requests waiting for an owner's decision (a
``sensor``), and the device's availability. Never video, snapshots, requester names, reasons,
case references, request ids or owner names: the home broker and everything that reads it
(integrations, add-ons, history databases) are outside the owners' end-to-end encryption.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from hub.wire.events import Event

__all__ = [
    "AVAILABLE",
    "NOT_AVAILABLE",
    "PRESS",
    "WATCHED_KINDS",
    "HomeAssistantNode",
    "Message",
    "StateBoard",
    "discovery_messages",
    "object_slug",
]

AVAILABLE = b"online"
NOT_AVAILABLE = b"offline"
PRESS = "press"
MOTION_ON = b"ON"
MOTION_OFF = b"OFF"
# The bus kinds the states are made from; nothing else is looked at.
WATCHED_KINDS = frozenset(
    {
        "doorbell.pressed",
        "motion",
        "clip.finished",
        "request.pending",
        "request.decided",
    }
)
# Home Assistant's character class for <node_id> and <object_id> in a discovery topic.
_TOPIC_ID = re.compile(r"[a-zA-Z0-9_-]+")
_MANUFACTURER = "Doorward"
_MODEL = "Doorward doorbell"


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message to publish: ``retain`` for configs and states, not for presses."""

    topic: str
    payload: bytes
    retain: bool = True


def object_slug(name: str) -> str:
    """``name`` as a topic level and object id: letters, digits, ``_`` and ``-`` only."""
    slug = re.sub(r"[^a-zA-Z0-9_-]", "_", name).strip("_")
    return slug or "camera"


@dataclass(frozen=True, slots=True)
class HomeAssistantNode:
    """The device as Home Assistant will see it: where its messages go and which cameras it has."""

    device_id: str
    node_id: str
    name: str
    sw_version: str
    cameras: tuple[str, ...]
    prefix: str = "homeassistant"
    state_base: str = field(init=False)
    camera_slugs: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not _TOPIC_ID.fullmatch(self.node_id):
            raise ValueError(
                f"node_id must be letters, digits, _ or - (Home Assistant's rule), got "
                f"{self.node_id!r}"
            )
        if not self.prefix or any(c in self.prefix for c in "+#\0") or self.prefix[0] == "/":
            raise ValueError(f"discovery prefix must be a plain topic, got {self.prefix!r}")
        object.__setattr__(self, "state_base", f"doorward/{self.node_id}")
        slugs: dict[str, str] = {}
        for camera in self.cameras:
            slug, n = object_slug(camera), 2
            while slug in slugs.values():  # two names that slug alike stay two entities
                slug, n = f"{object_slug(camera)}_{n}", n + 1
            slugs[camera] = slug
        object.__setattr__(self, "camera_slugs", slugs)

    @property
    def availability_topic(self) -> str:
        """The retained ``online`` / ``offline`` (the connection's last will)."""
        return f"{self.state_base}/availability"

    @property
    def doorbell_topic(self) -> str:
        """Where presses go (not retained: an event must not fire again when a subscriber
        reconnects)."""
        return f"{self.state_base}/doorbell"

    @property
    def pending_topic(self) -> str:
        """The retained number of requests waiting for an owner."""
        return f"{self.state_base}/pending_requests"

    @property
    def status_topic(self) -> str:
        """Home Assistant's own birth and last will (``online`` when it starts)."""
        return f"{self.prefix}/status"

    def motion_topic(self, camera: str) -> str:
        """The retained ``ON`` / ``OFF`` of ``camera``'s motion."""
        return f"{self.state_base}/motion/{self.camera_slugs[camera]}"

    def config_topic(self, component: str, object_id: str) -> str:
        """Where an entity's discovery config goes."""
        return f"{self.prefix}/{component}/{self.node_id}/{object_id}/config"


def discovery_messages(node: HomeAssistantNode) -> list[Message]:
    """One retained discovery config per entity: the doorbell, motion per camera, pending
    requests. Only keys that Home Assistant documents for each component are used."""
    device = {
        "identifiers": [f"doorward_{node.device_id}"],
        "name": node.name,
        "manufacturer": _MANUFACTURER,
        "model": _MODEL,
        "sw_version": node.sw_version,
    }
    common = {
        "availability_topic": node.availability_topic,
        "payload_available": AVAILABLE.decode(),
        "payload_not_available": NOT_AVAILABLE.decode(),
        "device": device,
        "origin": {"name": "Doorward", "sw_version": node.sw_version},
        "qos": 1,
    }
    out = [
        _config(
            node,
            "event",
            "doorbell",
            {
                "name": "Doorbell",
                "device_class": "doorbell",
                "event_types": [PRESS],
                "state_topic": node.doorbell_topic,
                **common,
            },
        )
    ]
    for camera, slug in node.camera_slugs.items():
        out.append(
            _config(
                node,
                "binary_sensor",
                f"motion_{slug}",
                {
                    "name": f"Motion {camera}",
                    "device_class": "motion",
                    "state_topic": node.motion_topic(camera),
                    "payload_on": MOTION_ON.decode(),
                    "payload_off": MOTION_OFF.decode(),
                    **common,
                },
            )
        )
    out.append(
        _config(
            node,
            "sensor",
            "pending_requests",
            {
                "name": "Pending requests",
                "icon": "mdi:account-clock",
                "state_class": "measurement",
                "state_topic": node.pending_topic,
                **common,
            },
        )
    )
    return out


def _config(
    node: HomeAssistantNode, component: str, object_id: str, body: dict[str, Any]
) -> Message:
    unique_id = f"{node.node_id}_{object_id}"
    return Message(node.config_topic(component, object_id), _json({**body, "unique_id": unique_id}))


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


class StateBoard:
    """The entities' current states, changed by the device's events; every change is a message.

    A camera's motion is ON from its ``motion`` event (the detector's rising edge) until the
    first of: a clip of that camera finishes (the recorder saw no motion for its post-roll), or
    ``hold_s`` pass without a new ``motion`` event (no clip was opened, or it was refused). So it
    always turns OFF, even when events are lost. ``now_s`` is any monotonic clock, the same for
    every call."""

    def __init__(self, node: HomeAssistantNode, *, hold_s: float) -> None:
        if not hold_s > 0:
            raise ValueError(f"hold_s must be > 0, got {hold_s}")
        self.node = node
        self._hold_s = hold_s
        self._motion: dict[str, bool] = dict.fromkeys(node.cameras, False)
        self._last_motion_s: dict[str, float] = {}
        self.pending: int | None = None

    def on_event(self, event: Event, now_s: float) -> list[Message]:
        """The messages that ``event`` makes (none for kinds or cameras it does not know)."""
        camera = event.data.get("camera")
        if event.kind == "doorbell.pressed":
            payload = {"event_type": PRESS}
            if camera in self.node.camera_slugs:
                payload["camera"] = camera
            return [Message(self.node.doorbell_topic, _json(payload), retain=False)]
        if camera not in self._motion:
            return []
        if event.kind == "motion":
            self._last_motion_s[camera] = now_s
            return self._set_motion(camera, True)
        if event.kind == "clip.finished":
            return self._set_motion(camera, False)
        return []

    def due(self, now_s: float) -> list[Message]:
        """OFF for each camera whose motion is ON past its hold."""
        out: list[Message] = []
        for camera, on in self._motion.items():
            if on and now_s >= self._deadline(camera):
                out += self._set_motion(camera, False)
        return out

    def next_due_s(self) -> float | None:
        """When :meth:`due` next has something to say, or None."""
        times = [self._deadline(camera) for camera, on in self._motion.items() if on]
        return min(times, default=None)

    def set_pending(self, count: int) -> list[Message]:
        """The pending-request count, if it changed."""
        if count < 0:
            raise ValueError(f"a pending count must be >= 0, got {count}")
        if count == self.pending:
            return []
        self.pending = count
        return [Message(self.node.pending_topic, str(count).encode())]

    def reset_motion(self) -> list[Message]:
        """Every camera OFF (after events were lost: a state must not stay ON for ever)."""
        out: list[Message] = []
        for camera in self._motion:
            out += self._set_motion(camera, False)
        return out

    def snapshot(self) -> list[Message]:
        """Every state as it is now (after a (re)connection)."""
        out = [
            Message(self.node.motion_topic(camera), MOTION_ON if on else MOTION_OFF)
            for camera, on in self._motion.items()
        ]
        if self.pending is not None:
            out.append(Message(self.node.pending_topic, str(self.pending).encode()))
        return out

    def _deadline(self, camera: str) -> float:
        return self._last_motion_s.get(camera, 0.0) + self._hold_s

    def _set_motion(self, camera: str, on: bool) -> list[Message]:
        if self._motion[camera] == on:
            return []
        self._motion[camera] = on
        return [Message(self.node.motion_topic(camera), MOTION_ON if on else MOTION_OFF)]
