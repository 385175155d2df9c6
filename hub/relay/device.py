"""The doorbell's side of the relay: API calls that arrive through the MQTT 5 broker.

:class:`RelayDevice` connects out to the broker as the device (MQTT 5 over TLS, clean start off
with a session expiry, a retained ``offline`` last will on its availability topic), subscribes to
its inbox ``doorward/v1/dev/<dev>/in/+`` at QoS 1 and, for each message:

1. opens the Oblivious HTTP request (RFC 9458) with the device's relay key and decodes the Binary
   HTTP request (RFC 9292) inside;
2. sends that request to the device's own API over loopback HTTPS, pinned to the device's own TLS
   key, with the same method, path, header fields (the RFC 9421 signature included, and ``Host``
   set to the request's authority so that ``@target-uri`` verifies unchanged) and body: the same
   handlers run, with the same signature checks, replay window, rate limits and audit entries;
3. seals the answer to the request's context and publishes it at QoS 1 on the MQTT 5 response
   topic with the request's correlation data.

A request whose MQTT content type is ``message/ohttp-chunked-req``, or
``application/x-doorward-ohttp-pq-chunked-req`` (sealed to the device's hybrid ML-KEM-768+X25519
key, :func:`hub.wire.ohttp_pq.pq_encapsulate_chunked`: what :class:`hub.relay.client.RelayTransport`
sends when it has that key), is answered as a chunked Oblivious HTTP response
(draft-ietf-ohai-chunked-ohttp, :mod:`hub.wire.ohttp_chunked`) around an indeterminate-length
Binary HTTP response (:mod:`hub.wire.bhttp_stream`), one chunk per broker message, each with the
request's correlation data and its sequence number (user property ``seq``). Whatever the size of
the answer, the device holds at most one chunk of it: it reads the API's answer only as the
client acknowledges chunks (a message on its inbox with the user property ``ack``: the highest
sequence number it has in order), keeps at most ``window_chunks`` unacknowledged, and abandons a
transfer whose acknowledgements stop for ``ack_timeout_s`` (logged in one line). A plain RFC 9458
request still gets one RFC 9458 message, and a 413 ``relay_too_large`` if the answer would not
fit one broker packet.

With ``events`` (:class:`hub.relay.events.RelayEvents`) it also publishes, on the same
connection, each owner's age-encrypted copy of every event the owners' WebSocket stream carries.

A message that arrives again (a QoS 1 duplicate, a phone's resend, a replay by whoever runs the
broker) gets the answer already published for it, from memory (:mod:`hub.relay.dedupe`), when that
answer was one message; otherwise it reaches the API, whose replay window refuses its nonce.

Calls are answered concurrently, at most ``max_calls`` at once (more wait, up to a bound; past
it they are dropped and logged): a long download does not hold up other calls.

A message that does not open (another key id, altered ciphertext), is not a valid binary request,
or has no usable response topic is logged in one line and dropped: nothing is answered and
nothing reaches the API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp
import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from crypto.errors import DoorwardError
from crypto.keys import read_secret_file
from crypto.tls import client_context
from hub.relay.connection import DEVICE_RETRY_S, NO_DELAY, backoff_s
from hub.relay.dedupe import AnswerCache, Held
from hub.wire import bhttp, ohttp, ohttp_chunked, ohttp_pq
from hub.wire.bhttp_stream import RESPONSE_END, encode_content, encode_response_head
from hub.wire.relay_hop import HOP_CLIENT, HOP_FIELDS, HOP_TOKEN, hop_token

if TYPE_CHECKING:
    from hub.relay.events import RelayEvents

__all__ = [
    "ACK_PROPERTY",
    "ACK_TIMEOUT_S",
    "CHUNK_BYTES",
    "MAX_BODY_BYTES",
    "MAX_CALLS",
    "MAX_MESSAGE_BYTES",
    "NO_DELAY",
    "SEQ_PROPERTY",
    "WINDOW_CHUNKS",
    "RelayDevice",
    "RelayError",
    "RelayLogin",
    "api_url_of",
    "availability_topic",
    "inbox_topic",
    "parse_relay_url",
    "response_topic",
]

logger = logging.getLogger(__name__)

# The broker's packet limit (max_packet_size) is 128 KiB, topic and properties included.
MAX_MESSAGE_BYTES = 128 * 1024 - 2048
# A body this large still fits one encapsulated message with its header fields.
MAX_BODY_BYTES = 96 * 1024
SESSION_EXPIRY_S = 7 * 24 * 3600
_HOP_BY_HOP = frozenset(
    {"connection", "content-length", "transfer-encoding", "keep-alive", "upgrade", "te"}
)
_API_TIMEOUT_S = 30.0  # until the API's answer starts (a download then runs at the client's pace)
# A chunk's plaintext: sealed, framed and with its topic and properties it stays well under the
# broker's 128 KiB packet (the tag, the nonce, the length and the properties take < 200 bytes).
CHUNK_BYTES = 64 * 1024 - 1024
WINDOW_CHUNKS = 8  # chunks sent and not yet acknowledged, per transfer
ACK_TIMEOUT_S = 30.0  # a transfer whose acknowledgements stop this long is abandoned
MAX_CALLS = 8  # calls answered at once
_MAX_WAITING = 32  # calls waiting for one of those slots; past that, dropped
SEQ_PROPERTY = "seq"  # MQTT 5 user property: a chunk's sequence number (0, 1, ...)
ACK_PROPERTY = "ack"  # MQTT 5 user property: the highest sequence number received in order
_MAX_HEAD_BYTES = 16 * 1024
# Over the relay a download's size is known to the client from content-length (checked end to
# end by the reader), so it is kept; the other hop-by-hop fields are not.
_HOP_BY_HOP_STREAM = _HOP_BY_HOP - {"content-length"}


class RelayError(DoorwardError):
    """The relay is misconfigured or the broker cannot be reached."""


def inbox_topic(device_id: str, client_id: str) -> str:
    """Where ``client_id`` publishes its requests for ``device_id``."""
    return f"doorward/v1/dev/{device_id}/in/{client_id}"


def response_topic(client_id: str, device_id: str) -> str:
    """Where ``device_id`` publishes its responses to ``client_id``."""
    return f"doorward/v1/cli/{client_id}/res/{device_id}"


def availability_topic(device_id: str) -> str:
    """The device's retained availability (``online`` / ``offline``, its last will)."""
    return f"doorward/v1/dev/{device_id}/avail"


def parse_relay_url(url: str) -> tuple[str, int]:
    """``mqtts://HOST:PORT`` as (host, port); port 8883 if absent. Only TLS is accepted."""
    parts = urlsplit(url)
    if parts.scheme != "mqtts" or not parts.hostname or parts.path not in ("", "/"):
        raise RelayError(f"relay url {url!r} must look like mqtts://HOST:PORT (TLS only)")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise RelayError(
            "relay url must hold no login, query or fragment; put the password in the "
            "credentials file"
        )
    try:
        port = parts.port or 8883
    except ValueError:
        raise RelayError(f"relay url {url!r} has an invalid port") from None
    return parts.hostname, port


@dataclass(frozen=True, slots=True)
class RelayLogin:
    """Where the broker is and how to log in to it (the password never appears in a repr)."""

    host: str
    port: int
    username: str
    password: str = field(repr=False)
    tls: ssl.SSLContext = field(repr=False)

    @classmethod
    def from_files(
        cls, url: str, ca_file: Path | None, credentials_file: Path, username: str
    ) -> RelayLogin:
        """The login from the ``[relay]`` options: the CA (system CAs if None) and a 0600 file
        holding the broker password on its first line."""
        host, port = parse_relay_url(url)
        try:
            lines = read_secret_file(credentials_file).decode().splitlines()
        except UnicodeDecodeError:
            raise RelayError(
                f"{credentials_file} is not text: it must hold the broker password"
            ) from None
        if not lines or not lines[0].strip():
            raise RelayError(f"{credentials_file} is empty: write the broker password in it")
        tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        return cls(host, port, username, lines[0].strip(), tls)


class RelayDevice:
    """The device's connection to the relay broker; :meth:`run` until cancelled."""

    def __init__(
        self,
        login: RelayLogin,
        *,
        device_id: str,
        gateway_key: ohttp.GatewayKey,
        api_url: str,
        fingerprint: str,
        window_chunks: int = WINDOW_CHUNKS,
        ack_timeout_s: float = ACK_TIMEOUT_S,
        max_calls: int = MAX_CALLS,
        events: RelayEvents | None = None,
        pq_key: ohttp_pq.PqGatewayKey | None = None,
    ) -> None:
        self._login = login
        self._events = events
        self._hop = hop_token(gateway_key)
        self._answers = AnswerCache()
        self._repeats_in_flight = 0
        self.device_id = device_id
        self._key = gateway_key
        self._pq_key = pq_key
        self._api_url = api_url.rstrip("/")
        self._api_tls = client_context(fingerprint)
        self._window_chunks = window_chunks
        self._ack_timeout_s = ack_timeout_s
        self._max_calls = max_calls
        self._slots = asyncio.Semaphore(max_calls)
        self._transfers: dict[tuple[str, bytes], _Transfer] = {}
        self._stopping = False
        self.connected = asyncio.Event()
        self.answered = 0
        self.dropped = 0
        self.abandoned = 0
        self.chunks_sent = 0
        self.high_water = 0  # the most chunks of one transfer ever sent and unacknowledged

    @property
    def repeats(self) -> int:
        """Messages that came again: answered from memory, or dropped while the first copy was
        still being answered."""
        return self._answers.repeats + self._repeats_in_flight

    def forget_answers(self) -> None:
        """Drop the memory of handled calls (a repeat then reaches the API's replay check)."""
        self._answers = AnswerCache()

    def __repr__(self) -> str:
        return f"RelayDevice({self.device_id!r}, {self._login.host}:{self._login.port})"

    async def run(self) -> None:
        """Connect, serve the inbox (and send the owners' events), reconnect after a broker
        outage (backing off)."""
        feed = asyncio.ensure_future(self._events.feed()) if self._events is not None else None
        try:
            await self._connect_loop()
        finally:
            if feed is not None:
                feed.cancel()
                await asyncio.gather(feed, return_exceptions=True)

    async def _connect_loop(self) -> None:
        attempt = 0
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=_API_TIMEOUT_S)
        ) as session:
            while True:
                try:
                    await self._serve(session)
                    attempt = 0
                except aiomqtt.MqttError as exc:
                    self.connected.clear()
                    delay = round(backoff_s(attempt, DEVICE_RETRY_S), 2)
                    attempt += 1
                    logger.warning(
                        "relay.disconnected error=%s retry_s=%s", type(exc).__name__, delay
                    )
                    await asyncio.sleep(delay)

    async def _serve(self, session: aiohttp.ClientSession) -> None:
        connect = Properties(PacketTypes.CONNECT)
        connect.SessionExpiryInterval = SESSION_EXPIRY_S
        avail = availability_topic(self.device_id)
        async with aiomqtt.Client(
            self._login.host,
            self._login.port,
            username=self._login.username,
            password=self._login.password,
            identifier=self._login.username,
            protocol=aiomqtt.ProtocolVersion.V5,
            tls_context=self._login.tls,
            clean_start=False,
            properties=connect,
            will=aiomqtt.Will(avail, b"offline", qos=1, retain=True),
            socket_options=NO_DELAY,
        ) as mqtt:
            await mqtt.subscribe(f"doorward/v1/dev/{self.device_id}/in/+", qos=1)
            await mqtt.publish(avail, b"online", qos=1, retain=True)
            self.connected.set()
            logger.info("relay.connected device_id=%s", self.device_id)
            calls: set[asyncio.Task[None]] = set()
            self._stopping = False
            sending = None
            if self._events is not None:
                sending = asyncio.ensure_future(self._events.send(mqtt))
            try:
                async for message in mqtt.messages:
                    self._dispatch(message, mqtt, session, calls)
            finally:
                self._stopping = True
                for task in calls:
                    task.cancel()
                await asyncio.gather(*calls, return_exceptions=True)
                self._transfers.clear()
                if sending is not None:
                    sending.cancel()
                    (outcome,) = await asyncio.gather(sending, return_exceptions=True)
                    if isinstance(outcome, Exception):
                        logger.error("relay.events_failed error=%s", type(outcome).__name__)

    def _dispatch(
        self,
        message: aiomqtt.Message,
        mqtt: aiomqtt.Client,
        session: aiohttp.ClientSession,
        calls: set[asyncio.Task[None]],
    ) -> None:
        """Take an acknowledgement at once; start a task for a call (on the event loop)."""
        sender = str(message.topic).rsplit("/", 1)[-1]
        ack = _user_property(message.properties, ACK_PROPERTY)
        if ack is not None:
            self._acked(sender, getattr(message.properties, "CorrelationData", None), ack)
            return
        if len(calls) >= self._max_calls + _MAX_WAITING:
            self._drop(sender, "busy")
            return
        task = asyncio.ensure_future(self._call(message, mqtt, session))
        calls.add(task)
        task.add_done_callback(calls.discard)

    async def _call(
        self, message: aiomqtt.Message, mqtt: aiomqtt.Client, session: aiohttp.ClientSession
    ) -> None:
        async with self._slots:
            try:
                await self._answer(message, mqtt, session)
            except aiomqtt.MqttError as exc:
                # The connection went: _serve reconnects; the client's call times out.
                logger.warning("relay.answer_lost error=%s", type(exc).__name__)

    async def _answer(
        self, message: aiomqtt.Message, mqtt: aiomqtt.Client, session: aiohttp.ClientSession
    ) -> None:
        """Answer ``message``, or drop it (logged in one line)."""
        sender = str(message.topic).rsplit("/", 1)[-1]
        props = message.properties
        reply_to = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        if reply_to != response_topic(sender, self.device_id) or not correlation:
            return self._drop(sender, "no_response_topic")
        payload = message.payload
        if not isinstance(payload, bytes | bytearray) or len(payload) > MAX_MESSAGE_BYTES:
            return self._drop(sender, "too_large")
        key = AnswerCache.key(sender, bytes(payload))
        held = self._answers.get(key)
        if held is not None:
            logger.info("relay.repeat from=%s", sender[:64])
            for answer, content_type, seq in held:
                properties = Properties(PacketTypes.PUBLISH)
                properties.CorrelationData = bytes(correlation)
                if content_type is not None:
                    properties.ContentType = content_type
                if seq is not None:
                    properties.UserProperty = [(SEQ_PROPERTY, seq)]
                await mqtt.publish(reply_to, answer, qos=1, properties=properties)
            return None
        content_type = getattr(props, "ContentType", None)
        hybrid = content_type == ohttp_pq.PQ_CHUNKED_REQUEST_MEDIA_TYPE
        chunked = hybrid or content_type == ohttp_chunked.REQUEST_MEDIA_TYPE
        try:
            if hybrid:
                if self._pq_key is None:
                    return self._drop(sender, "unknown_key")
                inner, exchange = ohttp_pq.pq_decapsulate_chunked(self._pq_key, bytes(payload))
            elif chunked:
                inner, exchange = ohttp_chunked.decapsulate_request(self._key, bytes(payload))
            else:
                inner, plain = ohttp.decapsulate_request(self._key, bytes(payload))
            request = bhttp.parse_request(inner, max_message_bytes=MAX_MESSAGE_BYTES)
        except ohttp.UnknownKey:
            return self._drop(sender, "unknown_key")
        except ohttp.OhttpError:
            return self._drop(sender, "does_not_open")
        except bhttp.BhttpError:
            return self._drop(sender, "malformed")
        if chunked:
            sent = await self._stream(request, exchange, sender, bytes(correlation), mqtt, session)
            if sent is not None:
                self._answers.put(key, sent)
            return None
        response = await self._forward(request, sender, session)
        properties = Properties(PacketTypes.PUBLISH)
        properties.CorrelationData = bytes(correlation)
        sealed = plain.seal_response(response.encode())
        await mqtt.publish(reply_to, sealed, qos=1, properties=properties)
        self._answers.put(key, ((sealed, None, None),))
        self.answered += 1
        return None

    async def _stream(
        self,
        request: bhttp.Request,
        exchange: ohttp_chunked.ChunkedGatewayExchange,
        sender: str,
        correlation: bytes,
        mqtt: aiomqtt.Client,
        session: aiohttp.ClientSession,
    ) -> Held | None:
        """Answer as chunks at the client's pace: read the API's answer one chunk ahead of what
        the window allows, never more. An answer that went whole in one chunk is returned, to
        be remembered for repeats."""
        key = (sender, correlation)
        if key in self._transfers:  # a QoS 1 duplicate of a request being answered
            self._repeats_in_flight += 1
            return self._drop(sender, "duplicate")
        first: list[bytes] = []
        transfer = self._transfers[key] = _Transfer()
        sealer = exchange.sealer()
        reply_to = response_topic(sender, self.device_id)

        async def send(plain: bytes, *, final: bool) -> None:
            await self._window(transfer)
            framed = sealer.seal(plain, final=final)
            if transfer.sent == 0:
                framed = sealer.nonce + framed
            properties = Properties(PacketTypes.PUBLISH)
            properties.CorrelationData = correlation
            properties.ContentType = ohttp_chunked.RESPONSE_MEDIA_TYPE
            properties.UserProperty = [(SEQ_PROPERTY, str(transfer.sent))]
            await mqtt.publish(reply_to, framed, qos=1, properties=properties)
            if transfer.sent == 0:
                first.append(framed)
            transfer.sent += 1
            self.chunks_sent += 1
            self.high_water = max(self.high_water, transfer.sent - 1 - transfer.acked)

        try:
            await self._stream_api(request, sender, session, send)
            self.answered += 1
            if transfer.sent == 1:
                return ((first[0], ohttp_chunked.RESPONSE_MEDIA_TYPE, "0"),)
        except _Abandoned:
            self.abandoned += 1
            logger.warning(
                "relay.transfer_abandoned from=%s sent=%d acked=%d after_s=%g",
                sender[:64],
                transfer.sent,
                transfer.acked + 1,
                self._ack_timeout_s,
            )
        finally:
            del self._transfers[key]
        return None

    async def _stream_api(
        self,
        request: bhttp.Request,
        sender: str,
        session: aiohttp.ClientSession,
        send: Callable[..., Awaitable[None]],
    ) -> None:
        if not request.path.startswith("/"):
            error = _error(400, "bad_request", "the relayed request's path must start with /")
            return await send(_streamed(error), final=True)
        headers = self._hop_headers(request, sender)
        try:
            async with session.request(
                request.method,
                self._api_url + request.path,
                headers=headers,
                data=request.content,
                ssl=self._api_tls,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=_API_TIMEOUT_S),
            ) as answer:
                fields = tuple(
                    (k.lower(), v)
                    for k, v in answer.headers.items()
                    if k.lower() not in _HOP_BY_HOP_STREAM
                )
                buffer = bytearray(encode_response_head(answer.status, fields))
                if len(buffer) > _MAX_HEAD_BYTES:
                    error = _error(
                        502, "relay_api_unreachable", "the API's answer head is too large"
                    )
                    return await send(_streamed(error), final=True)
                try:
                    while True:
                        end = False
                        while len(buffer) < CHUNK_BYTES - 16 and not end:
                            async with asyncio.timeout(self._ack_timeout_s + _API_TIMEOUT_S):
                                piece = await answer.content.read(CHUNK_BYTES - 16 - len(buffer))
                            if piece:
                                buffer += encode_content(piece)
                            else:
                                buffer += RESPONSE_END
                                end = True
                        await send(bytes(buffer), final=end)
                        buffer.clear()
                        if end:
                            return None
                except (aiohttp.ClientError, TimeoutError) as exc:
                    # Part of the answer is out: end the stream here; the client's reader sees
                    # the content cut short and says so.
                    logger.error("relay.api_broke_off error=%s", type(exc).__name__)
                    return await send(b"", final=True)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.error("relay.api_unreachable error=%s", type(exc).__name__)
            error = _error(502, "relay_api_unreachable", "the device's API did not answer")
            return await send(_streamed(error), final=True)

    async def _window(self, transfer: _Transfer) -> None:
        """Wait until the next chunk fits the window; :class:`_Abandoned` if acks stop."""
        while transfer.sent > transfer.acked + self._window_chunks:
            if self._stopping:
                # The connection is going; a cancellation swallowed by the MQTT client's
                # publish must not leave this transfer waiting for acks that cannot come.
                raise asyncio.CancelledError
            transfer.moved.clear()
            try:
                async with asyncio.timeout(self._ack_timeout_s):
                    await transfer.moved.wait()
            except TimeoutError:
                raise _Abandoned from None

    def _acked(self, sender: str, correlation: bytes | None, value: str) -> None:
        transfer = self._transfers.get((sender, bytes(correlation or b"")))
        if transfer is None or not value.isdigit() or len(value) > 12:
            logger.debug("relay.stray_ack from=%s", sender[:64])
            return
        # Never past what was sent: a forged ack cannot open the window further.
        acked = min(int(value), transfer.sent - 1)
        if acked > transfer.acked:
            transfer.acked = acked
            transfer.moved.set()

    def _drop(self, sender: str, reason: str) -> None:
        self.dropped += 1
        logger.warning("relay.dropped from=%s reason=%s", sender[:64], reason)
        return None

    def _hop_headers(self, request: bhttp.Request, sender: str) -> list[tuple[str, str]]:
        """The relayed request's header fields for the hop to the API: the hop-by-hop ones and
        any hop fields it carried removed, ``Host`` its authority, and this device's own hop
        fields (``hub.wire.relay_hop``) naming the sender."""
        headers = [
            (k, v)
            for k, v in request.headers
            if k not in _HOP_BY_HOP and k != "host" and k not in HOP_FIELDS
        ]
        return [*headers, ("host", request.authority), (HOP_TOKEN, self._hop), (HOP_CLIENT, sender)]

    async def _forward(
        self, request: bhttp.Request, sender: str, session: aiohttp.ClientSession
    ) -> bhttp.Response:
        """``request`` through the device's own API over loopback; its answer as binary HTTP."""
        if not request.path.startswith("/"):
            return _error(400, "bad_request", "the relayed request's path must start with /")
        headers = self._hop_headers(request, sender)
        try:
            async with session.request(
                request.method,
                self._api_url + request.path,
                headers=headers,
                data=request.content,
                ssl=self._api_tls,
                allow_redirects=False,
            ) as answer:
                body = await _read_capped(answer.content, MAX_BODY_BYTES)
                if body is None:
                    return _error(
                        413,
                        "relay_too_large",
                        f"the answer is larger than {MAX_BODY_BYTES} bytes, the most one RFC 9458 "
                        "relay message carries: send the request as chunked Oblivious HTTP "
                        "(content type message/ohttp-chunked-req) to get it in chunks",
                    )
                fields = tuple(
                    (k.lower(), v)
                    for k, v in answer.headers.items()
                    if k.lower() not in _HOP_BY_HOP
                )
                return bhttp.Response(answer.status, fields, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            logger.error("relay.api_unreachable error=%s", type(exc).__name__)
            return _error(502, "relay_api_unreachable", "the device's API did not answer")


async def _read_capped(content: aiohttp.StreamReader, limit: int) -> bytes | None:
    """The whole body, or None once it is longer than ``limit`` (a read returns what has
    arrived, not necessarily all that was asked for)."""
    body = bytearray()
    while chunk := await content.read(limit + 1 - len(body)):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


class _Abandoned(Exception):
    """The client stopped acknowledging a transfer (internal)."""


@dataclass(slots=True)
class _Transfer:
    """One chunked answer in flight: chunks sent, and the highest acknowledged in order."""

    sent: int = 0
    acked: int = -1
    moved: asyncio.Event = field(default_factory=asyncio.Event)


def _user_property(props: Properties | None, name: str) -> str | None:
    for key, value in getattr(props, "UserProperty", None) or ():
        if key == name:
            return str(value)
    return None


def _streamed(response: bhttp.Response) -> bytes:
    """A whole small response in the streamed form."""
    body = encode_content(response.content) if response.content else b""
    return encode_response_head(response.status, response.headers) + body + RESPONSE_END


def _error(status: int, code: str, message: str) -> bhttp.Response:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    return bhttp.Response(status, (("content-type", "application/json"),), body)


def api_url_of(sockname: Any) -> str:
    """The loopback URL of the API listening on ``sockname`` (an any-address means 127.0.0.1)."""
    host, port = sockname[0], sockname[1]
    if host in ("0.0.0.0", "", "::"):  # noqa: S104 - reading the bound address, not binding
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{port}"
