"""The phone's (or requester's) side of the relay: signed API calls through the MQTT 5 broker.

:class:`RelayTransport` carries the same RFC 9421-signed request the LAN API takes: it is written
as Binary HTTP (RFC 9292), sealed to the device's relay key configuration, published at QoS 1 to
``doorward/v1/dev/<dev>/in/<cli>`` with the response topic ``doorward/v1/cli/<cli>/res/<dev>``
and a random correlation id, and the answer with that correlation id is opened with the request's
context. The broker sees device and client ids, sizes and timing only.

Requests go as chunked Oblivious HTTP (draft-ietf-ohai-chunked-ohttp) so that answers of any
size come back in chunks, one per broker message, read in order and acknowledged as they are read
(:class:`RelayStream`): ``DoorwardClient(..., relay=transport)`` sends every call this way,
streaming downloads included. A request body must still fit one broker message.

The session is persistent (clean start off) unless ``session_expiry_s`` is None: an answer or an
event published while the phone's connection is down waits at the broker. After a lost
connection the transport logs in again (backing off, with jitter) and publishes once more, byte
for byte, every call whose answer has not started; the device answers a repeat from its memory
of handled calls (``hub.relay.dedupe``), so nothing is done twice.

An owner's transport (given the owner's age ``identity``) also subscribes, on the same connection,
to ``doorward/v1/cli/<cli>/ev/<dev>``, where the device publishes each event age-encrypted to that
owner; :meth:`RelayTransport.events` yields them decrypted.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import secrets
import ssl
from collections.abc import AsyncIterator, Coroutine
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
from multidict import CIMultiDict, CIMultiDictProxy
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from crypto import age
from crypto.errors import CryptoError, DoorwardError
from hub.relay.connection import NO_DELAY, backoff_s
from hub.wire import bhttp, ohttp, ohttp_chunked, ohttp_pq
from hub.wire.bhttp_stream import ResponseReader
from hub.wire.events import EVENT_KINDS, Event
from hub.wire.relay_keys import RelayKeys

__all__ = [
    "MAX_BODY_BYTES",
    "RelayCallFailed",
    "RelayLoginFailed",
    "RelayResponse",
    "RelayStream",
    "RelayStreamBroken",
    "RelayTimeout",
    "RelayTransport",
]

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 128 * 1024 - 2048  # the broker's 128 KiB packet, less topic and properties
DEFAULT_TIMEOUT_S = 30.0
# How long the broker keeps this client's session (answers that arrive while it is away).
DEFAULT_SESSION_EXPIRY_S = 3600
# A request older than this is dropped by the broker and refused by the device (its
# ``relay_max_age_s``): a doorbell that was offline this long gets nothing stale.
DEFAULT_MAX_WAIT_S = 1800
_RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0)
EVENT_QUEUE_LENGTH = 256  # decrypted events waiting for the reader; the oldest go first
MAX_EVENT_BYTES = 64 * 1024  # an event is a few hundred bytes sealed: more is not one
_RECENT_EVENTS = 64  # (seq, time) of the last events, to drop a QoS 1 repeat


MAX_BODY_BYTES = 16 << 20  # an answer read whole into memory (downloads are streamed instead)
SEQ_PROPERTY = "seq"  # as hub.relay.device: a chunk's sequence number
ACK_PROPERTY = "ack"  # as hub.relay.device: the highest sequence number read in order
# Messages waiting for one answer's reader: the device sends at most 8 ahead of the acks; the
# rest is room for QoS 1 duplicates. More means a flood, and the answer is refused.
_MAX_QUEUED = 64


class RelayCallFailed(DoorwardError):
    """A call through the relay could not be made or its answer could not be read."""


class RelayLoginFailed(RelayCallFailed):
    """The broker refused this client's login or could not be reached (``reason`` says how)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class RelayStreamBroken(RelayCallFailed):
    """A relayed answer arrived altered, out of order, incomplete or flooded: a chunk was changed,
    lost, reordered or inserted on the way. Nothing of it should be trusted; try again."""


class RelayTimeout(RelayCallFailed, TimeoutError):
    """No answer came through the relay in time: the device may be offline, or the broker
    dropped the request (it does not tell the sender); it is safe to send the call again."""


class RelayResponse:
    """An answer that came through the relay, read like an aiohttp response for JSON calls."""

    def __init__(self, response: bhttp.Response) -> None:
        self.status = response.status
        self.headers = CIMultiDictProxy(CIMultiDict(response.headers))
        self.reason = f"HTTP {response.status}"
        self.content_length = len(response.content)
        self._body = response.content

    def __repr__(self) -> str:
        return f"RelayResponse(status={self.status}, bytes={len(self._body)})"

    async def read(self) -> bytes:
        """The whole body."""
        return self._body

    async def json(self, *, content_type: str | None = None) -> Any:
        """The body as JSON (``content_type`` is accepted and ignored, as aiohttp's None does)."""
        return json.loads(self._body)

    def release(self) -> None:
        """Nothing to release: the body is already in memory."""

    async def __aenter__(self) -> RelayResponse:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class RelayStream:
    """An answer arriving through the relay in chunks, read like an aiohttp response: ``status``,
    ``headers`` and ``content_length`` at once, the body through ``content.iter_chunked``.

    Each chunk is checked in order (its sequence number, then the chunked OHTTP seal, which binds
    its place in the answer), acknowledged to the device once read (so the device sends no faster
    than the body is consumed), and QoS 1 duplicates are skipped. A chunk out of order, altered,
    from another answer, or an answer that ends early raises :class:`RelayStreamBroken`."""

    def __init__(
        self,
        transport: RelayTransport,
        correlation: bytes,
        queue: asyncio.Queue[aiomqtt.Message | BaseException],
        exchange: ohttp_chunked.ChunkedClientExchange,
        timeout_s: float,
    ) -> None:
        self._transport = transport
        self._correlation = correlation
        self._queue = queue
        self._opener = exchange.opener()
        self._reader = ResponseReader()
        self._timeout_s = timeout_s
        self._next = 0  # the sequence number due next
        self._ready: collections.deque[bytes] = collections.deque()
        self._done = False
        self._ack_value = -1
        self._ack_wanted = asyncio.Event()
        self._acker: asyncio.Task[None] | None = None
        self.duplicates = 0
        self.status = 0
        self.headers: CIMultiDictProxy[str] = CIMultiDictProxy(CIMultiDict())
        self.reason = ""
        self.content_length: int | None = None
        self.content = _Content(self)

    def __repr__(self) -> str:
        return f"RelayStream(status={self.status}, chunks={self._next})"

    @property
    def acknowledged(self) -> int:
        """The highest chunk read in order and due to be acknowledged (-1: none yet)."""
        return self._ack_value

    async def start(self) -> None:
        """Wait for the head of the answer (status and header fields)."""
        self._acker = self._transport._track(self._send_acks())
        while self._reader.head is None:
            await self._pull()
        head = self._reader.head
        self.status = head.status
        self.headers = CIMultiDictProxy(CIMultiDict(head.headers))
        self.reason = f"HTTP {head.status}"
        self.content_length = self._reader.content_length

    async def read(self, max_bytes: int = MAX_BODY_BYTES) -> bytes:
        """The whole body (refused past ``max_bytes``: use ``content.iter_chunked`` for more)."""
        body = bytearray()
        async for piece in self.content.iter_chunked(1 << 16):
            body += piece
            if len(body) > max_bytes:
                self.release()
                raise RelayCallFailed(
                    f"the relayed answer is larger than {max_bytes} bytes; stream it instead"
                )
        return bytes(body)

    async def json(self, *, content_type: str | None = None) -> Any:
        """The body as JSON (``content_type`` is accepted and ignored, as aiohttp's None does)."""
        return json.loads(await self.read())

    def release(self) -> None:
        """Stop reading: no more acknowledgements (the device abandons the rest)."""
        self._done = True
        self._transport._forget(self._correlation)
        self._ack_wanted.set()
        if self._acker is not None:
            self._acker.cancel()

    async def __aenter__(self) -> RelayStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    async def _pieces(self, size: int) -> AsyncIterator[bytes]:
        try:
            while True:
                while self._ready:
                    piece = self._ready.popleft()
                    for start in range(0, len(piece), size):
                        yield piece[start : start + size]
                if self._opener.finished:
                    break
                await self._pull()
        finally:
            self.release()

    async def _pull(self) -> None:
        """Take the next chunk in order; its content pieces go to ``_ready``."""
        if self._done:
            raise RelayCallFailed("this relayed answer was already released")
        while True:
            try:
                async with asyncio.timeout(self._timeout_s):
                    item = await self._queue.get()
            except TimeoutError:
                self.release()
                raise RelayTimeout(
                    f"chunk {self._next} of the answer did not come through the relay within "
                    f"{self._timeout_s:g} s: the device or the broker stopped; try again"
                ) from None
            if isinstance(item, BaseException):
                self.release()
                raise item
            seq = _sequence(item)
            if seq is None:
                self.release()
                raise RelayStreamBroken(
                    "the relay delivered a message without a usable sequence number for this "
                    "answer; the download stopped, try again"
                )
            if seq < self._next:
                self.duplicates += 1  # QoS 1 may deliver a chunk twice: it was read already
                continue
            if seq != self._next:
                self.release()
                raise RelayStreamBroken(
                    f"the relay delivered chunk {seq} where chunk {self._next} was due: part of "
                    "the answer was lost or reordered on the way; the download stopped, try again"
                )
            break
        payload = item.payload if isinstance(item.payload, bytes) else b""
        try:
            if self._next == 0:
                plain, final = self._opener.open_first(payload)
            else:
                plain, final = self._opener.open_chunk(payload)
            self._ready.extend(self._reader.feed(plain))
            if final:
                self._reader.finish()
        except ohttp_chunked.StreamBroken as exc:
            self.release()
            raise RelayStreamBroken(
                f"the relayed answer was altered on the way ({exc}); the download stopped, "
                "try again"
            ) from None
        except bhttp.BhttpError as exc:
            self.release()
            raise RelayStreamBroken(f"the relayed answer is not whole: {exc}") from None
        self._next += 1
        if not final:
            self._ack_value = self._next - 1
            self._ack_wanted.set()

    async def _send_acks(self) -> None:
        """Tell the device how far the answer has been read, one acknowledgement at a time:
        when they fall behind, only the latest goes."""
        sent = -1
        # ``_done`` too, not only cancellation: a cancellation that lands inside the MQTT
        # client's publish can be swallowed there.
        while not self._done:
            await self._ack_wanted.wait()
            self._ack_wanted.clear()
            if not self._done and self._ack_value > sent:
                sent = self._ack_value
                try:
                    await self._transport._ack(self._correlation, sent)
                except aiomqtt.MqttError as exc:
                    logger.warning("relay.ack_failed error=%s", type(exc).__name__)
                    return


class _Content:
    """The ``content`` of a :class:`RelayStream`, as much of aiohttp's StreamReader as downloads use."""

    def __init__(self, stream: RelayStream) -> None:
        self._stream = stream

    def iter_chunked(self, size: int) -> AsyncIterator[bytes]:
        """The body in pieces of at most ``size`` bytes, as it arrives."""
        return self._stream._pieces(size)


def _sequence(message: aiomqtt.Message) -> int | None:
    for key, value in getattr(message.properties, "UserProperty", None) or ():
        if key == SEQ_PROPERTY:
            return int(value) if str(value).isdigit() and len(str(value)) < 13 else None
    return None


class _Call:
    """A call waiting for its answer: what was published (sent again after a reconnect until the
    answer starts), and the queue its answer's messages go to."""

    __slots__ = ("content_type", "queue", "sealed", "started", "stream")

    def __init__(
        self, sealed: bytes, queue: asyncio.Queue[aiomqtt.Message | BaseException]
    ) -> None:
        self.sealed = sealed
        self.queue = queue
        self.started = False  # a message of the answer has arrived
        self.stream: RelayStream | None = None
        self.content_type = ohttp_chunked.REQUEST_MEDIA_TYPE


class RelayTransport:
    """One client's MQTT 5 connection to the relay, for calls to one device.

    The session is persistent (clean start off, ``session_expiry_s``): an answer the device
    publishes while this client's connection is down waits at the broker. After a lost
    connection the transport logs in again (backing off) and publishes every call still waiting
    once more, byte for byte; the device answers a repeat from its memory of handled calls
    (``hub.relay.dedupe``), so nothing is done twice. Each request carries an MQTT message expiry
    of ``max_wait_s``: the broker drops what the device could not take in time, and the device
    accepts a relayed signature that old (not older)."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        tls: ssl.SSLContext,
        client_id: str,
        password: str,
        device_id: str,
        key_config: bytes,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        session_expiry_s: int | None = DEFAULT_SESSION_EXPIRY_S,
        max_wait_s: int = DEFAULT_MAX_WAIT_S,
        identity: age.Identity | None = None,
    ) -> None:
        """``identity`` (an owner's age identity) turns on the owner's event subscription;
        ``session_expiry_s`` keeps the broker session that long after a disconnect (None: a
        clean session, and what is published while the phone is away is lost)."""
        if session_expiry_s is not None and session_expiry_s < 1:
            raise ValueError(f"session_expiry_s must be at least 1, got {session_expiry_s}")
        self._host, self._port, self._tls = host, port, tls
        self.client_id, self.device_id = client_id, device_id
        self._password = password
        try:
            keys = RelayKeys.parse(key_config)
        except ohttp.OhttpError as exc:
            raise RelayCallFailed(
                f"the device's relay key configuration is unusable ({exc}); fetch it again "
                "over the LAN"
            ) from None
        self._config, self._hybrid = keys.classic, keys.hybrid
        self._timeout_s = timeout_s
        self._session_expiry_s = session_expiry_s
        self._max_wait_s = max_wait_s
        self._pending: dict[bytes, _Call] = {}
        self._mqtt: aiomqtt.Client | None = None
        self._up = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        self.reconnects = 0
        self.published = 0  # requests the broker acknowledged (QoS 1), resends included
        self.sent_bytes = 0  # sealed requests' payloads, as the broker sees their sizes
        self.received_bytes = 0  # sealed answers' payloads
        self._identity = identity
        # Decrypted events for events(); None marks the end of the stream (the transport closed).
        self._events: collections.deque[Event | None] = collections.deque()
        self._event_ready = asyncio.Event()
        self._recent: collections.deque[tuple[int, float]] = collections.deque(
            maxlen=_RECENT_EVENTS
        )
        self.events_dropped = 0  # event messages that did not open or parse, or overflowed

    def __repr__(self) -> str:
        return (
            f"RelayTransport({self.client_id!r} -> {self.device_id!r}, {self._host}:{self._port})"
        )

    @property
    def inbox(self) -> str:
        """The topic this client's requests for the device go to."""
        return f"doorward/v1/dev/{self.device_id}/in/{self.client_id}"

    @property
    def responses(self) -> str:
        """The topic the device answers this client on."""
        return f"doorward/v1/cli/{self.client_id}/res/{self.device_id}"

    @property
    def event_topic(self) -> str:
        """The topic the device publishes this owner's events on."""
        return f"doorward/v1/cli/{self.client_id}/ev/{self.device_id}"

    async def __aenter__(self) -> RelayTransport:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Log in to the broker and subscribe to this client's responses from the device; a
        refused login or an unreachable broker raises :class:`RelayCallFailed` here. Later
        outages are bridged in the background."""
        async with self._lock:
            if self._runner is not None:
                return
            try:
                mqtt = await self._login()
            except aiomqtt.MqttError as exc:
                raise RelayLoginFailed(
                    f"cannot log in to the relay at {self._host}:{self._port} as "
                    f"{self.client_id} ({exc}); check the relay URL, its CA and this client's "
                    "broker password",
                    reason=str(exc),
                ) from None
            self._runner = asyncio.ensure_future(self._run(mqtt))

    async def close(self) -> None:
        """Disconnect; calls still waiting fail."""
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for call in self._pending.values():
            _fail(call.queue, RelayCallFailed("the relay connection was closed"))
        self._pending.clear()
        if self._identity is not None:
            self._events.append(None)
            self._event_ready.set()

    async def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> RelayResponse:
        """Send one signed request (``url`` as signed: its authority and path travel inside the
        sealed message) and return the device's whole answer (at most ``MAX_BODY_BYTES``)."""
        stream = await self.stream(method, url, headers, body)
        async with stream:
            content = await stream.read()
        fields = tuple((k.lower(), v) for k, v in stream.headers.items())
        return RelayResponse(bhttp.Response(stream.status, fields, content))

    async def stream(
        self, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> RelayStream:
        """Send one signed request and return as soon as the answer's head is in; the body
        follows in chunks, paced by the reader (:class:`RelayStream`)."""
        parts = urlsplit(url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        fields = tuple((name.lower(), value) for name, value in headers.items())
        inner = bhttp.Request(method, parts.scheme, parts.netloc, path, fields, body).encode()
        if self._hybrid is not None:  # post-quantum: ML-KEM-768+X25519
            sealed, exchange = ohttp_pq.pq_encapsulate_chunked(self._hybrid, inner)
        else:
            sealed, exchange = ohttp_chunked.encapsulate_request(self._config, [inner])
        if len(sealed) > MAX_MESSAGE_BYTES:
            raise RelayCallFailed(
                f"the request is {len(sealed)} bytes sealed, more than one relay message "
                f"carries ({MAX_MESSAGE_BYTES}); send the body on the LAN"
            )
        await self.connect()
        correlation = secrets.token_bytes(16)
        call = _Call(sealed, asyncio.Queue(_MAX_QUEUED))
        if self._hybrid is not None:
            call.content_type = ohttp_pq.PQ_CHUNKED_REQUEST_MEDIA_TYPE
        stream = call.stream = RelayStream(self, correlation, call.queue, exchange, self._timeout_s)
        self._pending[correlation] = call
        try:
            try:
                async with asyncio.timeout(self._timeout_s):
                    await self._publish(correlation, call)
                await stream.start()
            except TimeoutError:  # RelayTimeout too: nothing of the answer came
                raise RelayTimeout(
                    f"no answer from device {self.device_id} through the relay within "
                    f"{self._timeout_s:g} s: it may be offline; try again later or on the LAN"
                ) from None
        except BaseException:
            stream.release()
            raise
        return stream

    def _track(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task this transport cancels and awaits when it closes."""
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _forget(self, correlation: bytes) -> None:
        self._pending.pop(correlation, None)

    async def _ack(self, correlation: bytes, seq: int) -> None:
        """Acknowledge chunks up to ``seq`` of the answer to ``correlation`` (dropped while the
        connection is down: the latest goes again after the reconnect)."""
        mqtt = self._mqtt
        if mqtt is None:
            return
        properties = Properties(PacketTypes.PUBLISH)
        properties.CorrelationData = correlation
        properties.UserProperty = [(ACK_PROPERTY, str(seq))]
        await mqtt.publish(self.inbox, b"", qos=1, properties=properties)

    async def _publish(self, correlation: bytes, call: _Call) -> None:
        """Publish ``call`` once the connection is up; if it drops meanwhile, the call stays
        pending and is published again after the reconnect."""
        await self._up.wait()
        mqtt = self._mqtt
        if mqtt is None:
            return  # the reconnect publishes it
        try:
            await mqtt.publish(
                self.inbox,
                call.sealed,
                qos=1,
                properties=self._properties(correlation, call.content_type),
            )
            self.published += 1
            self.sent_bytes += len(call.sealed)
        except aiomqtt.MqttError:
            logger.info("relay.publish_interrupted")  # published again after the reconnect

    def _properties(self, correlation: bytes, content_type: str) -> Properties:
        properties = Properties(PacketTypes.PUBLISH)
        properties.ResponseTopic = self.responses
        properties.CorrelationData = correlation
        properties.ContentType = content_type
        properties.MessageExpiryInterval = self._max_wait_s
        return properties

    async def _login(self) -> aiomqtt.Client:
        mqtt = aiomqtt.Client(
            self._host,
            self._port,
            username=self.client_id,
            password=self._password,
            identifier=self.client_id,
            protocol=aiomqtt.ProtocolVersion.V5,
            socket_options=NO_DELAY,
            tls_context=self._tls,
            timeout=self._timeout_s,
            **self._session_options(),
        )
        await mqtt.__aenter__()
        try:
            await mqtt.subscribe(self.responses, qos=1)
            if self._identity is not None:
                await mqtt.subscribe(self.event_topic, qos=1)
        except BaseException:
            await mqtt.__aexit__(None, None, None)
            raise
        return mqtt

    async def _run(self, mqtt: aiomqtt.Client) -> None:
        """Read answers; after a lost connection, log in again and resend what is waiting."""
        attempt = 0
        try:
            while True:
                self._mqtt = mqtt
                self._up.set()
                try:
                    if attempt:
                        await self._resume(mqtt)
                    attempt = 0
                    await self._read(mqtt)
                except aiomqtt.MqttError as exc:
                    logger.warning("relay.connection_lost error=%s", type(exc).__name__)
                finally:
                    self._up.clear()
                    self._mqtt = None
                    with contextlib.suppress(Exception):
                        await mqtt.__aexit__(None, None, None)
                mqtt = await self._relogin(attempt)
                attempt += 1
                self.reconnects += 1
        finally:
            self._up.clear()
            self._mqtt = None

    async def _resume(self, mqtt: aiomqtt.Client) -> None:
        """After a reconnect: publish again each call whose answer has not started, and repeat
        the latest acknowledgement of each answer under way (one lost with the connection would
        leave the device waiting)."""
        for correlation, call in list(self._pending.items()):
            if not call.started:
                await mqtt.publish(
                    self.inbox,
                    call.sealed,
                    qos=1,
                    properties=self._properties(correlation, call.content_type),
                )
                self.published += 1
            elif call.stream is not None and call.stream.acknowledged >= 0:
                await self._ack(correlation, call.stream.acknowledged)

    async def _relogin(self, attempt: int) -> aiomqtt.Client:
        """Log in again, backing off between tries, until it works (or the transport closes)."""
        while True:
            await asyncio.sleep(backoff_s(attempt, _RETRY_S))
            try:
                return await self._login()
            except aiomqtt.MqttError as exc:
                attempt += 1
                logger.info("relay.reconnect_failed error=%s", type(exc).__name__)

    async def events(self) -> AsyncIterator[Event]:
        """The owner's events from the device, decrypted, in the order the device sent them,
        until :meth:`close`. A lost connection is bridged as for calls: with a persistent session,
        what was published meanwhile arrives after the reconnect. One reader at a time. An event that does not open with this owner's identity or does
        not parse is logged in one line and skipped."""
        if self._identity is None:
            raise RelayCallFailed(
                "this relay transport has no age identity: pass the owner's identity to "
                "receive events"
            )
        await self.connect()
        while True:
            while not self._events:
                self._event_ready.clear()
                await self._event_ready.wait()
            event = self._events.popleft()
            if event is None:
                return
            yield event

    def _session_options(self) -> dict[str, Any]:
        """aiomqtt's options for a persistent session, or none for a clean one."""
        if self._session_expiry_s is None:
            return {"clean_start": True}
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self._session_expiry_s
        return {"clean_start": False, "properties": properties}

    def _take_event(self, message: aiomqtt.Message) -> None:
        """Decrypt and queue one event message; drop (one log line) what is not one."""
        reason = None
        payload = message.payload
        if self._identity is None:
            reason = "no_identity"
        elif not isinstance(payload, bytes) or len(payload) > MAX_EVENT_BYTES:
            reason = "too_large"
        else:
            try:
                event = _event_of(json.loads(age.decrypt_bytes([self._identity], payload)))
            except CryptoError:
                reason = "does_not_open"
            except (ValueError, TypeError, KeyError):  # JSONDecodeError and bad UTF-8 too
                reason = "malformed"
        if reason is not None:
            self.events_dropped += 1
            logger.warning("relay.event_dropped device_id=%s reason=%s", self.device_id, reason)
            return
        if (event.seq, event.time_s) in self._recent:
            logger.debug("relay.event_repeated seq=%d", event.seq)
            return
        self._recent.append((event.seq, event.time_s))
        if len(self._events) >= EVENT_QUEUE_LENGTH:
            self.events_dropped += 1
            dropped = self._events.popleft()
            logger.warning(
                "relay.event_dropped device_id=%s reason=queue_full seq=%s",
                self.device_id,
                dropped.seq if dropped is not None else "-",
            )
        self._events.append(event)
        self._event_ready.set()

    async def _read(self, mqtt: aiomqtt.Client) -> None:
        async for message in mqtt.messages:
            if message.topic.matches(self.event_topic):
                self._take_event(message)
                continue
            correlation = getattr(message.properties, "CorrelationData", None)
            call = self._pending.get(bytes(correlation)) if correlation else None
            if call is None or not isinstance(message.payload, bytes):
                logger.debug("relay.unmatched_answer")
                continue
            call.started = True
            self.received_bytes += len(message.payload)
            try:
                call.queue.put_nowait(message)
            except asyncio.QueueFull:
                # The device sends at most its window ahead of our acks: someone else is
                # flooding this answer.
                self._pending.pop(bytes(correlation or b""), None)
                _fail(
                    call.queue,
                    RelayStreamBroken(
                        "the relay delivered far more chunks than the device may send ahead; "
                        "the download stopped, try again"
                    ),
                )


def _fail(queue: asyncio.Queue[aiomqtt.Message | BaseException], error: BaseException) -> None:
    """Make the next read of ``queue`` raise ``error`` (room is made for it if need be)."""
    while True:
        try:
            queue.put_nowait(error)
            return
        except asyncio.QueueFull:
            queue.get_nowait()


def _event_of(data: Any) -> Event:
    """An event from its JSON (as the WebSocket carries it); ValueError if it is not one."""
    if not isinstance(data, dict) or set(data) != {"seq", "kind", "time", "data"}:
        raise ValueError("an event is an object with seq, kind, time and data")
    seq, kind, time_s, fields = data["seq"], data["kind"], data["time"], data["data"]
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise ValueError("an event's seq is a positive integer")
    if kind not in EVENT_KINDS:
        raise ValueError("an event's kind is one of EVENT_KINDS")
    if not isinstance(time_s, int | float) or isinstance(time_s, bool) or not math.isfinite(time_s):
        raise ValueError("an event's time is a number")
    if not isinstance(fields, dict):
        raise ValueError("an event's data is an object")
    return Event(seq, kind, float(time_s), fields)
