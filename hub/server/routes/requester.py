"""Requester routes: submit a request, ask its status, fetch a release (a tar stream).

Any well-formed RFC 9421 signature is accepted, but it must be made by the requester's own key:
for ``POST /requests`` the key inside the signed request token, for status and fetch the key of the
stored request. Every route is rate limited per key and per address.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from consent.desk import ConsentDesk
from consent.errors import TokenExpired, UnknownRequest
from consent.models import ConsentRequest, Release
from consent.requests import verify_request
from hub.server import appkeys
from hub.server.body import read_body
from hub.server.relayed import client_address
from hub.server.routes._auth import check_rate, precheck_signature, require_requester
from hub.server.routes._files import send_file
from hub.server.spool import spool_bundle
from hub.wire.errors import BadRequest, Conflict, NotFound

__all__ = ["add_routes"]

logger = logging.getLogger(__name__)

_MAX_LINK_ID = 64


def add_routes(app: web.Application) -> None:
    """Add the requester routes (submit, status, fetch a release) to ``app``."""
    app.router.add_routes(
        [
            web.post("/requests", submit),
            web.get("/requests/{request_id}/status", status),
            web.get("/releases/{release_id}", fetch),
            web.get("/releases/{release_id}/link", link),
        ]
    )


async def submit(request: web.Request) -> web.Response:
    check_rate(request, key_id=None)
    deps = request.app[appkeys.DEPS]
    # The requester's key is inside the body: only well-formed, fresh signature fields get it
    # read (at most the default few KiB, hub.server.body).
    precheck_signature(request)
    body = await read_body(request)
    try:
        token = body.decode("ascii").strip()
    except UnicodeDecodeError:
        raise BadRequest("request body must be a compact JWS (ASCII)") from None
    now = int(deps.clock())
    # Verify the token first (pure, off the write thread) to learn the requester's key and
    # check the HTTP signature with it; the desk then verifies it again and audits a refusal.
    parsed = await asyncio.to_thread(verify_request, token, now)
    await require_requester(request, parsed.requester_key)
    # The client address too: keys are free to mint, so the desk also counts per address.
    record = await request.app[appkeys.WORKER].run(
        lambda: deps.desk.submit_request(token, now, client=client_address(request))
    )
    if record.repeated:  # the same token again: nothing new, the stored request's status
        return web.json_response(_status_json(record), status=200)
    request.app[appkeys.BUS].publish(
        "request.pending", request_id=record.request_id, requester_key_id=record.requester_key_id
    )
    return web.json_response(_status_json(record), status=201)


async def status(request: web.Request) -> web.Response:
    check_rate(request, key_id=None)
    deps = request.app[appkeys.DEPS]
    request_id = request.match_info["request_id"]
    writes = request.app[appkeys.WORKER]
    stored = await writes.run(_stored_request, deps.desk, request_id)
    if stored is None:
        raise NotFound(f"no request with id {request_id[:64]!r}")
    await require_requester(request, stored.requester_key)
    record = await writes.run(deps.desk.request, request_id)
    body = _status_json(record)
    releases = await writes.run(deps.desk.releases_for, request_id)
    body["release_ids"] = releases
    return web.json_response(body)


async def fetch(request: web.Request) -> web.StreamResponse:
    deps = request.app[appkeys.DEPS]
    writes = request.app[appkeys.WORKER]
    release_id = request.match_info["release_id"]
    signer = await _release_requester(request, release_id)
    now = int(deps.clock())
    link_id = request.query.get("link")
    if link_id is None:
        release = await writes.run(deps.desk.authorize_download, release_id, signer, now)
    else:  # the presigned URL of a link failed: its download, counted then, is served here once
        release = await _redeem(request, release_id, link_id, signer, now)
    # Spool the bundle to disk on the write thread (local disk, quick) before answering, then
    # stream it: a slow requester must not hold the thread that records consent and audit.
    spool = Path(deps.data_dir) / "spool"
    path = await writes.run(spool_bundle, deps.desk, release_id, spool)
    try:
        sent = await send_file(
            request,
            path,
            {
                "Content-Type": "application/x-tar",
                "Content-Disposition": f'attachment; filename="release-{release_id}.tar"',
            },
        )
    finally:
        path.unlink(missing_ok=True)
    # The authorisation above is on the record (release.downloaded, counted); what went out is
    # recorded too, so owners can tell a whole bundle from a fetch cut short.
    outcome: dict[str, Any] = {
        "release_id": release_id,
        "download": release.downloads,
        "bytes": sent.sent,
        "complete": sent.complete,
    }
    if link_id is not None:
        outcome["link"] = link_id
    await writes.run(lambda: deps.audit.append("release.sent", **outcome))
    request.app[appkeys.BUS].publish("release.downloaded", **outcome)
    if sent.complete:
        logger.info("release.sent release_id=%s bytes=%d", release_id, sent.sent)
    else:
        logger.warning(
            "release.send_incomplete release_id=%s bytes=%d of=%d ended_by=%s",
            release_id,
            sent.sent,
            sent.size,
            sent.ended_by,
        )
    return sent.response


async def link(request: web.Request) -> web.Response:
    """A presigned URL for the release bundle in the off-site store: one download, counted and
    refused exactly as the direct download, then ``{release_id, link_id, url, expires}``."""
    deps = request.app[appkeys.DEPS]
    writes = request.app[appkeys.WORKER]
    release_id = request.match_info["release_id"]
    signer = await _release_requester(request, release_id)
    offsite = deps.offsite_releases
    if offsite is None or not await offsite.uploaded(release_id):
        # Nothing is counted: the requester fetches GET /releases/{id} instead.
        raise Conflict(
            f"release {release_id} is not in an off-site store; fetch it from the device",
            code="not_offsite",
        )
    now = int(deps.clock())
    await writes.run(deps.desk.authorize_download, release_id, signer, now)
    issued = await offsite.presign(release_id, now, requester_key_id=signer)
    body = {
        "release_id": release_id,
        "link_id": issued.link_id,
        "url": issued.url,
        "expires": issued.expires_at_s,
    }
    return web.json_response(body, headers={"Cache-Control": "no-store"})


async def _redeem(
    request: web.Request, release_id: str, link_id: str, signer: str, now: int
) -> Release:
    deps = request.app[appkeys.DEPS]
    release = await request.app[appkeys.WORKER].run(deps.desk.release, release_id)
    if release.expires_at_s <= now:
        raise TokenExpired(f"release {release_id} expired at {release.expires_at_s}")
    offsite = deps.offsite_releases
    if (
        len(link_id) > _MAX_LINK_ID
        or offsite is None
        or not await offsite.redeem(link_id, release_id, signer, now)
    ):
        raise Conflict(
            f"link {link_id[:_MAX_LINK_ID]!r} was not issued to this key for release "
            f"{release_id}, or its direct download was used already; fetch without ?link=",
            code="link_unusable",
        )
    return release


async def _release_requester(request: web.Request, release_id: str) -> str:
    """The key id of the requester whose request the release answers, from the request's
    signature (after the rate limit); NotFound for an unknown release."""
    check_rate(request, key_id=None)
    deps = request.app[appkeys.DEPS]
    writes = request.app[appkeys.WORKER]
    release = await writes.run(deps.desk.release, release_id)
    stored = await writes.run(_stored_request, deps.desk, release.request_id)
    if stored is None:
        raise NotFound(f"no request behind release {release_id[:64]!r}")
    return await require_requester(request, stored.requester_key)


def _stored_request(desk: ConsentDesk, request_id: str) -> ConsentRequest | None:
    try:
        return desk.stored_request(request_id)
    except UnknownRequest:
        return None


def _status_json(record: Any) -> dict[str, Any]:
    return {
        "request_id": record.request_id,
        "status": record.status.value,
        "rule": record.rule,
        "reason": record.reason,
        "expires": record.expires_at_s,
    }
