"""Owner routes: clips, segments, manifests, policy, requests and decisions, owners, health.

The audit log's routes are in ``hub.server.routes.audit``.

Every handler starts with :func:`hub.server.auth.require_owner`: an RFC 9421 signature by a paired
owner that has not been removed, checked on every request (a removed owner is refused at once).
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from consent.desk import ConsentDesk
from consent.models import RequestStatus
from crypto import age
from crypto.errors import CryptoError
from crypto.signed import b64url, b64url_decode
from device.store import ClipRecord, SegmentRecord
from hub.server import appkeys
from hub.server.body import LARGEST_BODY_BYTES, max_body
from hub.server.owners import OwnerError
from hub.server.routes._auth import require_owner
from hub.server.routes._files import send_file
from hub.server.routes._params import int_param, json_body, str_field
from hub.wire.errors import BadRequest, Forbidden, NotFound

__all__ = ["add_routes", "clip_json", "release_json", "segment_json"]

_MAX_HEADER_BYTES = 64 * 1024  # one stanza per owner (at most 32 hybrid stanzas) fits easily
# Bodies (hub.server.body): a policy document (64 KiB) escaped inside JSON; a signed token
# (16 KiB) inside JSON. Everything else takes the default few KiB.
_POLICY_BODY_BYTES = 256 * 1024
_TOKEN_BODY_BYTES = 32 * 1024
_STARTED = time.monotonic()


def add_routes(app: web.Application) -> None:
    """Add the owner routes (clips, segments, policy, requests, owners, health)."""
    app.router.add_routes(
        [
            web.get("/cameras", cameras),
            web.get("/clips", list_clips),
            web.get("/clips/{clip_id}", get_clip),
            web.delete("/clips/{clip_id}", delete_clip),
            web.get("/clips/{clip_id}/manifest", clip_manifest),
            web.get("/segments/{segment_id}", get_segment),
            web.get("/segments/{segment_id}/header", segment_header),
            web.get("/policy", get_policy),
            web.put("/policy", put_policy),
            web.get("/requests", list_requests),
            web.get("/requests/{request_id}", get_request),
            web.post("/requests/{request_id}/consent", consent),
            web.post("/requests/{request_id}/decline", decline),
            web.post("/releases/{release_id}/revoke", revoke),
            web.get("/owners", list_owners),
            web.delete("/owners/{key_id}", remove_owner),
            web.get("/health", health),
            web.get("/metrics", metrics),
            web.get("/backup", backup_status),
            web.get("/relay/key-config", relay_key_config),
        ]
    )


def clip_json(clip: ClipRecord) -> dict[str, Any]:
    """A clip as the API shows it (``GET /clips``); times in seconds since 1970, sizes in bytes."""
    return {
        "clip_id": clip.clip_id,
        "camera": clip.camera,
        "start": clip.start_s,
        "end": clip.end_s,
        "segments": clip.segment_count,
        "bytes": clip.bytes,
        "finished": clip.finished,
    }


def segment_json(segment: SegmentRecord) -> dict[str, Any]:
    """A segment as the API shows it (``GET /clips/{id}``); times in seconds, size in bytes."""
    return {
        "segment_id": segment.segment_id,
        "clip_id": segment.clip_id,
        "camera": segment.camera,
        "index": segment.index,
        "start": segment.start_s,
        "duration": segment.duration_s,
        "size": segment.size,
        "payload_sha256": segment.payload_sha256,
    }


# -- cameras and clips --------------------------------------------------------------------------


async def cameras(request: web.Request) -> web.Response:
    await require_owner(request)
    deps = request.app[appkeys.DEPS]
    return web.json_response(
        {
            "cameras": [
                {
                    "name": c.name,
                    "width": c.width,
                    "height": c.height,
                    "fps": c.fps,
                    "codec": c.codec,
                }
                for c in deps.cameras.values()
            ]
        }
    )


async def list_clips(request: web.Request) -> web.Response:
    await require_owner(request)
    store = request.app[appkeys.DEPS].store
    query = request.query
    limit = int_param(query, "limit", default=100, low=1, high=1000)
    start = _float_param(query, "start")
    end = _float_param(query, "end")
    camera = query.get("camera") or None
    after = query.get("after") or None
    clips = store.list_clips(camera=camera, start_s=start, end_s=end, limit=limit, after=after)
    next_after = clips[-1].clip_id if len(clips) == limit else None
    return web.json_response({"clips": [clip_json(c) for c in clips], "next": next_after})


async def get_clip(request: web.Request) -> web.Response:
    await require_owner(request)
    store = request.app[appkeys.DEPS].store
    clip = store.clip(request.match_info["clip_id"])
    body = clip_json(clip)
    body["segment_list"] = [segment_json(s) for s in store.list_segments(clip.clip_id)]
    return web.json_response(body)


async def delete_clip(request: web.Request) -> web.Response:
    owner = await require_owner(request)
    deps = request.app[appkeys.DEPS]
    clip_id = request.match_info["clip_id"]
    deps.store.clip(clip_id)  # 404 before anything is written

    def delete() -> None:
        deps.store.delete_clip(clip_id)
        deps.audit.append("clip.deleted", clip_id=clip_id, owner=owner.key_id)

    await request.app[appkeys.WORKER].run(delete)
    return web.json_response({"deleted": clip_id})


async def clip_manifest(request: web.Request) -> web.Response:
    await require_owner(request)
    store = request.app[appkeys.DEPS].store
    clip_id = request.match_info["clip_id"]
    store.clip(clip_id)
    return web.Response(body=store.manifest_bytes(clip_id), content_type="application/json")


async def get_segment(request: web.Request) -> web.StreamResponse:
    await require_owner(request)
    deps = request.app[appkeys.DEPS]
    segment = deps.store.segment(request.match_info["segment_id"])
    # The one place that sends a segment to the backup store instead (hub.server.segment_links).
    if deps.segment_links is not None and _prefers_offsite(request):
        url = await deps.segment_links.link(segment.payload_sha256)
        if url is not None:
            return web.Response(
                status=303,
                headers={
                    "Location": url,
                    "X-Payload-SHA256": segment.payload_sha256,
                    "Cache-Control": "no-store",
                },
            )
    headers = {
        "Content-Type": "application/octet-stream",
        "X-Payload-SHA256": segment.payload_sha256,
    }
    try:
        return (await send_file(request, segment.path, headers)).response
    except FileNotFoundError:  # retention deleted it just now
        raise NotFound(f"unknown segment {segment.segment_id!r}") from None


def _prefers_offsite(request: web.Request) -> bool:
    """``Prefer: offsite`` (RFC 7240 syntax: comma-separated preferences)."""
    wanted = ",".join(request.headers.getall("Prefer", ()))
    return any(p.split(";")[0].strip().lower() == "offsite" for p in wanted.split(","))


async def segment_header(request: web.Request) -> web.Response:
    await require_owner(request)
    segment = request.app[appkeys.DEPS].store.segment(request.match_info["segment_id"])
    try:
        header = await asyncio.to_thread(_read_header, segment.path)
    except CryptoError as exc:
        raise NotFound(f"segment {segment.segment_id} has no readable age header") from exc
    if len(header) > _MAX_HEADER_BYTES:
        raise NotFound(f"segment {segment.segment_id} header is unexpectedly large")
    return web.Response(body=header, content_type="application/octet-stream")


# -- policy, requests, decisions ----------------------------------------------------------------


async def get_policy(request: web.Request) -> web.Response:
    await require_owner(request)
    writes = request.app[appkeys.WORKER]
    desk = request.app[appkeys.DEPS].desk
    policy = await writes.run(desk.policy)
    return web.json_response({"policy": policy.to_json()})


@max_body(_POLICY_BODY_BYTES)
async def put_policy(request: web.Request) -> web.Response:
    await require_owner(request)
    deps = request.app[appkeys.DEPS]
    document = str_field(await json_body(request), "document")
    policy = await request.app[appkeys.WORKER].run(deps.desk.set_policy, document, _now(request))
    return web.json_response({"policy": policy.to_json()})


async def list_requests(request: web.Request) -> web.Response:
    await require_owner(request)
    desk = request.app[appkeys.DEPS].desk
    status_text = request.query.get("status")
    try:
        status = RequestStatus(status_text) if status_text else None
    except ValueError:
        allowed = ", ".join(s.value for s in RequestStatus)
        raise BadRequest(
            f"status must be one of {allowed}, got {(status_text or '')[:32]!r}"
        ) from None
    writes = request.app[appkeys.WORKER]
    records = await writes.run(desk.list_requests, status)
    ids = [r.request_id for r in records]
    tokens = await writes.run(_tokens, desk, ids)
    releases = await writes.run(_releases, desk, ids)
    return web.json_response(
        {
            "requests": [
                _request_json(r, tokens.get(r.request_id), releases.get(r.request_id))
                for r in records
            ]
        }
    )


async def get_request(request: web.Request) -> web.Response:
    await require_owner(request)
    desk = request.app[appkeys.DEPS].desk
    request_id = request.match_info["request_id"]
    writes = request.app[appkeys.WORKER]
    record = await writes.run(desk.request, request_id)
    tokens = await writes.run(_tokens, desk, [request_id])
    releases = await writes.run(_releases, desk, [request_id])
    return web.json_response(
        _request_json(record, tokens.get(request_id), releases.get(request_id))
    )


@max_body(LARGEST_BODY_BYTES)  # the release manifest: new headers for up to 1000 segments
async def consent(request: web.Request) -> web.Response:
    await require_owner(request)
    deps = request.app[appkeys.DEPS]
    body = await json_body(request)
    token = str_field(body, "token")
    try:
        manifest = b64url_decode(str_field(body, "manifest"))
    except ValueError:
        raise BadRequest("manifest must be unpadded base64url") from None
    request_id = request.match_info["request_id"]
    release = await request.app[appkeys.WORKER].run(
        deps.desk.record_approval, request_id, token, manifest, _now(request)
    )
    request.app[appkeys.BUS].publish(
        "request.decided", request_id=request_id, decision="approved", release_id=release.release_id
    )
    if deps.offsite_releases is not None:  # uploaded after this answer, in its own task
        deps.offsite_releases.schedule(release.release_id)
    return web.json_response(release_json(release))


@max_body(_TOKEN_BODY_BYTES)
async def decline(request: web.Request) -> web.Response:
    await require_owner(request)
    deps = request.app[appkeys.DEPS]
    token = str_field(await json_body(request), "token")
    request_id = request.match_info["request_id"]
    record = await request.app[appkeys.WORKER].run(
        deps.desk.record_decline, request_id, token, _now(request)
    )
    request.app[appkeys.BUS].publish("request.decided", request_id=request_id, decision="declined")
    return web.json_response(_request_json(record, None))


@max_body(_TOKEN_BODY_BYTES)
async def revoke(request: web.Request) -> web.Response:
    await require_owner(request)
    deps = request.app[appkeys.DEPS]
    token = str_field(await json_body(request), "token")
    release = await request.app[appkeys.WORKER].run(
        deps.desk.revoke, request.match_info["release_id"], token, _now(request)
    )
    return web.json_response(release_json(release))


def release_json(release: Any) -> dict[str, Any]:
    """A release as the API shows it (consent, revoke); ``expires`` in seconds since 1970."""
    return {
        "release_id": release.release_id,
        "request_id": release.request_id,
        "owner_key_id": release.owner_key_id,
        "requester_key_id": release.requester_key_id,
        "expires": release.expires_at_s,
        "max_downloads": release.max_downloads,
        "downloads": release.downloads,
        "revoked": release.revoked,
        "segment_ids": list(release.segment_ids),
        "clip_ids": list(release.clip_ids),
        "audit_index": release.audit_index,
    }


# -- owners -------------------------------------------------------------------------------------


async def list_owners(request: web.Request) -> web.Response:
    await require_owner(request)
    owners = request.app[appkeys.DEPS].owners
    include_removed = request.query.get("removed") == "true"
    return web.json_response(
        {"owners": [o.to_json() for o in owners.list_owners(include_removed=include_removed)]}
    )


async def remove_owner(request: web.Request) -> web.Response:
    owner = await require_owner(request)
    deps = request.app[appkeys.DEPS]
    target = request.match_info["key_id"]
    if not owner.admin and target != owner.key_id:
        raise Forbidden("only an admin can remove another owner; an owner can remove itself")
    try:
        deps.owners.get(target)
    except OwnerError as exc:
        raise NotFound(str(exc)) from exc

    def remove() -> Any:
        removed = deps.owners.remove(target, _now(request))
        deps.audit.append("owner.removed", owner_key_id=target, by_key_id=owner.key_id)
        return removed

    removed = await request.app[appkeys.WORKER].run(remove)
    bus = request.app[appkeys.BUS]
    bus.end_key(target)  # its event streams close before anything else is published
    bus.publish("owner.removed", key_id=target)
    return web.json_response(removed.to_json())


# -- health and metrics -------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    await require_owner(request)
    deps = request.app[appkeys.DEPS]
    return web.json_response(
        {
            "status": "ok",
            "device_id": deps.device.device_id,
            "name": deps.name,
            "cameras": len(deps.cameras),
            "owners": deps.owners.count(),
            "uptime_s": round(time.monotonic() - _STARTED, 3),
        }
    )


async def metrics(request: web.Request) -> web.Response:
    await require_owner(request)
    deps = request.app[appkeys.DEPS]
    per_camera = {}
    for name, camera in deps.cameras.items():
        stats = camera.stats()
        per_camera[name] = {
            "frames": stats.frames,
            "dropped_frames": stats.dropped_frames,
            "clips": stats.clips,
            "segments": stats.segments,
            "bytes": stats.bytes_written,
            "errors": stats.errors,
        }
    usage = resource.getrusage(resource.RUSAGE_SELF)
    body = {
        "frames": sum(c["frames"] for c in per_camera.values()),
        "dropped_frames": sum(c["dropped_frames"] for c in per_camera.values()),
        "clips": sum(c["clips"] for c in per_camera.values()),
        "bytes": sum(c["bytes"] for c in per_camera.values()),
        "stored_bytes": deps.store.total_bytes(),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "load_1m": round(os.getloadavg()[0], 2),
        "max_rss_kib": usage.ru_maxrss,
        "event_subscribers": request.app[appkeys.BUS].subscriber_count,
        "cameras": per_camera,
    }
    return web.json_response(body)


async def backup_status(request: web.Request) -> web.Response:
    await require_owner(request)
    deps = request.app[appkeys.DEPS]
    if deps.backup is None:
        return web.json_response({"enabled": False})
    body = (await asyncio.to_thread(deps.backup.status)).to_json()
    if deps.offsite_releases is not None:
        body["releases"] = deps.offsite_releases.status()
    return web.json_response(body)


async def relay_key_config(request: web.Request) -> web.Response:
    await require_owner(request)
    config = request.app[appkeys.DEPS].relay_key_config
    if config is None:
        raise NotFound("this device has no relay key")
    body = {"key_config": b64url(config)}
    relay_url = request.app[appkeys.DEPS].relay_url
    if relay_url is not None:
        body["relay_url"] = relay_url
    return web.json_response(body)


# -- helpers ------------------------------------------------------------------------------------


def _now(request: web.Request) -> int:
    return int(request.app[appkeys.DEPS].clock())


def _float_param(query: Any, name: str) -> float | None:
    text = query.get(name)
    if text is None or text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(
            f"{name} must be a time in seconds since 1970, got {text[:32]!r}"
        ) from None
    if not 0 <= value < 2**40:
        raise BadRequest(f"{name} must be a time in seconds since 1970, got {text[:32]!r}")
    return value


def _read_header(path: Path) -> bytes:
    with open(path, "rb") as f:
        return age.read_header(f)


def _tokens(desk: ConsentDesk, request_ids: list[str]) -> dict[str, str]:
    """The stored request tokens (compact JWS) so a phone can verify requests itself."""
    return {request_id: desk.request_token(request_id) for request_id in request_ids}


def _releases(desk: ConsentDesk, request_ids: list[str]) -> dict[str, list[str]]:
    """The releases made for each request, oldest first (owners see what they released)."""
    return {request_id: desk.releases_for(request_id) for request_id in request_ids}


def _request_json(
    record: Any, token: str | None, release_ids: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "request_id": record.request_id,
        "requester_key_id": record.requester_key_id,
        "received": record.received_s,
        "expires": record.expires_at_s,
        "status": record.status.value,
        "rule": record.rule,
        "reason": record.reason,
    }
    if token is not None:
        body["token"] = token
    if release_ids is not None:
        body["release_ids"] = release_ids
    return body
