"""The doorbell's events through the relay: each owner's copy, age-encrypted to that owner.

:class:`RelayEvents` takes the events the owners' WebSocket stream carries (it is fed by one
subscription to the device's event bus, for every kind) and publishes each one, at QoS 1, to
``doorward/v1/cli/<owner client id>/ev/<device id>`` for every current owner. The payload is a
real age file (age-encryption.org/v1) to that owner's recipient alone, so the owner's phone, or the
``age`` tool with the owner's identity, opens it and nobody else can. Its plaintext is the event's
JSON as the WebSocket sends it, followed by spaces up to a multiple of :data:`PAD_BYTES`: the
operator sees one size for every ordinary event, whatever its kind.

Owners are read from the device's table when an event is sent, never remembered: an event sent
after an owner's removal is stored does not go to that owner. Sending runs in its own task (the
bus never waits for it) and the encryption in a worker thread. While the broker cannot be reached
events wait in a queue of :data:`QUEUE_LENGTH`; past that the oldest are dropped (and counted),
so an outage never holds up the cameras. An event whose publish failed half way is sent again to
the owners that have not acknowledged it, so an owner may (rarely) get an event twice; the
client drops repeats.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from crypto import age
from crypto.errors import CryptoError
from hub.wire.events import Event

__all__ = [
    "EVENT_EXPIRY_S",
    "PAD_BYTES",
    "QUEUE_LENGTH",
    "EventSource",
    "RelayEvents",
    "event_topic",
    "pad",
    "seal_event",
]

logger = logging.getLogger(__name__)

PAD_BYTES = 512  # plaintexts are padded to a multiple of this: one size for every ordinary event
QUEUE_LENGTH = 256  # events kept while the broker is unreachable; older ones are dropped
# The broker discards an event nobody fetched within a day: a press that old is news no more.
EVENT_EXPIRY_S = 24 * 3600
_RETRY_S = (0.5, 1.0, 2.0, 5.0)

# (owner client id, owner's age recipient) for every current owner, read when an event is sent.
Owners = Callable[[], Sequence[tuple[str, str]]]


class EventSource(Protocol):
    """Where the events come from: a subscription of the device's event bus."""

    dropped: bool

    def __aiter__(self) -> AsyncIterator[Event]: ...  # pragma: no cover - a protocol

    def close(self) -> None:
        """Leave the bus."""


def event_topic(client_id: str, device_id: str) -> str:
    """Where ``device_id`` publishes events for the owner ``client_id``."""
    return f"doorward/v1/cli/{client_id}/ev/{device_id}"


def pad(text: bytes) -> bytes:
    """``text`` followed by spaces up to the next multiple of :data:`PAD_BYTES` (JSON ignores
    trailing whitespace, so the padded text still parses as the event)."""
    return text + b" " * (-len(text) % PAD_BYTES)


def seal_event(event: Event, recipient: age.Recipient) -> bytes:
    """The event as an age file to ``recipient`` alone, its JSON padded (see :func:`pad`)."""
    text = json.dumps(event.to_json(), separators=(",", ":"), ensure_ascii=False).encode()
    return age.encrypt_bytes([recipient], pad(text))


class RelayEvents:
    """The owners' copies of the device's events, queued and published on the relay connection.

    :meth:`feed` runs for the device's life; :meth:`send` runs while a broker connection lasts
    (:class:`hub.relay.device.RelayDevice` starts it on each connection and cancels it when the
    connection ends)."""

    def __init__(
        self,
        *,
        device_id: str,
        source: Callable[[], EventSource | None],
        owners: Owners,
        queue_length: int = QUEUE_LENGTH,
    ) -> None:
        if queue_length < 1:
            raise ValueError(f"queue_length must be at least 1, got {queue_length}")
        self.device_id = device_id
        self._subscribe = source
        self._owners = owners
        self._queue: collections.deque[Event] = collections.deque(maxlen=queue_length)
        self._ready = asyncio.Event()
        # The event being sent, its copies not yet acknowledged by the broker (None until
        # sealed), and whether a publish of them was tried (then owners are checked again).
        self._current: Event | None = None
        self._unsent: dict[str, bytes] | None = None
        self._tried = False
        self.published = 0  # copies acknowledged by the broker
        self.dropped = 0  # events dropped because the queue was full

    def __repr__(self) -> str:
        return f"RelayEvents({self.device_id!r}, queued={len(self._queue)})"

    @property
    def queued(self) -> int:
        """Events waiting to be sent."""
        return len(self._queue) + (self._current is not None)

    def offer(self, event: Event) -> None:
        """Queue ``event`` for the owners; never blocks (the oldest is dropped when full)."""
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
            logger.warning(
                "relay.event_dropped seq=%d reason=queue_full dropped=%d",
                self._queue[0].seq,
                self.dropped,
            )
        self._queue.append(event)
        self._ready.set()

    async def feed(self) -> None:
        """Queue every event of the device's bus until the bus closes; subscribes again if the
        bus ever dropped this subscription (it is drained at once, so only a burst of hundreds
        of events in one turn of the loop could make it fall behind)."""
        while (source := self._subscribe()) is not None:
            try:
                async for event in source:
                    self.offer(event)
            finally:
                source.close()
            if not source.dropped:
                return  # the bus closed: the device is stopping
            logger.warning("relay.events_resubscribed reason=bus_dropped")
        logger.error("relay.events_off reason=bus_full")

    async def send(self, mqtt: aiomqtt.Client) -> None:
        """Publish queued events on ``mqtt`` until cancelled (the connection ended). A publish
        that fails is tried again on this connection after a pause, or on the next one."""
        attempt = 0
        while True:
            if self._current is None:
                while not self._queue:
                    self._ready.clear()
                    await self._ready.wait()
                self._current, self._unsent, self._tried = self._queue.popleft(), None, False
            if self._unsent is None:
                self._unsent = await asyncio.to_thread(self._seal, self._current)
            elif self._tried:
                # Sent before, in part: an owner removed meanwhile gets nothing more.
                current = {cid for cid, _ in await asyncio.to_thread(self._owners)}
                self._unsent = {c: p for c, p in self._unsent.items() if c in current}
            try:
                self._tried = True
                await self._publish(mqtt, self._unsent)
                self._current = self._unsent = None
                attempt = 0
            except aiomqtt.MqttError as exc:
                delay = _RETRY_S[min(attempt, len(_RETRY_S) - 1)]
                attempt += 1
                logger.warning(
                    "relay.event_publish_failed error=%s retry_s=%s", type(exc).__name__, delay
                )
                await asyncio.sleep(delay)

    async def _publish(self, mqtt: aiomqtt.Client, unsent: dict[str, bytes]) -> None:
        """Publish ``unsent`` copies together, forgetting each one the broker acknowledged."""
        properties = Properties(PacketTypes.PUBLISH)
        properties.MessageExpiryInterval = EVENT_EXPIRY_S

        async def one(client_id: str, payload: bytes) -> None:
            await mqtt.publish(
                event_topic(client_id, self.device_id), payload, qos=1, properties=properties
            )
            unsent.pop(client_id, None)
            self.published += 1

        results = await asyncio.gather(
            *(one(c, p) for c, p in list(unsent.items())), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    def _seal(self, event: Event) -> dict[str, bytes]:
        """One sealed copy per current owner (blocking: runs in a worker thread)."""
        copies = {}
        for client_id, recipient in self._owners():
            try:
                copies[client_id] = seal_event(event, age.parse_recipient(recipient))
            except CryptoError as exc:  # a damaged row must not stop the other owners' copies
                logger.error(
                    "relay.event_unsealed owner=%s error=%s", client_id, type(exc).__name__
                )
        return copies
