"""Pairing endpoints over :class:`hub.server.pairing.PairingDesk`.

``POST /pair/start`` carries the phone's ``pake1`` and answers ``pake2``; ``POST /pair/finish``
carries ``confirm`` and answers ``keys``. Both are unauthenticated and rate limited per address.
``POST /owners/approve`` (admin-signed) lets one more phone pair.
"""

from __future__ import annotations

import logging

from aiohttp import web

from hub.server import appkeys
from hub.server.body import read_body
from hub.server.pairing import APPROVAL_TTL_S
from hub.server.routes._auth import check_rate, require_owner
from hub.server.routes._params import json_body, str_field
from hub.wire.errors import BadRequest, Forbidden

__all__ = ["add_routes"]

logger = logging.getLogger(__name__)


def add_routes(app: web.Application) -> None:
    """Add ``POST /pair/start``, ``/pair/finish`` and ``/owners/approve`` to ``app``."""
    app.router.add_routes(
        [
            web.post("/pair/start", pair_start),
            web.post("/pair/finish", pair_finish),
            web.post("/owners/approve", approve_owner),
        ]
    )


async def pair_start(request: web.Request) -> web.Response:
    check_rate(request, key_id=None)
    desk = request.app[appkeys.PAIRING]
    message = await read_body(request)
    now = request.app[appkeys.DEPS].clock()
    reply = await request.app[appkeys.WORKER].run(desk.start, message, now)
    return web.Response(body=reply, content_type="application/json")


async def pair_finish(request: web.Request) -> web.Response:
    check_rate(request, key_id=None)
    desk = request.app[appkeys.PAIRING]
    message = await read_body(request)
    now = int(request.app[appkeys.DEPS].clock())
    owner, reply = await request.app[appkeys.WORKER].run(desk.finish, message, now)
    request.app[appkeys.BUS].publish("owner.added", key_id=owner.key_id, admin=owner.admin)
    return web.Response(body=reply, content_type="application/json")


async def approve_owner(request: web.Request) -> web.Response:
    admin = await require_owner(request)
    if not admin.admin:
        raise Forbidden("only an admin can approve a new owner")
    phone_key_id = str_field(await json_body(request), "key_id")
    if len(phone_key_id) != 43:
        raise BadRequest("key_id must be a 43-character JWK thumbprint")
    desk = request.app[appkeys.PAIRING]
    await request.app[appkeys.WORKER].run(
        desk.approve, phone_key_id, request.app[appkeys.DEPS].clock()
    )
    logger.info("pairing.approved key_id=%s by=%s", phone_key_id, admin.key_id)
    return web.json_response({"approved": phone_key_id, "valid_s": APPROVAL_TTL_S})
