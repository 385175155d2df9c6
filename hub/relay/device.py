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

With ``events`` (:class:`hub.relay.events.RelayEvents`) it also publishes, on the same
connection, each owner's age-encrypted copy of every event the owners' WebSocket stream carries.

A message that does not open (another key id, altered ciphertext), is not a valid binary request,
or has no usable response topic is logged in one line and dropped: nothing is answered and
nothing reaches the API. Answers whose body would not fit one broker packet get a 413 with
``relay_too_large``: chunked bodies over the relay are not implemented yet, and neither are
streaming downloads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import ssl
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
from hub.relay.dedupe import AnswerCache
from hub.wire import bhttp, ohttp
from hub.wire.relay_hop import HOP_CLIENT, HOP_FIELDS, HOP_TOKEN, hop_token

if TYPE_CHECKING:
    from hub.relay.events import RelayEvents

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_MESSAGE_BYTES",
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
# Calls and answers are single small packets: without TCP_NODELAY, Nagle's algorithm holds each
# one back until the previous packet is acknowledged, and delayed ACKs make that ~40 ms a hop.
NO_DELAY = ((socket.IPPROTO_TCP, socket.TCP_NODELAY, 1),)
_HOP_BY_HOP = frozenset(
    {"connection", "content-length", "transfer-encoding", "keep-alive", "upgrade", "te"}
)
_RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)
_JITTER = random.SystemRandom()


def backoff_s(attempt: int, steps: tuple[float, ...] = _RETRY_S) -> float:
    """How long to wait before reconnect ``attempt`` (0 first): the step for it, spread over
    half to one and a half times itself, so that doorbells cut off together by a broker restart
    do not all log in again in the same second (a login costs the broker a TLS handshake)."""
    step = steps[min(attempt, len(steps) - 1)]
    return step * _JITTER.uniform(0.5, 1.5)


_API_TIMEOUT_S = 30.0


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
        events: RelayEvents | None = None,
    ) -> None:
        self._login = login
        self._events = events
        self.device_id = device_id
        self._key = gateway_key
        self._api_url = api_url.rstrip("/")
        self._api_tls = client_context(fingerprint)
        self._hop = hop_token(gateway_key)
        self._answers = AnswerCache()
        self.connected = asyncio.Event()
        self.answered = 0
        self.dropped = 0

    @property
    def repeats(self) -> int:
        """Messages answered from memory because they had been handled already."""
        return self._answers.repeats

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
                    delay = round(backoff_s(attempt), 2)
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
            socket_options=NO_DELAY,
            tls_context=self._login.tls,
            clean_start=False,
            properties=connect,
            will=aiomqtt.Will(avail, b"offline", qos=1, retain=True),
        ) as mqtt:
            await mqtt.subscribe(f"doorward/v1/dev/{self.device_id}/in/+", qos=1)
            await mqtt.publish(avail, b"online", qos=1, retain=True)
            self.connected.set()
            logger.info("relay.connected device_id=%s", self.device_id)
            sending = None
            if self._events is not None:
                sending = asyncio.ensure_future(self._events.send(mqtt))
            try:
                async for message in mqtt.messages:
                    answer = await self._answer(message, session)
                    if answer is not None:
                        topic, payload, properties = answer
                        await mqtt.publish(topic, payload, qos=1, properties=properties)
                        self.answered += 1
            finally:
                if sending is not None:
                    sending.cancel()
                    (outcome,) = await asyncio.gather(sending, return_exceptions=True)
                    if isinstance(outcome, Exception):
                        logger.error("relay.events_failed error=%s", type(outcome).__name__)

    async def _answer(
        self, message: aiomqtt.Message, session: aiohttp.ClientSession
    ) -> tuple[str, bytes, Properties] | None:
        """The response to publish for ``message``, or None to drop it (logged in one line)."""
        sender = str(message.topic).rsplit("/", 1)[-1]
        props = message.properties
        reply_to = getattr(props, "ResponseTopic", None)
        correlation = getattr(props, "CorrelationData", None)
        if reply_to != response_topic(sender, self.device_id) or not correlation:
            return self._drop(sender, "no_response_topic")
        payload = message.payload
        if not isinstance(payload, bytes | bytearray) or len(payload) > MAX_MESSAGE_BYTES:
            return self._drop(sender, "too_large")
        sealed, repeat = await self._answers.once(
            AnswerCache.key(sender, bytes(payload)),
            lambda: self._handle(sender, bytes(payload), session),
        )
        if sealed is None:
            return None
        if repeat:
            logger.info("relay.repeat from=%s", sender[:64])
        properties = Properties(PacketTypes.PUBLISH)
        properties.CorrelationData = bytes(correlation)
        return reply_to, sealed, properties

    async def _handle(
        self, sender: str, payload: bytes, session: aiohttp.ClientSession
    ) -> bytes | None:
        """The sealed answer to one relayed call, or None to drop it (logged in one line)."""
        try:
            inner, exchange = ohttp.decapsulate_request(self._key, payload)
            request = bhttp.parse_request(inner, max_message_bytes=MAX_MESSAGE_BYTES)
        except ohttp.UnknownKey:
            return self._drop(sender, "unknown_key")
        except ohttp.OhttpError:
            return self._drop(sender, "does_not_open")
        except bhttp.BhttpError:
            return self._drop(sender, "malformed")
        response = await self._forward(request, sender, session)
        return exchange.seal_response(response.encode())

    def _drop(self, sender: str, reason: str) -> None:
        self.dropped += 1
        logger.warning("relay.dropped from=%s reason=%s", sender[:64], reason)
        return None

    async def _forward(
        self, request: bhttp.Request, sender: str, session: aiohttp.ClientSession
    ) -> bhttp.Response:
        """``request`` through the device's own API over loopback; its answer as binary HTTP."""
        if not request.path.startswith("/"):
            return _error(400, "bad_request", "the relayed request's path must start with /")
        headers = [
            (k, v)
            for k, v in request.headers
            if k not in _HOP_BY_HOP and k != "host" and k not in HOP_FIELDS
        ]
        headers += [("host", request.authority), (HOP_TOKEN, self._hop), (HOP_CLIENT, sender)]
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
                        f"the answer is larger than {MAX_BODY_BYTES} bytes, the most one relay "
                        "message carries (chunking over the relay is not implemented yet): use "
                        "the LAN address or a presigned link",
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
