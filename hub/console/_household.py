"""The console's household, policy and live pages' API: the owners (approve a phone, remove an
owner), the consent policy (shown, and saved as the owner-signed document), and a live link.
Each handler calls what ``doorward owner owners``, ``owner policy`` and ``owner live-link`` call.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from consent.models import CATEGORIES, LEGAL_BASES, MAX_WINDOW_S, REQUESTER_KINDS
from hub.cli.common import CliError, guarded
from hub.cli.owner_ops import change_owners, signed_policy
from hub.client import OwnerInfo
from hub.console._api import (
    CALL_TIMEOUT_S,
    BadInput,
    device_connection,
    paired_device,
    read_body,
)
from hub.wire.live_link import MAX_LINK_TTL_S

__all__ = ["LIVE_LINK_TTL_S", "add_household_routes"]

LIVE_LINK_TTL_S = 300  # as ``owner live-link``'s default
_MAX_KEY_ID_CHARS = 128


def add_household_routes(app: web.Application) -> None:
    """The owners, policy and live-link routes."""
    app.router.add_get("/api/doorbells/{device_id}/owners", owners)
    app.router.add_post("/api/doorbells/{device_id}/owners/approve", approve_phone)
    app.router.add_post("/api/doorbells/{device_id}/owners/{key_id}/remove", remove_owner)
    app.router.add_get("/api/doorbells/{device_id}/policy", policy)
    app.router.add_post("/api/doorbells/{device_id}/policy", save_policy)
    app.router.add_get("/api/doorbells/{device_id}/cameras", cameras)
    app.router.add_post("/api/doorbells/{device_id}/live-link", live_link)


async def owners(request: web.Request) -> web.Response:
    """The doorbell's owners, which one is this profile, and whether it is an admin."""
    return await _owners(request, "list", None)


async def approve_phone(request: web.Request) -> web.Response:
    """Let the phone with ``{"key_id": …}`` pair during the next few minutes (admins only)."""
    body = await read_body(request)
    key_id = body.get("key_id")
    if not isinstance(key_id, str) or not key_id.strip() or len(key_id) > _MAX_KEY_ID_CHARS:
        raise BadInput(
            "paste the new phone's key id (its 'doorward owner init' or 'owner status' shows it)"
        )
    return await _owners(request, "approve", key_id.strip())


async def remove_owner(request: web.Request) -> web.Response:
    """Remove an owner (admins: anyone; others: only themselves); new clips stop being encrypted
    to it."""
    return await _owners(request, "remove", request.match_info["key_id"])


async def _owners(request: web.Request, action: str, key_id: str | None) -> web.Response:
    state, device, keys = paired_device(request)

    async def go() -> list[OwnerInfo]:
        async with device_connection(state, device, keys) as api:
            return await change_owners(api, action, key_id)

    found = await guarded(go(), f"device {device.device_id}", CALL_TIMEOUT_S)
    me = next((o for o in found if o.key_id == keys.key_id), None)
    return web.json_response(
        {
            "me": keys.key_id,
            "admin": bool(me and me.admin),
            "owners": [
                {"key_id": o.key_id, "name": o.name, "admin": o.admin, "added": o.added_s}
                for o in found
            ],
        }
    )


async def policy(request: web.Request) -> web.Response:
    """The policy in force, with the choices the form offers."""
    state, device, keys = paired_device(request)

    async def go() -> dict[str, Any]:
        async with device_connection(state, device, keys) as api:
            return await api.policy()

    in_force = await guarded(go(), f"device {device.device_id}", CALL_TIMEOUT_S)
    return web.json_response({"policy": in_force, "choices": _choices()})


async def save_policy(request: web.Request) -> web.Response:
    """Sign ``{"policy": …}`` with this owner's key and install it, as ``owner policy set``."""
    state, device, keys = paired_device(request)
    body = await read_body(request)
    now = int(time.time())
    try:
        document = signed_policy(body.get("policy"), keys, device.device_id, now=now)
    except CliError as exc:
        raise BadInput(str(exc)) from None

    async def go() -> dict[str, Any]:
        async with device_connection(state, device, keys) as api:
            return await api.set_policy(document)

    installed = await guarded(go(), f"device {device.device_id}", CALL_TIMEOUT_S)
    return web.json_response({"policy": installed, "choices": _choices()})


async def cameras(request: web.Request) -> web.Response:
    """The doorbell's camera names (what live view can show)."""
    state, device, keys = paired_device(request)

    async def go() -> list[str]:
        async with device_connection(state, device, keys) as api:
            return [c.name for c in await api.cameras()]

    names = await guarded(go(), f"device {device.device_id}", CALL_TIMEOUT_S)
    return web.json_response({"cameras": names})


async def live_link(request: web.Request) -> web.Response:
    """A single-use live-view link for ``{"camera": NAME}`` (None: the first camera), minted and
    signed here as ``owner live-link`` does; the doorbell serves the page it opens."""
    state, device, keys = paired_device(request)
    body = await read_body(request)
    camera = body.get("camera") or None
    if camera is not None and (not isinstance(camera, str) or len(camera) > 64):
        raise BadInput("name one of the doorbell's cameras, or none for the first")
    ttl_s = min(LIVE_LINK_TTL_S, MAX_LINK_TTL_S)

    async def go() -> Any:
        async with device_connection(state, device, keys, lan_only="a live link") as api:
            return await api.live_link(camera, ttl_s=ttl_s)

    link = await guarded(go(), f"device {device.device_id}", CALL_TIMEOUT_S)
    return web.json_response({"url": link.url, "expires": link.expires_s})


def _choices() -> dict[str, Any]:
    return {
        "requester_kinds": sorted(REQUESTER_KINDS),
        "categories": sorted(CATEGORIES),
        "legal_bases": sorted(LEGAL_BASES),
        "max_window_s": MAX_WINDOW_S,
    }
