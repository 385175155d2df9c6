"""The phone's (or requester's) side of the relay: signed API calls through the MQTT 5 broker.

:class:`RelayTransport` carries the same RFC 9421-signed request the LAN API takes: it is written
as Binary HTTP (RFC 9292), sealed to the device's relay key configuration (RFC 9458), published at
QoS 1 to ``doorward/v1/dev/<dev>/in/<cli>`` with the response topic
``doorward/v1/cli/<cli>/res/<dev>`` and a random correlation id, and the answer with that
correlation id is opened with the request's context. The broker sees device and client ids,
sizes and timing only.

Requests go as chunked Oblivious HTTP (draft-ietf-ohai-chunked-ohttp) so that answers of any
size come back in chunks, one per broker message, read in order and acknowledged as they are read
(:class:`RelayStream`): ``DoorwardClient(..., relay=transport)`` sends every call this way,
streaming downloads included. A request body must still fit one broker message.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import secrets
import socket
import ssl
from collections.abc import AsyncIterator, Coroutine
from typing import Any
from urllib.parse import urlsplit

import aiomqtt
from multidict import CIMultiDict, CIMultiDictProxy
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from crypto.errors import DoorwardError
from hub.wire import bhttp, ohttp, ohttp_chunked
from hub.wire.bhttp_stream import ResponseReader

__all__ = [
    "MAX_BODY_BYTES",
    "RelayCallFailed",
    "RelayResponse",
    "RelayStream",
    "RelayStreamBroken",
    "RelayTimeout",
    "RelayTransport",
]

logger = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 128 * 1024 - 2048  # the broker's 128 KiB packet, less topic and properties
DEFAULT_TIMEOUT_S = 30.0
MAX_BODY_BYTES = 16 << 20  # an answer read whole into memory (downloads are streamed instead)
SEQ_PROPERTY = "seq"  # as hub.relay.device: a chunk's sequence number
ACK_PROPERTY = "ack"  # as hub.relay.device: the highest sequence number read in order
# Messages waiting for one answer's reader: the device sends at most 8 ahead of the acks; the
# rest is room for QoS 1 duplicates. More means a flood, and the answer is refused.
_MAX_QUEUED = 64
# Acknowledgements are small: without TCP_NODELAY, Nagle's algorithm holds them back (see
# hub.relay.device.NO_DELAY, not imported: the client does not load the device's side).
_NO_DELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)


class RelayCallFailed(DoorwardError):
    """A call through the relay could not be made or its answer could not be read."""


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


class RelayTransport:
    """One client's MQTT 5 connection to the relay, for calls to one device."""

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
    ) -> None:
        self._host, self._port, self._tls = host, port, tls
        self.client_id, self.device_id = client_id, device_id
        self._password = password
        try:
            self._config = ohttp.KeyConfig.parse(key_config)
        except ohttp.OhttpError as exc:
            raise RelayCallFailed(
                f"the device's relay key configuration is unusable ({exc}); fetch it again "
                "over the LAN"
            ) from None
        self._timeout_s = timeout_s
        self._pending: dict[bytes, asyncio.Queue[aiomqtt.Message | BaseException]] = {}
        self._mqtt: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

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

    async def __aenter__(self) -> RelayTransport:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Log in to the broker and subscribe to this client's responses from the device."""
        async with self._lock:
            if self._mqtt is not None:
                return
            mqtt = aiomqtt.Client(
                self._host,
                self._port,
                username=self.client_id,
                password=self._password,
                identifier=self.client_id,
                protocol=aiomqtt.ProtocolVersion.V5,
                tls_context=self._tls,
                timeout=self._timeout_s,
                socket_options=_NO_DELAY,
            )
            await mqtt.__aenter__()
            try:
                await mqtt.subscribe(self.responses, qos=1)
            except BaseException:
                await mqtt.__aexit__(None, None, None)
                raise
            self._mqtt = mqtt
            self._reader = asyncio.ensure_future(self._read(mqtt))

    async def close(self) -> None:
        """Disconnect; calls still waiting fail."""
        reader, mqtt = self._reader, self._mqtt
        self._reader = self._mqtt = None
        tasks = [*self._tasks, *([reader] if reader is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if mqtt is not None:
            await mqtt.__aexit__(None, None, None)
        for queue in self._pending.values():
            _fail(queue, RelayCallFailed("the relay connection was closed"))
        self._pending.clear()

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
        sealed, exchange = ohttp_chunked.encapsulate_request(self._config, [inner])
        if len(sealed) > MAX_MESSAGE_BYTES:
            raise RelayCallFailed(
                f"the request is {len(sealed)} bytes sealed, more than one relay message "
                f"carries ({MAX_MESSAGE_BYTES}); send the body on the LAN"
            )
        await self.connect()
        assert self._mqtt is not None
        correlation = secrets.token_bytes(16)
        queue: asyncio.Queue[aiomqtt.Message | BaseException] = asyncio.Queue(_MAX_QUEUED)
        self._pending[correlation] = queue
        stream = RelayStream(self, correlation, queue, exchange, self._timeout_s)
        try:
            properties = Properties(PacketTypes.PUBLISH)
            properties.ResponseTopic = self.responses
            properties.CorrelationData = correlation
            properties.ContentType = ohttp_chunked.REQUEST_MEDIA_TYPE
            await self._mqtt.publish(self.inbox, sealed, qos=1, properties=properties)
            try:
                await stream.start()
            except RelayTimeout:
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
        """Acknowledge chunks up to ``seq`` of the answer to ``correlation``."""
        if self._mqtt is None:
            return
        properties = Properties(PacketTypes.PUBLISH)
        properties.CorrelationData = correlation
        properties.UserProperty = [(ACK_PROPERTY, str(seq))]
        await self._mqtt.publish(self.inbox, b"", qos=1, properties=properties)

    async def _read(self, mqtt: aiomqtt.Client) -> None:
        try:
            async for message in mqtt.messages:
                correlation = getattr(message.properties, "CorrelationData", None)
                queue = self._pending.get(bytes(correlation)) if correlation else None
                if queue is None or not isinstance(message.payload, bytes):
                    logger.debug("relay.unmatched_answer")
                    continue
                try:
                    queue.put_nowait(message)
                except asyncio.QueueFull:
                    # The device sends at most its window ahead of our acks: someone else is
                    # flooding this answer.
                    self._pending.pop(bytes(correlation or b""), None)
                    _fail(
                        queue,
                        RelayStreamBroken(
                            "the relay delivered far more chunks than the device may send ahead; "
                            "the download stopped, try again"
                        ),
                    )
        except aiomqtt.MqttError as exc:
            for queue in self._pending.values():
                _fail(
                    queue, RelayCallFailed(f"the relay connection was lost ({type(exc).__name__})")
                )


def _fail(queue: asyncio.Queue[aiomqtt.Message | BaseException], error: BaseException) -> None:
    """Make the next read of ``queue`` raise ``error`` (room is made for it if need be)."""
    while True:
        try:
            queue.put_nowait(error)
            return
        except asyncio.QueueFull:
            queue.get_nowait()
