"""Home Assistant's side of the home broker, for the tests: what it subscribes to, and a schema of
the MQTT discovery configs written from Home Assistant's documentation of each component.

The schemas list only the documented options of the ``event``, ``binary_sensor`` and ``sensor``
MQTT platforms and of the device and origin mappings, and refuse any other key: Home Assistant
ignores an unknown key, so a misspelt option would otherwise fail silently in a real home.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiomqtt
import jsonschema

from hub.relay.broker import HomeBroker

DOORBELL = "doorward"  # the device's login on the home broker
HOME_ASSISTANT = "homeassistant"  # Home Assistant's login
WAIT_S = 10.0

CONFIG_TOPIC = re.compile(
    r"^(?P<prefix>[^+#]+)/(?P<component>event|binary_sensor|sensor)/"
    r"(?P<node>[a-zA-Z0-9_-]+)/(?P<object>[a-zA-Z0-9_-]+)/config$"
)

_STRING = {"type": "string"}
_TOPIC = {"type": "string", "minLength": 1, "not": {"pattern": "[+#]"}}
_DEVICE = {
    "type": "object",
    "properties": {
        "configuration_url": _STRING,
        "connections": {"type": "array"},
        "hw_version": _STRING,
        "identifiers": {
            "oneOf": [_STRING, {"type": "array", "items": _STRING, "minItems": 1}],
        },
        "manufacturer": _STRING,
        "model": _STRING,
        "name": _STRING,
        "suggested_area": _STRING,
        "sw_version": _STRING,
        "via_device": _STRING,
    },
    "anyOf": [{"required": ["identifiers"]}, {"required": ["connections"]}],
    "additionalProperties": False,
}
_ORIGIN = {
    "type": "object",
    "properties": {"name": _STRING, "sw_version": _STRING, "support_url": _STRING},
    "required": ["name"],
    "additionalProperties": False,
}
# Options every MQTT entity platform documents (availability, device registry, naming).
_COMMON = {
    "availability_topic": _TOPIC,
    "availability_mode": {"enum": ["all", "any", "latest"]},
    "payload_available": _STRING,
    "payload_not_available": _STRING,
    "device": _DEVICE,
    "origin": _ORIGIN,
    "enabled_by_default": {"type": "boolean"},
    "encoding": _STRING,
    "entity_category": {"enum": ["config", "diagnostic"]},
    "icon": {"type": "string", "pattern": "^mdi:[a-z0-9-]+$"},
    "json_attributes_topic": _TOPIC,
    "name": {"type": ["string", "null"]},
    "qos": {"enum": [0, 1, 2]},
    "unique_id": {"type": "string", "minLength": 1},
    "value_template": _STRING,
}
BINARY_SENSOR_CLASSES = [
    "battery",
    "battery_charging",
    "carbon_monoxide",
    "cold",
    "connectivity",
    "door",
    "garage_door",
    "gas",
    "heat",
    "light",
    "lock",
    "moisture",
    "motion",
    "moving",
    "occupancy",
    "opening",
    "plug",
    "power",
    "presence",
    "problem",
    "running",
    "safety",
    "smoke",
    "sound",
    "tamper",
    "update",
    "vibration",
    "window",
]


def _platform(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {**_COMMON, **properties},
        # unique_id is optional for Home Assistant, but the device registry needs it, and the
        # device mapping only works with it.
        "required": [*required, "unique_id", "device"],
        "additionalProperties": False,
    }


SCHEMAS = {
    "event": _platform(
        {
            "state_topic": _TOPIC,
            "event_types": {"type": "array", "items": _STRING, "minItems": 1, "uniqueItems": True},
            "device_class": {"enum": [None, "button", "doorbell", "motion"]},
        },
        ["state_topic", "event_types"],
    ),
    "binary_sensor": _platform(
        {
            "state_topic": _TOPIC,
            "device_class": {"enum": [None, *BINARY_SENSOR_CLASSES]},
            "payload_on": _STRING,
            "payload_off": _STRING,
            "off_delay": {"type": "integer", "minimum": 1},
            "expire_after": {"type": "integer", "minimum": 1},
            "force_update": {"type": "boolean"},
        },
        ["state_topic"],
    ),
    "sensor": _platform(
        {
            "state_topic": _TOPIC,
            "state_class": {"enum": ["measurement", "total", "total_increasing"]},
            "device_class": {"type": ["string", "null"]},
            "unit_of_measurement": _STRING,
            "suggested_display_precision": {"type": "integer", "minimum": 0},
            "expire_after": {"type": "integer", "minimum": 1},
            "force_update": {"type": "boolean"},
        },
        ["state_topic"],
    ),
}


@dataclass(frozen=True, slots=True)
class Seen:
    """One message as Home Assistant received it."""

    topic: str
    payload: bytes
    retain: bool


@dataclass(frozen=True, slots=True)
class Entity:
    """A discovered entity: its component, discovery topic and config."""

    component: str
    topic: str
    config: dict[str, Any]


def home_assistant(broker: HomeBroker, identifier: str = "home-assistant") -> aiomqtt.Client:
    """An MQTT client logged in as Home Assistant."""
    return aiomqtt.Client(
        broker.host,
        broker.port,
        username=HOME_ASSISTANT,
        password=broker.credentials(HOME_ASSISTANT).password,
        identifier=identifier,
        tls_context=broker.tls_context(),
        timeout=WAIT_S,
    )


class Listener:
    """Everything a Home Assistant client receives, in order, awaitable by content."""

    def __init__(self, mqtt: aiomqtt.Client) -> None:
        self.mqtt = mqtt
        self.seen: list[Seen] = []
        self._read = 0

    async def subscribe_like_home_assistant(self, prefix: str = "homeassistant") -> None:
        """The discovery prefix, and the device's own topics (Home Assistant subscribes to each
        state topic it discovers; one wildcard sees them all, and anything else sent there)."""
        await self.mqtt.subscribe(f"{prefix}/#", qos=1)
        await self.mqtt.subscribe("doorward/#", qos=1)

    async def until(self, topic: str, payload: bytes | None = None) -> Seen:
        """The first message from now on (or already received and not yet waited past) on
        ``topic`` (with ``payload``, if given)."""
        async with asyncio.timeout(WAIT_S):
            while True:
                while self._read < len(self.seen):
                    seen = self.seen[self._read]
                    self._read += 1
                    if seen.topic == topic and payload in (None, seen.payload):
                        return seen
                received = await anext(self.mqtt.messages)
                assert isinstance(received.payload, bytes)
                self.seen.append(Seen(str(received.topic), received.payload, received.retain))

    def last(self, topic: str) -> bytes | None:
        """The last payload received on ``topic`` so far."""
        payloads = [m.payload for m in self.seen if m.topic == topic]
        return payloads[-1] if payloads else None

    def entities(self) -> list[Entity]:
        """The discovery configs received so far (the last one per topic; empty ones delete)."""
        latest: dict[str, bytes] = {}
        for message in self.seen:
            if CONFIG_TOPIC.match(message.topic):
                latest[message.topic] = message.payload
        out = []
        for topic, payload in latest.items():
            if payload:
                match = CONFIG_TOPIC.match(topic)
                assert match is not None
                out.append(Entity(match["component"], topic, json.loads(payload)))
        return out


def check_discovery(entities: Iterable[Entity], published_topics: set[str]) -> None:
    """Every config valid against its component's documented schema; unique ids unique; one
    device; every state and availability topic a config names is one the device publishes."""
    entities = list(entities)
    assert entities, "no discovery config was published"
    unique_ids = [e.config["unique_id"] for e in entities]
    assert len(set(unique_ids)) == len(unique_ids), unique_ids
    devices = {json.dumps(e.config["device"], sort_keys=True) for e in entities}
    assert len(devices) == 1, devices
    for entity in entities:
        jsonschema.validate(entity.config, SCHEMAS[entity.component])
        match = CONFIG_TOPIC.match(entity.topic)
        assert match is not None
        assert match["object"] in entity.config["unique_id"]
        for key in ("state_topic", "availability_topic"):
            assert entity.config[key] in published_topics, (entity.topic, key)
        assert entity.config["payload_available"] == "online"
        assert entity.config["payload_not_available"] == "offline"


def suggested_acl(node_id: str, prefix: str = "homeassistant") -> str:
    """The home broker's ACL that docs/relay.md suggests for the doorbell's login, and Home
    Assistant's (it reads and writes everything, as its add-on's own user does)."""
    return (
        f"user {DOORBELL}\n"
        f"topic write {prefix}/+/{node_id}/+/config\n"
        f"topic write doorward/{node_id}/#\n"
        f"topic read {prefix}/status\n"
        f"\nuser {HOME_ASSISTANT}\n"
        "topic readwrite #\n"
    )
