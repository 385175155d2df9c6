"""Every piece of shared state the API keeps on its ``web.Application``, keyed by a typed AppKey.

The state's types live below the app and its routes (``deps``, ``auth``, ``events``, ``guard``,
``pairing``, ``speakers``, ``worker``), so routes and the app both import this module and nothing imports them
back.
"""

from __future__ import annotations

from aiohttp import web

from hub.server.auth import AuthState
from hub.server.deps import HubDeps
from hub.server.events import EventBus
from hub.server.guard import ConnectionGuard
from hub.server.pairing import PairingDesk
from hub.server.speakers import Speakers
from hub.server.worker import SerialWorker

__all__ = ["AUTH", "BUS", "DEPS", "GUARD", "PAIRING", "SOCKETS", "SPEAKERS", "WORKER"]

DEPS = web.AppKey("deps", HubDeps)
AUTH = web.AppKey("auth", AuthState)
BUS = web.AppKey("bus", EventBus)
WORKER = web.AppKey("worker", SerialWorker)
PAIRING = web.AppKey("pairing", PairingDesk)
# Each camera's speaker and its floor (talk, chime, quick replies); an empty registry when the
# app was made without speakers.
SPEAKERS = web.AppKey("speakers", Speakers)
SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("sockets")
# Set by ``doorward serve`` only (tests serving the app directly have no guard): owner
# signatures mark their connection trusted there.
GUARD = web.AppKey("guard", ConnectionGuard)
