"""The connection guard of ``doorward serve``: what a stranger on the LAN can hold of the device
before any signature is checked.

aiohttp's own knobs cover requests (keep-alive between them, head sizes, lingering:
:func:`request_limits`) but not connections, so the guard runs the accept loop of each
listening socket itself (:class:`GuardedSite`) instead of ``loop.create_server``:

- At accept, the connection is admitted or refused by :class:`hub.server.admission.Admission`:
  past the per-address cap (an IPv6 /64 counts as one address) it is reset at once (no TLS, no traceback); when the server is full
  the oldest connection that has not carried an owner's signature is closed to make room.
- The TLS handshake and the first request head must arrive within ``header_timeout_s`` of the
  accept; later heads are bounded by aiohttp's keep-alive timeout.
- A failed ``accept()`` (EMFILE, ENFILE, ENOBUFS, ENOMEM) pauses accepting briefly; it is
  counted, never logged one by one.
- The capacity comes from the descriptor limit: :func:`raise_descriptor_limit` lifts the soft
  ``RLIMIT_NOFILE`` to the hard one at start, and :func:`connection_capacity` keeps
  ``descriptor_reserve`` descriptors out of reach of connections, so connections run out before
  recording could ever meet EMFILE.

Refusals, evictions, timeouts and failed handshakes are counted; one ``guard.summary`` line per
``summary_s`` reports them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import resource
import socket
import ssl
import struct
import time
from asyncio import sslproto
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, cast

from aiohttp import web

from consent.desk import address_group
from hub.server.admission import Admission, Refused
from hub.server.config import ConfigError, ServeConfig

__all__ = [
    "ConnectionGuard",
    "GuardCounts",
    "GuardLimits",
    "GuardedSite",
    "connection_capacity",
    "open_descriptors",
    "raise_descriptor_limit",
    "request_limits",
]

logger = logging.getLogger(__name__)

_ACCEPT_BATCH = 64  # accepts per readable event, so a flood cannot starve the event loop
_ACCEPT_PAUSE_S = 0.25  # after accept() itself failed (out of descriptors, buffers or memory)
_HEAD_END = b"\r\n\r\n"
_UNLIMITED_TARGET = 65536  # the soft limit asked for when the hard limit is "unlimited"
_LINGER_S = 1.0
_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST and keeps no TIME_WAIT


@dataclass(frozen=True, slots=True)
class GuardLimits:
    """The guard's settings (``ServeConfig``'s connection options)."""

    max_connections: int = 512
    per_address: int = 32
    descriptor_reserve: int = 128
    header_timeout_s: float = 5.0
    summary_s: float = 60.0

    @classmethod
    def from_config(cls, config: ServeConfig) -> GuardLimits:
        """The limits ``config`` sets."""
        return cls(
            max_connections=config.max_connections,
            per_address=config.max_connections_per_address,
            descriptor_reserve=config.descriptor_reserve,
            header_timeout_s=config.header_timeout_s,
            summary_s=config.log_summary_s,
        )


@dataclass(slots=True)
class GuardCounts:
    """What the guard turned away since the last summary."""

    refused_per_address: int = 0
    refused_full: int = 0
    evicted: int = 0
    header_timeouts: int = 0
    handshake_failures: int = 0
    accept_errors: int = 0

    def any(self) -> bool:
        """Whether anything was counted."""
        return any(getattr(self, f.name) for f in fields(self))


def request_limits(config: ServeConfig) -> dict[str, Any]:
    """aiohttp's own per-request knobs for ``config``, as ``web.AppRunner`` keyword arguments
    (passed to every connection's ``RequestHandler``)."""
    return {
        # Idle between requests, or a next head that never ends: closed after this.
        "keepalive_timeout": config.keepalive_s,
        # After a refusal whose body is unread, read (and drop) the rest this long at most
        # before closing, so the client sees the answer rather than a reset.
        "lingering_time": _LINGER_S,
        "max_line_size": 8190,
        "max_field_size": 8190,
        "max_headers": 64,  # a browser sends about 20
    }


def raise_descriptor_limit() -> int:
    """Lift the soft ``RLIMIT_NOFILE`` to the hard limit; returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, _UNLIMITED_TARGET)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            logger.warning("guard.descriptor_limit_kept soft=%d error=%s", soft, exc)
    return soft


def open_descriptors() -> int:
    """How many file descriptors this process has open (64 where the system does not say)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder)) - 1  # listing the folder opens one itself
        except OSError:
            continue
    return 64


def connection_capacity(limits: GuardLimits, *, descriptor_limit: int, open_now: int) -> int:
    """How many connections the API may hold: ``max_connections``, fewer when the descriptor
    limit minus those open now and the reserve for recording leaves less. Raises ConfigError
    when it leaves none."""
    room = descriptor_limit - open_now - limits.descriptor_reserve
    if room < 1:
        raise ConfigError(
            f"the descriptor limit ({descriptor_limit}) leaves no room for connections: "
            f"{open_now} descriptors are open and descriptor_reserve keeps "
            f"{limits.descriptor_reserve} for recording; raise the limit (ulimit -n, or "
            "LimitNOFILE= for a systemd service) or lower descriptor_reserve"
        )
    return min(limits.max_connections, room)


class _Conn:
    """One admitted connection, from accept to close."""

    __slots__ = (
        "address",
        "closing",
        "conn_id",
        "head_seen",
        "tail",
        "task",
        "timer",
        "transport",
    )

    def __init__(self, conn_id: int, address: str) -> None:
        self.conn_id = conn_id
        self.address = address
        self.transport: asyncio.Transport | None = None
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.head_seen = False
        self.closing = False
        self.tail = b""


class ConnectionGuard:
    """Admits, times and counts the connections of every listening socket it is given."""

    def __init__(
        self,
        limits: GuardLimits,
        *,
        capacity: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.counts = GuardCounts()
        self._admission = Admission(capacity=capacity, per_address=limits.per_address)
        self._clock = clock
        self._conns: dict[int, _Conn] = {}
        self._by_transport: dict[asyncio.BaseTransport, _Conn] = {}
        self._listeners: list[_Listener] = []
        self._summaries: asyncio.Task[None] | None = None

    @property
    def capacity(self) -> int:
        """How many connections may be open at once."""
        return self._admission.capacity

    @property
    def open_connections(self) -> int:
        """Connections open now (handshaking ones included)."""
        return len(self._admission)

    def listen(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        ssl_context: ssl.SSLContext | None,
    ) -> asyncio.AbstractServer:
        """Accept on the listening ``sock`` from now on; close the returned server to stop."""
        if self._summaries is None:
            self._summaries = asyncio.get_running_loop().create_task(self._summarise())
        listener = _Listener(self, sock, protocol_factory, ssl_context)
        self._listeners.append(listener)
        return listener

    def trust(self, transport: asyncio.BaseTransport | None) -> None:
        """The request on ``transport`` carried a valid owner signature (sync, on the loop)."""
        conn = self._by_transport.get(transport) if transport is not None else None
        if conn is not None:
            self._admission.trust(conn.conn_id, now_s=self._clock())

    async def close(self) -> None:
        """Stop accepting, end handshakes still running and the summaries (logging the last)."""
        for listener in self._listeners:
            listener.close()
        tasks = [conn.task for conn in self._conns.values() if conn.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._summaries is not None:
            self._summaries.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._summaries
        self._log_summary()

    # -- accepting ------------------------------------------------------------------------------

    def _admit(self, sock: socket.socket, peer: Any, listener: _Listener) -> None:
        address = _address_key(peer)
        decision = self._admission.admit(address, now_s=self._clock())
        if isinstance(decision, Refused):
            if decision.reason.value == "per_address":
                self.counts.refused_per_address += 1
            else:
                self.counts.refused_full += 1
            _reset(sock)
            return
        if decision.evicted is not None:
            self.counts.evicted += 1
            self._close(decision.evicted)
        conn = _Conn(decision.conn_id, address)
        self._conns[conn.conn_id] = conn
        loop = asyncio.get_running_loop()
        conn.timer = loop.call_later(self.limits.header_timeout_s, self._head_timeout, conn)
        conn.task = loop.create_task(self._connect(sock, conn, listener))

    async def _connect(self, sock: socket.socket, conn: _Conn, listener: _Listener) -> None:
        """Wrap the accepted socket in a transport, through the TLS handshake when there is one.
        Nothing is allocated for a connection until it sends its first byte."""
        loop = asyncio.get_running_loop()
        raw: asyncio.Transport | None = None
        wrapped = False
        try:
            sock.setblocking(False)
            await _readable(loop, sock)
            app = _GuardedProtocol(listener.protocol_factory(), self, conn)
            wrapped = True
            if listener.ssl_context is None:
                await loop.connect_accepted_socket(lambda: app, sock=sock)
                return
            handshake: asyncio.Future[None] = loop.create_future()
            tls = _ServerTLS(
                loop,
                app,
                listener.ssl_context,
                handshake,
                server_side=True,
                ssl_handshake_timeout=self.limits.header_timeout_s,  # type: ignore[arg-type]  # a float works
            )
            raw, _ = await loop.connect_accepted_socket(lambda: tls, sock=sock)
            await handshake
            if conn.transport is None:  # the socket closed as the handshake finished
                raise ConnectionResetError("the connection closed during the TLS handshake")
        except asyncio.CancelledError:
            # Evicted or timed out before its head arrived.
            self._release_socket(loop, sock, conn, raw, wrapped)
            raise
        except (OSError, ssl.SSLError, EOFError) as exc:
            # A broken or abandoned handshake: the stranger's problem, counted, not logged.
            self.counts.handshake_failures += 1
            logger.debug("guard.handshake_failed address=%s error=%s", conn.address, exc)
            self._release_socket(loop, sock, conn, raw, wrapped)
        finally:
            conn.task = None

    def _release_socket(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        conn: _Conn,
        raw: asyncio.Transport | None,
        wrapped: bool,
    ) -> None:
        """Close the socket of a connection that never got through its handshake, and free its
        slot once the socket is closed."""
        if not wrapped:  # no transport owns the socket: close it now
            sock.close()
            self._forget(conn)
            return
        if raw is not None:
            raw.abort()
        # A transport closes its socket on the loop's next turn: free the slot after that.
        loop.call_soon(self._forget, conn)

    def _head_timeout(self, conn: _Conn) -> None:
        conn.timer = None
        if not conn.head_seen:
            self.counts.header_timeouts += 1
            self._close(conn.conn_id)

    def _close(self, conn_id: int) -> None:
        """Start closing an admitted connection, wherever it is (handshake or later); its slot
        stays taken until the socket is closed (:meth:`_forget`)."""
        conn = self._conns.get(conn_id)
        self._admission.close(conn_id)
        if conn is None or conn.closing:
            return
        conn.closing = True
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        if conn.transport is not None:
            conn.transport.abort()  # connection_lost follows, then the socket is closed
        elif conn.task is not None:
            conn.task.cancel()

    # -- called by the protocol wrapper ---------------------------------------------------------

    def _made(self, conn: _Conn, transport: asyncio.Transport) -> None:
        conn.transport = transport
        self._by_transport[transport] = conn
        if conn.closing:  # closed while its handshake was finishing
            transport.abort()

    def _forget(self, conn: _Conn) -> None:
        """The connection's socket is closed (or about to be, in the same callback)."""
        if self._conns.pop(conn.conn_id, None) is None:
            return
        self._admission.release(conn.conn_id)
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None
        if conn.transport is not None:
            self._by_transport.pop(conn.transport, None)

    def _head_arrived(self, conn: _Conn) -> None:
        conn.head_seen = True
        conn.tail = b""
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None

    # -- summaries ------------------------------------------------------------------------------

    async def _summarise(self) -> None:
        while True:
            await asyncio.sleep(self.limits.summary_s)
            self._log_summary()

    def _log_summary(self) -> None:
        counts, self.counts = self.counts, GuardCounts()
        if counts.any():
            logger.warning(
                "guard.summary over_s=%g open=%d capacity=%d refused_per_address=%d "
                "refused_full=%d evicted=%d header_timeouts=%d handshake_failures=%d "
                "accept_errors=%d",
                self.limits.summary_s,
                len(self._admission),
                self.capacity,
                counts.refused_per_address,
                counts.refused_full,
                counts.evicted,
                counts.header_timeouts,
                counts.handshake_failures,
                counts.accept_errors,
            )


class _ServerTLS(sslproto.SSLProtocol):
    """asyncio's TLS layer with a read buffer of one TLS record instead of 256 KiB.

    asyncio allocates that buffer for every connection as it is accepted, before the handshake:
    a thousand strangers' connections would hold 250 MB of it. A TLS record carries at most
    16 KiB of plaintext (RFC 8446 section 5.1), so reading one record at a time costs only a few
    more calls on large uploads.
    """

    max_size = 16 * 1024 + 512


class _Listener(asyncio.AbstractServer):
    """The accept loop of one listening socket (what ``loop.create_server`` would run)."""

    def __init__(
        self,
        guard: ConnectionGuard,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self._guard = guard
        self._sock = sock
        self.protocol_factory = protocol_factory
        self.ssl_context = ssl_context
        self._loop = asyncio.get_running_loop()
        self._paused: asyncio.TimerHandle | None = None
        self._serving = True
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._accept)

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening socket (``web.BaseRunner.addresses`` reads it)."""
        return (self._sock,) if self._serving else ()

    def close(self) -> None:
        """Stop accepting; the listening socket stays open for its owner to close."""
        if not self._serving:
            return
        self._serving = False
        if self._paused is not None:
            self._paused.cancel()
        else:
            self._loop.remove_reader(self._sock.fileno())

    def get_loop(self) -> asyncio.AbstractEventLoop:
        """The loop accepting."""
        return self._loop

    def is_serving(self) -> bool:
        """Whether connections are still accepted."""
        return self._serving

    async def wait_closed(self) -> None:
        """Nothing to wait for: closing stops accepting at once."""

    async def start_serving(self) -> None:
        """Accepting starts at construction."""

    async def serve_forever(self) -> None:
        """Not used: the guard's owner runs the loop."""
        raise NotImplementedError("run the event loop instead")

    def _accept(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, peer = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the peer gave up while waiting in the backlog
            except OSError as exc:
                # Out of descriptors, buffers or memory: stop for a moment (retrying at once
                # would spin), count it; the summary says how often.
                self._guard.counts.accept_errors += 1
                logger.debug("guard.accept_failed errno=%s", errno.errorcode.get(exc.errno or 0))
                self._pause()
                return
            self._guard._admit(sock, peer, self)

    def _pause(self) -> None:
        self._loop.remove_reader(self._sock.fileno())
        self._paused = self._loop.call_later(_ACCEPT_PAUSE_S, self._resume)

    def _resume(self) -> None:
        self._paused = None
        if self._serving:
            self._loop.add_reader(self._sock.fileno(), self._accept)


class _GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol for one connection, wrapped: it tells the guard when the connection is
    made and lost, and when the first request head has arrived."""

    __slots__ = ("_conn", "_guard", "_inner")

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard, conn: _Conn) -> None:
        self._inner = inner
        self._guard = guard
        self._conn = conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._guard._made(self._conn, cast(asyncio.Transport, transport))
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        conn = self._conn
        if not conn.head_seen:
            seen = conn.tail + data
            if _HEAD_END in seen:
                self._guard._head_arrived(conn)
            else:
                conn.tail = seen[-(len(_HEAD_END) - 1) :]
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard._forget(self._conn)
        self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class GuardedSite(web.BaseSite):
    """An aiohttp site on an already bound, listening socket whose connections ``guard`` admits
    (``web.SockSite`` with the guard's accept loop)."""

    __slots__ = ("_guard", "_name", "_sock")

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: socket.socket,
        guard: ConnectionGuard,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._sock = sock
        self._guard = guard
        host, port = sock.getsockname()[:2]
        scheme = "https" if ssl_context is not None else "http"
        self._name = f"{scheme}://{host}:{port}"

    @property
    def name(self) -> str:
        """The site's URL."""
        return self._name

    async def start(self) -> None:
        """Start accepting through the guard."""
        await super().start()
        server = self._runner.server
        assert server is not None
        self._server = self._guard.listen(self._sock, server, self._ssl_context)


def _address_key(peer: Any) -> str:
    """Whom the per-address cap counts: the IPv4 address, or the IPv6 /64 (one host can use
    every address of its /64), as the desk and the rate limits count it."""
    host = str(peer[0]) if isinstance(peer, tuple) else str(peer)
    return address_group(host.split("%", 1)[0]) or host


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    """Wait until ``sock`` has something to read (or its peer has closed it)."""
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


def _reset(sock: socket.socket) -> None:
    """Close a refused connection at once: an RST, no TLS, no TIME_WAIT."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
    sock.close()
