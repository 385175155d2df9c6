"""MQTT 5 clients of the test broker, as a doorbell, a phone or a requester would connect."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from hub.relay.broker import BrokerError, MosquittoBroker, find_mosquitto
from hub.server.state import Device
from tests.kit import in_ci

DEVICES = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")
OWNER = "owner"
REQUESTER = "requester"
INTRUDER = "intruder"
OPERATOR = "operator"
CLIENTS = (OWNER, REQUESTER, INTRUDER)
# The owner may see the availability of alpha and foxtrot; nobody else sees any.
OWNED = {OWNER: ("alpha", "foxtrot")}

WAIT_S = 5.0


def inbox(device: str, sender: str) -> str:
    """Where ``sender`` publishes a request for ``device``."""
    return f"doorward/v1/dev/{device}/in/{sender}"


def responses(client: str, device: str) -> str:
    """Where ``device`` publishes its responses to ``client``."""
    return f"doorward/v1/cli/{client}/res/{device}"


def events(client: str, device: str) -> str:
    """Where ``device`` publishes events for the owner ``client``."""
    return f"doorward/v1/cli/{client}/ev/{device}"


def availability(device: str) -> str:
    """The device's retained availability (and last will)."""
    return f"doorward/v1/dev/{device}/avail"


def client(
    broker: MosquittoBroker,
    name: str,
    *,
    password: str | None = None,
    device: bool = False,
    identifier: str | None = None,
    session_expiry_s: int | None = None,
    will: aiomqtt.Will | None = None,
    tls: bool = True,
) -> aiomqtt.Client:
    """An MQTT 5 client of ``broker`` logged in as ``name`` on its role's listener.

    With ``session_expiry_s`` the session is persistent (clean start off, that expiry)."""
    properties = None
    if session_expiry_s is not None:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = session_expiry_s
    return aiomqtt.Client(
        broker.host,
        broker.device_port if device else broker.client_port,
        username=name,
        password=broker.credentials(name).password if password is None else password,
        identifier=identifier or name,
        protocol=aiomqtt.ProtocolVersion.V5,
        tls_context=broker.tls_context() if tls else None,
        clean_start=session_expiry_s is None,
        properties=properties,
        will=will,
        timeout=WAIT_S,
    )


def request_properties(response_topic: str, correlation: bytes) -> Properties:
    """MQTT 5 PUBLISH properties of a request: where to answer, and what to quote back."""
    properties = Properties(PacketTypes.PUBLISH)
    properties.ResponseTopic = response_topic
    properties.CorrelationData = correlation
    return properties


async def next_message(mqtt: aiomqtt.Client) -> aiomqtt.Message:
    """The next message delivered to ``mqtt`` (failing after a few seconds)."""
    async with asyncio.timeout(WAIT_S):
        return await anext(mqtt.messages)


async def messages_until(mqtt: aiomqtt.Client, marker: bytes) -> list[aiomqtt.Message]:
    """Every message delivered to ``mqtt`` before the one whose payload is ``marker``.

    The marker is published after whatever the test expects to be withheld has been acknowledged
    by the broker, so anything the broker delivered arrives before it (it keeps the order)."""
    before: list[aiomqtt.Message] = []
    while (message := await next_message(mqtt)).payload != marker:
        before.append(message)
    return before


def connect_packet(
    username: str, password: str, *, will: tuple[str, bytes] | None = None, keepalive_s: int = 60
) -> bytes:
    """An MQTT 5 CONNECT packet (§3.1), clean start, for tests that need a raw socket: a plain
    TCP connection, or a doorbell that vanishes without a DISCONNECT. ``will`` is a retained
    QoS 1 last will (topic, payload)."""

    def text(value: str | bytes) -> bytes:
        data = value.encode() if isinstance(value, str) else value
        return len(data).to_bytes(2, "big") + data

    flags = 0x80 | 0x40 | 0x02  # user name, password, clean start
    payload = text(username)  # the client id; the broker replaces it by the username anyway
    if will is not None:
        flags |= 0x04 | 0x08 | 0x20  # will, will QoS 1, will retain
        payload += b"\x00" + text(will[0]) + text(will[1])  # no will properties
    payload += text(username) + text(password)
    body = text("MQTT") + bytes([5, flags]) + keepalive_s.to_bytes(2, "big") + b"\x00" + payload
    return b"\x10" + _varint(len(body)) + body


def publish_packet(topic: str, payload: bytes) -> bytes:
    """An MQTT 5 PUBLISH packet (§3.3), QoS 0, no properties."""
    name = topic.encode()
    body = len(name).to_bytes(2, "big") + name + b"\x00" + payload
    return b"\x30" + _varint(len(body)) + body


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def need_mosquitto() -> None:
    """Skip the test when ``mosquitto`` is not installed (in CI, fail: it must be)."""
    try:
        find_mosquitto()
    except BrokerError as exc:
        if in_ci():
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def device_id_of(data: Path) -> str:
    """The id of the device whose data folder is ``data`` (made on first use): it names the
    device's broker login, so the broker is made before the device runs."""
    device = Device.open(data)
    try:
        return device.identity.device_id
    finally:
        device.close()
