"""The device's HTTPS API as one aiohttp application: ``create_app(deps)``.

Routes live in ``hub.routes`` (owner, requester, pairing, events); errors become JSON in
``hub._errors``; shared state hangs off the app under the AppKeys of ``hub.keys``. Everything that
writes consent or audit records goes through one :class:`WriteQueue`: a single worker thread (the
consent desk's SQLite connection is single-owner), each write shielded from handler cancellation
and tracked, so a client hanging up never leaves a half-recorded decision and shutdown waits for
every write to finish.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from consent.audit import AuditLog
from consent.desk import ConsentDesk
from crypto.keys import DeviceIdentity
from crypto.setup_code import SetupCode
from device.pipeline import PipelineStats
from device.store import ClipStore
from hub import keys
from hub._errors import error_middleware
from hub.events import EventBus
from hub.owners import OwnersTable

__all__ = ["CameraInfo", "HubDeps", "WriteQueue", "create_app"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

MAX_BODY_BYTES = 8 * 1024 * 1024  # a consent manifest for a 12 h window stays far below this


@dataclass(frozen=True, slots=True)
class CameraInfo:
    """A camera as the API lists it; ``stats`` reads its pipeline's counters."""

    name: str
    spec: str
    width: int
    height: int
    fps: float
    codec: str
    stats: Callable[[], PipelineStats] = field(repr=False, default=PipelineStats)


@dataclass(frozen=True, slots=True)
class HubDeps:
    """What the API needs from the running device (built by ``hub.service`` or a test)."""

    device: DeviceIdentity
    store: ClipStore
    audit: AuditLog
    desk: ConsentDesk
    owners: OwnersTable
    tls_fingerprint: str
    data_dir: Path
    cameras: Mapping[str, CameraInfo] = field(default_factory=dict)
    setup_code: SetupCode | None = field(default=None, repr=False)
    clock: Callable[[], float] = field(default=time.time, repr=False)
    name: str = "Doorward"
    # Signed requests older or newer than this are refused (RFC 9421 ``created``).
    signature_window_s: int = 300
    # Per-key and per-address token buckets for requester and unauthenticated routes.
    rate_per_s: float = 2.0
    rate_burst: int = 20
    max_pairing_failures: int = 20


class WriteQueue:
    """Runs consent and audit writes one at a time on a worker thread, shielded and tracked."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hub-writes")
        self._tasks: set[asyncio.Future[Any]] = set()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on the worker; a cancelled caller does not cancel the write."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, fn, *args)
        self._tasks.add(future)
        future.add_done_callback(self._tasks.discard)
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Wait for every write in flight, then stop the worker."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pool.shutdown(wait=True)


def create_app(deps: HubDeps) -> web.Application:
    """The API application for ``deps``; the caller owns the resources inside ``deps``."""
    from hub.routes import events, owner, pairing, requester
    from hub.routes._auth import AuthState

    app = web.Application(middlewares=[error_middleware], client_max_size=MAX_BODY_BYTES)
    app[keys.DEPS] = deps
    app[keys.BUS] = EventBus(clock=deps.clock)
    app[keys.SOCKETS] = set()
    app[keys.AUTH] = AuthState.create(app)
    app.cleanup_ctx.append(_write_queue)
    app.cleanup_ctx.append(_pairing_desk)
    app.on_shutdown.append(_close_sockets)
    owner.add_routes(app)
    requester.add_routes(app)
    pairing.add_routes(app)
    events.add_routes(app)
    return app


async def _write_queue(app: web.Application) -> AsyncIterator[None]:
    queue = WriteQueue()
    app[keys.WRITES] = queue
    yield
    await queue.close()


async def _pairing_desk(app: web.Application) -> AsyncIterator[None]:
    from hub.routes.pairing import PairingDesk

    deps = app[keys.DEPS]
    app[keys.PAIRING] = PairingDesk(deps, app[keys.BUS])
    yield
    app[keys.PAIRING].close()


async def _close_sockets(app: web.Application) -> None:
    app[keys.BUS].close()
    sockets: set[web.WebSocketResponse] = app[keys.SOCKETS]
    for socket in list(sockets):
        await socket.close(code=1001, message=b"device shutting down")
