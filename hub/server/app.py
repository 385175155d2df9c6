"""The device's HTTPS API as one aiohttp application, assembled here and only here: ``create_app``;
and the live page's site for the page port, ``create_page_app``.

Routes live in ``hub.server.routes`` (owner, requester, pairing, events, live); errors become JSON
in ``hub.server.errors``; shared state hangs off the app under the AppKeys of
``hub.server.appkeys``. Every call that touches consent or audit records goes through one
:class:`hub.server.worker.SerialWorker`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from hub.server import appkeys
from hub.server.auth import AuthState
from hub.server.body import LARGEST_BODY_BYTES, body_limit_middleware
from hub.server.deps import HubDeps
from hub.server.errors import error_middleware
from hub.server.events import EventBus
from hub.server.pairing import PairingDesk
from hub.server.relayed import relay_middleware
from hub.server.replies import ReplyBook
from hub.server.routes import audit, events, live, owner, pairing, replies, requester
from hub.server.routes.live import LiveSetup
from hub.server.speakers import Speakers
from hub.server.worker import SerialWorker

__all__ = ["MAX_BODY_BYTES", "PAGE_MAX_BODY_BYTES", "create_app", "create_page_app"]

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = LARGEST_BODY_BYTES  # per route: hub.server.body (most take a few KiB)
PAGE_MAX_BODY_BYTES = 160 * 1024  # the page's largest body: one SDP offer (hub.server.routes.live)


def create_app(
    deps: HubDeps, *, live_view: LiveSetup | None = None, speakers: Speakers | None = None
) -> web.Application:
    """The API application for ``deps`` (with live view when ``live_view`` is given, and the
    cameras' ``speakers``, which the app closes when it stops); the caller owns the resources
    inside ``deps``."""
    app = web.Application(
        middlewares=[error_middleware, relay_middleware, body_limit_middleware],
        client_max_size=MAX_BODY_BYTES,
    )
    app[appkeys.DEPS] = deps
    app[appkeys.BUS] = EventBus(clock=deps.clock)
    app[appkeys.SOCKETS] = set()
    app[appkeys.AUTH] = AuthState.create(deps)
    app[appkeys.REPLIES] = ReplyBook(deps.data_dir / "replies")
    app[appkeys.SPEAKERS] = speakers if speakers is not None else Speakers()
    app.cleanup_ctx.append(_worker)
    app.cleanup_ctx.append(_speakers)
    app.cleanup_ctx.append(_pairing_desk)
    if deps.offsite_releases is not None:
        app.cleanup_ctx.append(_offsite_releases)
    app.on_shutdown.append(_close_sockets)
    owner.add_routes(app)
    audit.add_routes(app)
    requester.add_routes(app)
    pairing.add_routes(app)
    events.add_routes(app)
    replies.add_routes(app)
    if live_view is not None:
        live.add_routes(app, live_view)
    return app


def create_page_app(api: web.Application) -> web.Application:
    """The live page's site (the page port, whose certificate nobody pins): the page, its script
    and style, ``POST /live/link-offer``, ``POST /live/link-talk`` and ``GET /live/link-events``,
    working on the live state of ``api`` (from :func:`create_app` with live view). No API route answers there.
    Start ``api``'s runner first and clean this one up first."""
    app = web.Application(
        middlewares=[error_middleware, body_limit_middleware], client_max_size=PAGE_MAX_BODY_BYTES
    )
    app[appkeys.DEPS] = api[appkeys.DEPS]  # the device's limits (body deadline) apply here too
    live.add_page_routes(app, api)
    return app


async def _worker(app: web.Application) -> AsyncIterator[None]:
    worker = SerialWorker()
    app[appkeys.WORKER] = worker
    yield
    await worker.close()


async def _speakers(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[appkeys.SPEAKERS].close()


async def _offsite_releases(app: web.Application) -> AsyncIterator[None]:
    offsite = app[appkeys.DEPS].offsite_releases
    assert offsite is not None
    await offsite.start(app[appkeys.WORKER].run, app[appkeys.BUS].publish)
    yield
    await offsite.close()


async def _pairing_desk(app: web.Application) -> AsyncIterator[None]:
    app[appkeys.PAIRING] = PairingDesk(app[appkeys.DEPS], app[appkeys.BUS])
    yield
    app[appkeys.PAIRING].close()


async def _close_sockets(app: web.Application) -> None:
    app[appkeys.BUS].close()
    sockets: set[web.WebSocketResponse] = app[appkeys.SOCKETS]
    for socket in list(sockets):
        await socket.close(code=1001, message=b"device shutting down")
