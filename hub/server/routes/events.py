"""``GET /events``: the owners' WebSocket stream of device events (see ``hub.server.events``).

The upgrade request is signed like every owner request. Each event is one text frame of JSON
``{"seq", "kind", "time", "data"}``. A client that falls behind by more than the queue length is
dropped: the socket closes with code 4008 and it should reconnect and re-list what it missed. When
the owner is removed (``DELETE /owners/{key_id}``), its sockets close at once with code 4003 and get
no later event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import WSMsgType, web

from hub.server import appkeys
from hub.server.routes._auth import require_owner
from hub.wire.errors import BadRequest, Conflict
from hub.wire.events import CLOSE_OWNER_REMOVED, CLOSE_TOO_SLOW, EVENT_KINDS

__all__ = ["CLOSE_OWNER_REMOVED", "CLOSE_TOO_SLOW", "add_routes"]

logger = logging.getLogger(__name__)

_SEND_TIMEOUT_S = 10.0
_HEARTBEAT_S = 30.0


def add_routes(app: web.Application) -> None:
    """Add ``GET /events`` (an owner's WebSocket of events) to ``app``."""
    app.router.add_get("/events", events)


async def events(request: web.Request) -> web.WebSocketResponse:
    owner = await require_owner(request)
    kinds_text = request.query.get("kinds")
    kinds = None
    if kinds_text:
        kinds = frozenset(kinds_text.split(","))
        unknown = sorted(kinds - EVENT_KINDS)
        if unknown:
            raise BadRequest(
                f"kinds must be a comma-separated list of {', '.join(sorted(EVENT_KINDS))}; "
                f"unknown: {', '.join(k[:32] for k in unknown[:5])}"
            )
    socket = web.WebSocketResponse(heartbeat=_HEARTBEAT_S)
    if not socket.can_prepare(request).ok:
        raise BadRequest("GET /events must be a WebSocket upgrade request")
    # No await since require_owner checked the owner is active: a removal stored from now on
    # revokes this subscription (EventBus.end_key), so the socket cannot outlive its owner.
    subscription = request.app[appkeys.BUS].subscribe(kinds, key_id=owner.key_id)
    if subscription is None:
        raise Conflict("too many event streams are open; close one and retry", code="busy")
    sockets = request.app[appkeys.SOCKETS]
    try:
        await socket.prepare(request)
        sockets.add(socket)
        logger.info("events.open key_id=%s", owner.key_id)
        reader = asyncio.ensure_future(_drain(socket))
        # When the client goes away, end the subscription so the loop below wakes and stops.
        reader.add_done_callback(lambda _: subscription.close())
        try:
            async for event in subscription:
                await asyncio.wait_for(socket.send_json(event.to_json()), _SEND_TIMEOUT_S)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        if subscription.revoked:
            logger.info("events.owner_removed key_id=%s", owner.key_id)
            await socket.close(
                code=CLOSE_OWNER_REMOVED, message=b"this key is no longer an owner of the device"
            )
        elif subscription.dropped:
            await socket.close(code=CLOSE_TOO_SLOW, message=b"client too slow; reconnect")
    except (ConnectionResetError, TimeoutError):
        logger.info("events.lost key_id=%s", owner.key_id)
    finally:
        subscription.close()
        sockets.discard(socket)
        if socket.prepared and not socket.closed:
            await socket.close()
        logger.info("events.close key_id=%s", owner.key_id)
    return socket


async def _drain(socket: web.WebSocketResponse) -> None:
    """Read (and ignore) client frames so pings and the close handshake are processed."""
    async for message in socket:
        if message.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
            break
