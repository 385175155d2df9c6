"""Calls that came through the relay: who sent them, and how long they may have waited.

The device's relay connection (``hub.relay.device``) hands each relayed call to the API over
loopback with the hop fields of ``hub.wire.relay_hop``. :func:`relay_middleware` checks them once
per request: the token must be the one derived from this device's relay key and the call must
come from a loopback address; then ``relay_client(request)`` is the broker client that sent it.
Hop fields that do not check out are refused (400) before any route runs, so a LAN caller cannot
pretend to be relayed to escape its address's limits or to stretch the signature window.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from consent.desk import address_group
from hub.server import appkeys
from hub.wire.errors import BadRequest
from hub.wire.relay_hop import HOP_CLIENT, HOP_TOKEN, valid_client_id

__all__ = ["client_address", "relay_client", "relay_middleware", "signature_max_age_s"]

logger = logging.getLogger(__name__)

_RELAY_CLIENT = web.RequestKey("relay_client", str)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def relay_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Mark a relayed call with its sender; refuse hop fields that do not check out."""
    token = request.headers.get(HOP_TOKEN)
    client = request.headers.get(HOP_CLIENT)
    if token is not None or client is not None:
        expected = request.app[appkeys.DEPS].relay_hop_token
        genuine = (
            token is not None
            and client is not None
            and expected is not None
            and hmac.compare_digest(token.encode(), expected.encode())
            and valid_client_id(client)
            and _loopback(request.remote)
        )
        if not genuine:
            logger.warning("relay.hop_refused remote=%s", address_group(request.remote))
            raise BadRequest(
                f"the {HOP_TOKEN} and {HOP_CLIENT} header fields are set only by the device's "
                "own relay connection; send the request without them"
            )
        request[_RELAY_CLIENT] = client
    return await handler(request)


def relay_client(request: web.Request) -> str | None:
    """The broker client a relayed call came from; None for a call made directly."""
    client: str | None = request.get(_RELAY_CLIENT)
    return client


def client_address(request: web.Request) -> str:
    """What per-address limits count a call against: ``relay:<client id>`` for a relayed call,
    else the client's address (an IPv6 /64 counts as one)."""
    client = relay_client(request)
    if client is not None:
        return f"relay:{client}"
    return address_group(request.remote) or "unknown"


def signature_max_age_s(request: web.Request) -> float | None:
    """How old a signature this call may carry beyond the usual window (None: the window)."""
    if relay_client(request) is None:
        return None
    return float(request.app[appkeys.DEPS].relay_max_age_s)


def _loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote).is_loopback
    except ValueError:
        return False
