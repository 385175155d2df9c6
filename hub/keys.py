"""Every piece of shared state the API keeps on its ``web.Application``, keyed by a typed AppKey."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from hub.app import HubDeps, WriteQueue
    from hub.events import EventBus
    from hub.routes._auth import AuthState
    from hub.routes.pairing import PairingDesk

__all__ = ["AUTH", "BUS", "DEPS", "PAIRING", "SOCKETS", "WRITES"]

DEPS: web.AppKey[HubDeps] = web.AppKey("deps")
AUTH: web.AppKey[AuthState] = web.AppKey("auth")
BUS: web.AppKey[EventBus] = web.AppKey("bus")
WRITES: web.AppKey[WriteQueue] = web.AppKey("writes")
PAIRING: web.AppKey[PairingDesk] = web.AppKey("pairing")
SOCKETS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("sockets")
