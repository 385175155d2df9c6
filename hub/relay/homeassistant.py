"""The doorbell in Home Assistant: MQTT discovery and states on the home's own broker.

:class:`HomeAssistantBridge` is a second, optional MQTT connection, apart from the relay: to the
broker Home Assistant reads (its Mosquitto add-on, say), as the login of ``[homeassistant]``. Once
connected it publishes one retained discovery config per entity (``hub.relay.ha_discovery``), the
current states, and a retained ``online`` on its availability topic, whose last will is a
retained ``offline``; when Home Assistant announces itself (``online`` on
``<prefix>/status``) it publishes them again. Then it publishes each change the device's events
make. A broker outage is retried with backoff; the configs and states go out again on every
connection.

Recording never waits for it: the bridge reads the event bus through its own bounded
subscription and keeps only what is current (a press while the broker is away is dropped, not
queued for later; states are sent as they are at the reconnection). When the bus drops the
subscription for falling behind, the bridge subscribes again, turns motion OFF and counts the
pending requests afresh.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiomqtt

from crypto.errors import DoorwardError
from crypto.keys import read_secret_file
from hub.relay.ha_discovery import (
    AVAILABLE,
    NOT_AVAILABLE,
    HomeAssistantNode,
    Message,
    StateBoard,
    discovery_messages,
)
from hub.wire.events import Event

__all__ = [
    "EventFeed",
    "HomeAssistantBridge",
    "HomeAssistantError",
    "HomeAssistantLogin",
]

logger = logging.getLogger(__name__)

_RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0)
_TIMEOUT_S = 10.0  # each MQTT operation (connect, publish, subscribe)
_KEEPALIVE_S = 30  # the broker sends the last will within 1.5 times this of a silent drop
_GOODBYE_S = 2.0  # a clean stop publishes `offline` itself (a clean disconnect drops the will)
_COUNT_TIMEOUT_S = 10.0
_RECOUNT_S = 60.0  # requests also leave the pending state by expiring, which sends no event
_MAX_OUTBOX = 256  # messages waiting for the broker; past it they give way to a snapshot
_RESUBSCRIBE_S = 1.0


class HomeAssistantError(DoorwardError):
    """The ``[homeassistant]`` login cannot be used (password file, CA file): fix the file."""


@dataclass(frozen=True, slots=True)
class HomeAssistantLogin:
    """Where the home broker is and how to log in to it (the password never appears in a repr)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: ssl.SSLContext | None = field(default=None, repr=False)

    @classmethod
    def from_files(
        cls,
        host: str,
        port: int,
        *,
        tls: bool,
        username: str = "",
        password_file: Path | None = None,
        ca_file: Path | None = None,
    ) -> HomeAssistantLogin:
        """The login from ``[homeassistant]``: the password from its first line of a file only
        its owner can read, TLS with ``ca_file`` (the system's CAs if None) when ``tls``."""
        password = None
        if password_file is not None:
            try:
                lines = read_secret_file(password_file).decode().splitlines()
            except UnicodeDecodeError:
                raise HomeAssistantError(
                    f"{password_file} is not text: it must hold the home broker's password"
                ) from None
            except DoorwardError as exc:  # missing, or others may read it
                raise HomeAssistantError(f"homeassistant password_file: {exc}") from None
            if not lines or not lines[0].strip():
                raise HomeAssistantError(
                    f"{password_file} is empty: write the home broker's password on its first line"
                )
            password = lines[0].strip()
        context = None
        if tls:
            try:
                context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
            except (OSError, ssl.SSLError) as exc:
                raise HomeAssistantError(
                    f"homeassistant ca_file {ca_file} cannot be read as PEM certificates: {exc}"
                ) from None
            context.minimum_version = ssl.TLSVersion.TLSv1_2
        return cls(host, port, username or None, password, context)


class EventFeed(Protocol):
    """A subscription to the device's events (``hub.server.events.Subscription``)."""

    async def get(self) -> Event | None:
        """The next event; None once the subscription has ended."""
        ...

    def close(self) -> None:
        """Leave the bus."""
        ...


class _Outbox:
    """What waits for the broker while connected; closed (and empty) while not."""

    def __init__(self) -> None:
        self._messages: collections.deque[Message] = collections.deque()
        self.ready = asyncio.Event()
        self.open = False
        self.resync = False  # send the discovery and a snapshot again, then the rest

    def put(self, messages: Iterable[Message]) -> int:
        """Queue ``messages`` if connected; returns how many presses were dropped (a state is
        never lost: the next snapshot carries it)."""
        batch = list(messages)
        if not batch:
            return 0
        if not self.open:
            return sum(1 for message in batch if not message.retain)
        self._messages.extend(batch)
        dropped = 0
        if len(self._messages) > _MAX_OUTBOX:
            # The broker is this far behind: states go out as a snapshot instead.
            dropped = sum(1 for message in self._messages if not message.retain)
            self._messages.clear()
            self.resync = True
        self.ready.set()
        return dropped

    def take(self) -> list[Message]:
        taken = list(self._messages)
        self._messages.clear()
        self.ready.clear()
        return taken

    def start(self) -> None:
        self._messages.clear()
        self.resync = False
        self.open = True

    def stop(self) -> None:
        self.open = False
        self._messages.clear()
        self.ready.clear()


class HomeAssistantBridge:
    """The device's connection to the home broker; :meth:`run` until cancelled.

    ``subscribe`` takes a new subscription to the event bus (None when the bus is full);
    ``pending_count`` answers how many requests wait for an owner (None when it cannot say)."""

    def __init__(
        self,
        login: HomeAssistantLogin,
        node: HomeAssistantNode,
        *,
        subscribe: Callable[[], EventFeed | None],
        pending_count: Callable[[], Awaitable[int | None]],
        hold_s: float = 30.0,
        recount_s: float = _RECOUNT_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._login = login
        self.node = node
        self._subscribe = subscribe
        self._pending_count = pending_count
        self._board = StateBoard(node, hold_s=hold_s)
        self._recount_s = recount_s
        self._monotonic = monotonic
        self._outbox = _Outbox()
        self._recount = asyncio.Event()
        self._attempt = 0
        self.connected = asyncio.Event()
        self.published = 0
        self.dropped = 0  # presses that found no connection

    def __repr__(self) -> str:
        return f"HomeAssistantBridge({self.node.node_id!r}, {self._login.host}:{self._login.port})"

    async def run(self) -> None:
        """Follow the events, count pending requests and stay connected, until cancelled."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._follow_events())
            group.create_task(self._count_pending())
            group.create_task(self._stay_connected())

    # -- the event bus ---------------------------------------------------------------------------

    async def _follow_events(self) -> None:
        while True:
            feed = self._subscribe()
            if feed is None:
                logger.warning("homeassistant.no_subscription retry_s=%s", _RESUBSCRIBE_S)
            else:
                try:
                    await self._drain(feed)
                finally:
                    feed.close()
                # Events were lost (the bus dropped us): nothing may stay ON for ever.
                logger.warning("homeassistant.events_lost")
                self._emit(self._board.reset_motion())
                self._recount.set()
            await asyncio.sleep(_RESUBSCRIBE_S)

    async def _drain(self, feed: EventFeed) -> None:
        while True:
            self._emit(self._board.due(self._monotonic()))
            due_s = self._board.next_due_s()
            try:
                if due_s is None:
                    event = await feed.get()
                else:
                    async with asyncio.timeout(max(0.0, due_s - self._monotonic())):
                        event = await feed.get()
            except TimeoutError:
                continue
            if event is None:
                return
            self._emit(self._board.on_event(event, self._monotonic()))
            if event.kind in ("request.pending", "request.decided"):
                self._recount.set()

    async def _count_pending(self) -> None:
        while True:
            try:
                async with asyncio.timeout(_COUNT_TIMEOUT_S):
                    count = await self._pending_count()
            except TimeoutError:
                logger.warning("homeassistant.count_timeout")
                count = None
            if count is not None:
                self._emit(self._board.set_pending(count))
            self._recount.clear()
            try:
                async with asyncio.timeout(self._recount_s):
                    await self._recount.wait()
            except TimeoutError:
                pass

    def _emit(self, messages: list[Message]) -> None:
        dropped = self._outbox.put(messages)
        if dropped:
            self.dropped += dropped
            logger.info(
                "homeassistant.press_dropped count=%d connected=%s", dropped, self._outbox.open
            )

    # -- the broker ------------------------------------------------------------------------------

    async def _stay_connected(self) -> None:
        while True:
            try:
                await self._session()
            except aiomqtt.MqttError as exc:
                delay = _RETRY_S[min(self._attempt, len(_RETRY_S) - 1)]
                self._attempt += 1
                logger.warning(
                    "homeassistant.disconnected error=%s detail=%s retry_s=%s",
                    type(exc).__name__,
                    str(exc)[:200],
                    delay,
                )
                await asyncio.sleep(delay)

    async def _session(self) -> None:
        node = self.node
        login = self._login
        async with aiomqtt.Client(
            login.host,
            login.port,
            username=login.username,
            password=login.password,
            identifier=node.node_id,
            tls_context=login.tls,
            will=aiomqtt.Will(node.availability_topic, NOT_AVAILABLE, qos=1, retain=True),
            keepalive=_KEEPALIVE_S,
            timeout=_TIMEOUT_S,
        ) as mqtt:
            try:
                await mqtt.subscribe(node.status_topic, qos=1)
                _raise_lost_cancel()
                self._outbox.start()  # changes from now on queue up behind the snapshot
                await self._announce(mqtt)
                self._attempt = 0
                self.connected.set()
                logger.info(
                    "homeassistant.connected node_id=%s entities=%d",
                    node.node_id,
                    len(node.cameras) + 2,
                )
                await _first_failure(self._send(mqtt), self._listen(mqtt))
            except asyncio.CancelledError:
                await self._goodbye(mqtt)
                raise
            finally:
                self._outbox.stop()
                self.connected.clear()

    async def _announce(self, mqtt: aiomqtt.Client) -> None:
        """The discovery configs, every state as it is, then ``online``."""
        for message in (*discovery_messages(self.node), *self._board.snapshot()):
            await self._publish(mqtt, message)
        await self._publish(mqtt, Message(self.node.availability_topic, AVAILABLE))

    async def _send(self, mqtt: aiomqtt.Client) -> None:
        while True:
            await self._outbox.ready.wait()
            resync, self._outbox.resync = self._outbox.resync, False
            messages = self._outbox.take()
            if resync:
                await self._announce(mqtt)
            for message in messages:
                if not (resync and message.retain):  # the snapshot said it already
                    await self._publish(mqtt, message)

    async def _listen(self, mqtt: aiomqtt.Client) -> None:
        """Home Assistant's birth message: it has (re)started, perhaps on a broker that lost its
        retained messages, so everything is announced again."""
        async for message in mqtt.messages:
            if str(message.topic) == self.node.status_topic and message.payload == AVAILABLE:
                logger.info("homeassistant.birth node_id=%s", self.node.node_id)
                self._outbox.resync = True
                self._outbox.ready.set()

    async def _publish(self, mqtt: aiomqtt.Client, message: Message) -> None:
        await mqtt.publish(message.topic, message.payload, qos=1, retain=message.retain)
        self.published += 1
        _raise_lost_cancel()

    async def _goodbye(self, mqtt: aiomqtt.Client) -> None:
        """``offline`` on a clean stop: the broker sends the last will only when a connection
        drops without a DISCONNECT."""
        try:
            async with asyncio.timeout(_GOODBYE_S):
                await mqtt.publish(self.node.availability_topic, NOT_AVAILABLE, qos=1, retain=True)
        except (aiomqtt.MqttError, TimeoutError) as exc:
            logger.warning("homeassistant.goodbye_failed error=%s", type(exc).__name__)


def _raise_lost_cancel() -> None:
    """Raise the cancellation of this task if an await swallowed it: aiomqtt waits with
    ``asyncio.wait_for``, which on Python 3.11 returns the result instead when the operation
    completes just as the task is cancelled (fixed in 3.12), and a stop would then hang."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def _first_failure(*coros: Awaitable[None]) -> None:
    """Run ``coros`` together until the first one raises; cancel the others and re-raise."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
