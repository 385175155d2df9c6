"""The console's JSON API under ``/api/``: each handler calls the client code the owner commands
use (``hub.cli.owner_ops``, ``hub.client``), through the same transport (``DeviceConnection``).

Errors come back as ``{"error": {"code", "message"}}``: a DoorwardError's message already says
what went wrong and what to do, and never holds a secret.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from consent.requests import verify_request
from crypto import age
from crypto.errors import DoorwardError
from crypto.keys import KeyBundle
from hub.cli.cmd_audit import audit_verifier
from hub.cli.common import guarded, parse_duration
from hub.cli.owner_ops import (
    DISCOVER_S,
    ApprovalTerms,
    clip_plaintext,
    decline_request,
    describe_request,
    pair_profile,
    pairing_uri,
    post_approval,
    prepare_approval,
    remux_to_mp4,
    revoke_release,
    url_of,
)
from hub.cli.request_footage import segments_in_window
from hub.cli.transport import DeviceConnection
from hub.client import DoorwardClient
from hub.client.audit import check_audit
from hub.client.profile import PinnedDevice, Profile
from hub.console._thumbs import thumbnail_jpeg
from hub.console._words import describe_entry
from hub.wire.discovery import browse

__all__ = [
    "CALL_TIMEOUT_S",
    "STATE",
    "BadInput",
    "ConsoleState",
    "add_routes",
    "clip_as_mp4",
    "device_connection",
    "error_middleware",
    "paired_device",
    "read_body",
]

logger = logging.getLogger(__name__)

CALL_TIMEOUT_S = 60.0  # one console action, all its device calls together
HEALTH_TIMEOUT_S = 8.0  # a doorbell that has not answered by then is shown offline
AUDIT_PAGE = 20
CLIPS_PAGE = 50
_MAX_REASON_CHARS = 500
_MAX_SETUP_CHARS = 2048


@dataclass(slots=True)
class ConsoleState:
    """The owner's profile and how to reach devices (``via``, as ``--via`` on the commands)."""

    profile: Profile
    via: str = "auto"
    discover_s: float = DISCOVER_S
    interfaces: tuple[str, ...] | None = None  # zeroconf's addresses (None: every interface)
    audit_page: int = AUDIT_PAGE  # entries per audit page
    # One audit at a time per doorbell: each stores the profile's checkpoint (approving audits too).
    _audit_locks: dict[str, asyncio.Lock] = field(default_factory=dict, repr=False)
    _keys: KeyBundle | None = field(default=None, repr=False)

    def keys(self) -> KeyBundle:
        """The profile's keys, read from its folder once (not at every page or thumbnail)."""
        if self._keys is None:
            self._keys = self.profile.keys()
        return self._keys

    def audit_lock(self, device_id: str) -> asyncio.Lock:
        """The lock held while ``device_id``'s log is audited (and the checkpoint stored)."""
        return self._audit_locks.setdefault(device_id, asyncio.Lock())


STATE = web.AppKey("console_state", ConsoleState)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A DoorwardError becomes a JSON error with its message (status 400 for bad input, 502 when
    the device could not be reached or answered wrongly)."""
    try:
        return await handler(request)
    except BadInput as exc:
        return _error(400, "bad_input", str(exc))
    except UnknownDoorbell as exc:
        return _error(404, "not_paired", str(exc))
    except DoorwardError as exc:
        logger.info("console.failed path=%s error=%s", request.path, type(exc).__name__)
        return _error(502, "failed", str(exc))


class BadInput(DoorwardError):
    """The page sent something the console cannot act on."""


class UnknownDoorbell(DoorwardError):
    """The page named a doorbell this profile has not paired with."""


def add_routes(app: web.Application) -> None:
    """The ``/api/`` routes."""
    app.router.add_get("/api/profile", profile_info)
    app.router.add_get("/api/doorbells", doorbells)
    app.router.add_get("/api/discover", discover)
    app.router.add_post("/api/pair", pair)
    app.router.add_get("/api/doorbells/{device_id}/requests", requests)
    app.router.add_get("/api/doorbells/{device_id}/requests/{request_id}/segments", segments)
    app.router.add_post("/api/doorbells/{device_id}/requests/{request_id}/approve", approve)
    app.router.add_post("/api/doorbells/{device_id}/requests/{request_id}/decline", decline)
    app.router.add_post("/api/doorbells/{device_id}/releases/{release_id}/revoke", revoke)
    app.router.add_get("/api/doorbells/{device_id}/segments/{segment_id}/thumbnail", thumbnail)
    app.router.add_get("/api/doorbells/{device_id}/clips", clips)
    app.router.add_get("/api/doorbells/{device_id}/clips/{clip_id}/thumbnail", clip_thumbnail)
    app.router.add_get("/api/doorbells/{device_id}/clips/{clip_id}/mp4", clip_mp4)
    app.router.add_get("/api/doorbells/{device_id}/audit", audit)


# -- profile and doorbells ----------------------------------------------------------------------


async def profile_info(request: web.Request) -> web.Response:
    """The profile's name and key id and its paired doorbells' ids."""
    state = request.app[STATE]
    keys = state.keys()
    return _json(
        {
            "name": state.profile.info().get("name", "owner"),
            "key_id": keys.key_id,
            "devices": [d.device_id for d in state.profile.devices()],
        }
    )


async def doorbells(request: web.Request) -> web.Response:
    """Each paired doorbell: online, its health (cameras, storage), backup and relay state."""
    state = request.app[STATE]
    keys = state.keys()
    devices = state.profile.devices()
    rows = await asyncio.gather(*(_doorbell(state, d, keys) for d in devices))
    return _json({"doorbells": list(rows)})


async def _doorbell(state: ConsoleState, device: PinnedDevice, keys: KeyBundle) -> dict[str, Any]:
    row: dict[str, Any] = {
        "device_id": device.device_id,
        "url": device.url,
        "fingerprint": device.fingerprint,
        "relay_url": device.relay_url,
        "relay_key_pinned": device.relay_key_config is not None,
        "online": False,
    }

    async def fetch() -> None:
        async with device_connection(state, device, keys) as api:
            health, metrics, backup = await api.health(), await api.metrics(), await api.backup()
            cameras = await api.cameras()
        row.update(
            online=True,
            health=health,
            metrics=metrics,
            backup=backup,
            cameras=[
                {"name": c.name, "width": c.width, "height": c.height, "fps": c.fps}
                for c in cameras
            ],
        )

    try:
        await guarded(fetch(), f"device {device.device_id}", HEALTH_TIMEOUT_S)
    except DoorwardError as exc:
        row["error"] = str(exc)
    return row


async def discover(request: web.Request) -> web.Response:
    """Doorward devices answering on the LAN (zeroconf), and whether each is paired here."""
    state = request.app[STATE]
    looking = (
        browse(state.discover_s)
        if state.interfaces is None
        else browse(state.discover_s, interfaces=list(state.interfaces))
    )
    found = await guarded(looking, "the LAN", state.discover_s + 10)
    pinned = {d.device_id for d in state.profile.devices()}
    return _json(
        {
            "devices": [
                {
                    "device_id": d.device_id,
                    "name": d.name,
                    "address": f"{d.addresses[0] if d.addresses else '?'}:{d.port}",
                    "pairing": d.pairing,
                    "paired_here": d.device_id in pinned,
                }
                for d in found
            ]
        }
    )


async def pair(request: web.Request) -> web.Response:
    """Pair with the setup code or setup URI in ``{"setup": …}`` (the code path of
    ``doorward owner pair``); the code is never echoed back."""
    state = request.app[STATE]
    body = await read_body(request)
    setup = body.get("setup")
    if not isinstance(setup, str) or not setup.strip() or len(setup) > _MAX_SETUP_CHARS:
        raise BadInput("type the 8-digit setup code or paste the doorward://pair?… URI")
    state.keys()  # no keys yet: say so before using the code

    async def go() -> tuple[PinnedDevice, str | None]:
        uri = await pairing_uri(setup, discover_s=state.discover_s, interfaces=state.interfaces)
        return await pair_profile(state.profile, uri, url_of(uri))

    device, note = await guarded(go(), "the doorbell", CALL_TIMEOUT_S)
    return _json(
        {
            "device_id": device.device_id,
            "url": device.url,
            "fingerprint": device.fingerprint,
            "relay_note": note,
        }
    )


# -- requests and decisions ---------------------------------------------------------------------


async def requests(request: web.Request) -> web.Response:
    """Every request on the doorbell, pending ones first: who asks, why, the window, what the
    policy said, and for decided ones the decision."""
    state, device, keys = paired_device(request)
    now = int(time.time())

    async def go() -> list[Any]:
        async with device_connection(state, device, keys) as api:
            return await api.requests()

    infos = await guarded(go(), f"device {device.device_id}", CALL_TIMEOUT_S)
    rows = []
    for info in infos:
        rows.append(
            {
                "request_id": info.request_id,
                "status": info.status,
                "rule": info.rule,
                "reason": info.reason,
                "expires": info.expires_s,
                "received": info.received_s,
                "release_ids": list(info.release_ids),
                "policy": _verdict(info.status, info.rule),
                "detail": describe_request(info, now),
            }
        )
    rows.sort(key=lambda r: (r["status"] != "pending", -(r["received"] or 0)))
    return _json({"requests": rows})


def _verdict(status: str, rule: str | None) -> str:
    if status == "auto_declined":
        return f"declined by the policy (rule {rule})" if rule else "declined by the policy"
    return "the policy leaves this request to the owners"


async def segments(request: web.Request) -> web.Response:
    """The recorded segments in a request's camera and window (what could be released)."""
    state, device, keys = paired_device(request)
    request_id = request.match_info["request_id"]
    now = int(time.time())

    async def go() -> list[dict[str, Any]]:
        async with device_connection(state, device, keys) as api:
            info = await api.request(request_id)
            if info.token is None:
                raise BadInput(f"the device did not send request {request_id}'s token")
            asked = verify_request(info.token, min(now, info.expires_s - 1), strict_text=False)
            clips = await segments_in_window(api, asked)
        return [
            {
                "segment_id": s.segment_id,
                "clip_id": s.clip_id,
                "camera": s.camera,
                "index": s.index,
                "start": s.start_s,
                "duration": s.duration_s,
                "size": s.size,
            }
            for _, in_scope in clips
            for s in in_scope
        ]

    rows = await guarded(go(), f"device {device.device_id}", CALL_TIMEOUT_S)
    return _json({"segments": rows})


async def approve(request: web.Request) -> web.Response:
    """Release the chosen segments (``{"segments": [ids], "expires": "7d", "max_downloads": N}``)
    to the requester: the same checks and signed approval as ``doorward owner approve``."""
    state, device, keys = paired_device(request)
    request_id = request.match_info["request_id"]
    body = await read_body(request)
    wanted = body.get("segments")
    if not isinstance(wanted, list) or not wanted or not all(isinstance(w, str) for w in wanted):
        raise BadInput("choose at least one segment to release")
    try:
        expires_s = parse_duration(str(body.get("expires", "7d")))
    except argparse.ArgumentTypeError as exc:
        raise BadInput(str(exc)) from None
    max_downloads = body.get("max_downloads", 1)
    if not isinstance(max_downloads, int) or isinstance(max_downloads, bool):
        raise BadInput(f"the download count must be a whole number, got {max_downloads!r}")
    try:
        terms = ApprovalTerms(expires_s, max_downloads)
    except DoorwardError as exc:
        raise BadInput(str(exc)) from None
    now = int(time.time())

    async def go() -> Any:
        with tempfile.TemporaryDirectory(prefix="doorward-approve-") as workdir:
            async with (
                state.audit_lock(device.device_id),
                device_connection(state, device, keys) as api,
            ):
                prepared = await prepare_approval(
                    api,
                    state.profile,
                    device,
                    keys,
                    request_id,
                    wanted,
                    workdir=Path(workdir),
                    now=now,
                )
                return await post_approval(api, prepared, device, keys, terms, now=now)

    release = await guarded(go(), f"device {device.device_id}", CALL_TIMEOUT_S)
    return _json(
        {
            "release_id": release.release_id,
            "request_id": release.request_id,
            "segment_ids": list(release.segment_ids),
            "expires": release.expires_s,
            "max_downloads": release.max_downloads,
        }
    )


async def decline(request: web.Request) -> web.Response:
    """Refuse a request with ``{"reason": …}`` (the requester sees the reason)."""
    state, device, keys = paired_device(request)
    request_id = request.match_info["request_id"]
    body = await read_body(request)
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip() or len(reason) > _MAX_REASON_CHARS:
        raise BadInput(
            f"give a reason for declining (1 to {_MAX_REASON_CHARS} characters); "
            "the requester sees it"
        )

    async def go() -> Any:
        async with device_connection(state, device, keys) as api:
            return await decline_request(
                api, device, keys, request_id, reason.strip(), now=int(time.time())
            )

    info = await guarded(go(), f"device {device.device_id}", CALL_TIMEOUT_S)
    return _json({"request_id": info.request_id, "status": info.status, "reason": info.reason})


async def revoke(request: web.Request) -> web.Response:
    """Withdraw a release the requester has not downloaded yet (``doorward owner revoke``)."""
    state, device, keys = paired_device(request)
    release_id = request.match_info["release_id"]

    async def go() -> Any:
        async with device_connection(state, device, keys) as api:
            return await revoke_release(api, device, keys, release_id, now=int(time.time()))

    release = await guarded(go(), f"device {device.device_id}", CALL_TIMEOUT_S)
    return _json({"release_id": release.release_id, "revoked": release.revoked})


async def thumbnail(request: web.Request) -> web.Response:
    """A segment's first picture as a small JPEG, decrypted and scaled here (not on the device)."""
    state, device, keys = paired_device(request)
    segment_id = request.match_info["segment_id"]
    clip_id, dot, _ = segment_id.rpartition(".")
    if not dot or not clip_id:
        raise BadInput(f"segment ids look like CLIP_ID.000001, got {segment_id[:64]!r}")
    return await _thumbnail(state, device, keys, clip_id, segment_id)


async def _thumbnail(
    state: ConsoleState,
    device: PinnedDevice,
    keys: KeyBundle,
    clip_id: str,
    segment_id: str | None,
) -> web.Response:
    """The thumbnail of ``segment_id`` of ``clip_id`` (None: its first segment)."""

    async def go() -> bytes:
        async with device_connection(state, device, keys) as api:
            clip = await api.clip(clip_id)
            sizes = {s.segment_id: s.size for s in clip.segments}
            wanted = segment_id or next(iter(sizes), None)
            if wanted is None or wanted not in sizes:
                raise BadInput(f"clip {clip_id} has no segment {wanted or 'yet'}")
            buffer = io.BytesIO()
            await api.download_segment(wanted, buffer, max_bytes=sizes[wanted])
        sealed = buffer.getvalue()
        return await asyncio.to_thread(
            lambda: thumbnail_jpeg(age.decrypt_bytes([keys.age_identity], sealed))
        )

    jpeg = await guarded(go(), f"device {device.device_id}", CALL_TIMEOUT_S)
    return web.Response(body=jpeg, content_type="image/jpeg")


# -- clips --------------------------------------------------------------------------------------


async def clips(request: web.Request) -> web.Response:
    """One page of clips, oldest first: ``?camera=NAME`` and ``?day=YYYY-MM-DD`` (UTC) filter,
    ``?after=CLIP_ID`` continues; with the doorbell's camera names."""
    state, device, keys = paired_device(request)
    camera = request.query.get("camera") or None
    day = request.query.get("day") or None
    after = request.query.get("after") or None
    start_s = end_s = None
    if day is not None:
        try:
            start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise BadInput(f"day must be YYYY-MM-DD, got {day[:32]!r}") from None
        start_s = start.timestamp()
        end_s = start_s + 86400

    async def go() -> tuple[Any, list[str]]:
        async with device_connection(state, device, keys) as api:
            cameras = [c.name for c in await api.cameras()]
            page = await api.clips(
                camera=camera, start_s=start_s, end_s=end_s, limit=CLIPS_PAGE, after=after
            )
            return page, cameras

    page, cameras = await guarded(go(), f"device {device.device_id}", CALL_TIMEOUT_S)
    return _json(
        {
            "cameras": cameras,
            "next": page.next,
            "clips": [
                {
                    "clip_id": c.clip_id,
                    "camera": c.camera,
                    "start": c.start_s,
                    "end": c.end_s,
                    "segments": c.segment_count,
                    "bytes": c.bytes,
                    "finished": c.finished,
                }
                for c in page.clips
            ],
        }
    )


async def clip_thumbnail(request: web.Request) -> web.Response:
    """The first picture of a clip, decrypted and scaled here."""
    state, device, keys = paired_device(request)
    return await _thumbnail(state, device, keys, request.match_info["clip_id"], None)


async def clip_mp4(request: web.Request) -> web.Response:
    """A clip as one MP4 file (segments decrypted here and remuxed, as ``owner view --out
    CLIP.mp4``), offered as a download."""
    state, device, keys = paired_device(request)
    clip_id = request.match_info["clip_id"]
    mp4 = await clip_as_mp4(state, device, keys, clip_id, fragmented=False)
    safe = "".join(ch for ch in clip_id if ch.isalnum() or ch in "-_.")[:80] or "clip"
    return web.Response(
        body=mp4,
        content_type="video/mp4",
        headers={"Content-Disposition": f'attachment; filename="{safe}.mp4"'},
    )


async def clip_as_mp4(
    state: ConsoleState, device: PinnedDevice, keys: KeyBundle, clip_id: str, *, fragmented: bool
) -> bytes:
    """Clip ``clip_id``'s segments downloaded, decrypted here and remuxed into one MP4."""

    async def go() -> bytes:
        async with device_connection(state, device, keys) as api:
            clip = await api.clip(clip_id)
            if not clip.segments:
                raise BadInput(f"clip {clip_id} has no segments yet")
            video = await clip_plaintext(api, clip, [keys.age_identity])
        out = io.BytesIO()
        await asyncio.to_thread(remux_to_mp4, video, out, fragmented=fragmented)
        return out.getvalue()

    return await guarded(go(), f"device {device.device_id}", CALL_TIMEOUT_S)


# -- audit --------------------------------------------------------------------------------------


async def audit(request: web.Request) -> web.Response:
    """Verify the doorbell's log against the last accepted checkpoint (as ``doorward owner
    audit``), then one page of entries, newest first (``?page=N`` from 0), each checked to be in
    the verified log by an inclusion proof."""
    state, device, keys = paired_device(request)
    try:
        page = int(request.query.get("page", "0"))
    except ValueError:
        raise BadInput("page must be a whole number from 0") from None
    if page < 0:
        raise BadInput("page must be a whole number from 0")
    verifier = audit_verifier(state.profile, device)
    per_page = state.audit_page

    async def go() -> dict[str, Any]:
        async with (
            state.audit_lock(device.device_id),
            device_connection(state, device, keys) as api,
        ):
            report = await check_audit(
                api, verifier, signing_key=keys.signing_key, now=int(time.time())
            )
            checkpoint_text = verifier.last_checkpoint_text
            assert checkpoint_text is not None  # check_audit stored it
            end = max(report.size - page * per_page, 0)
            start = max(end - per_page, 0)
            entries = []
            if end > start:
                served = await api.audit_entries(start, end)
                for offset, leaf in enumerate(served.leaves):
                    index = start + offset
                    proof = await api.inclusion_proof(index, report.size)
                    verifier.verify_inclusion(leaf, index, proof, checkpoint_text)
                    body = json.loads(leaf)
                    entries.append({"index": index, "text": describe_entry(body), "entry": body})
        entries.reverse()
        return {
            "verified": True,
            "size": report.size,
            "previous_size": report.previous_size,
            "page": page,
            "pages": max((report.size + per_page - 1) // per_page, 1),
            "entries": entries,
            "cosigners": [
                {"key_id": c.key_id, "name": c.name, "size": c.size, "time": c.time_s}
                for c in report.cosigners
            ],
        }

    try:
        result = await guarded(go(), f"device {device.device_id}", CALL_TIMEOUT_S)
    except DoorwardError as exc:
        # A log that fails verification is an answer to show, not a broken page.
        return _json({"verified": False, "problem": str(exc), "entries": []})
    return _json(result)


# -- helpers ------------------------------------------------------------------------------------


def paired_device(request: web.Request) -> tuple[ConsoleState, PinnedDevice, KeyBundle]:
    """The state, the paired doorbell named by the path's ``device_id`` and the profile's keys."""
    state = request.app[STATE]
    keys = state.keys()
    device_id = request.match_info["device_id"]
    paired = {d.device_id: d for d in state.profile.devices()}
    if device_id not in paired:
        raise UnknownDoorbell(
            f"doorbell {device_id[:64]!r} is not paired with this profile; pair it on the "
            "Doorbells page"
        )
    return state, paired[device_id], keys


@contextlib.asynccontextmanager
async def device_connection(
    state: ConsoleState,
    device: PinnedDevice,
    keys: KeyBundle,
    *,
    events: bool = False,
    lan_only: str | None = None,
) -> AsyncIterator[DoorwardClient]:
    """A client for ``device`` over the same transport the owner commands use; ``events``: it
    will read the event stream (through the relay that needs the owner's age identity);
    ``lan_only``: what needs the LAN (a relay is refused, naming it)."""
    connection = DeviceConnection(
        device,
        keys.signing_key,
        via=state.via,
        account=state.profile.relay_account(),
        login_hint=f"doorward {state.profile.kind} relay login --password-file FILE",
        lan_only=lan_only,
        identity=keys.age_identity if events else None,
    )
    async with connection as api:
        yield api


async def read_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body (else BadInput)."""
    try:
        body = await request.json()
    except ValueError:
        raise BadInput("the request body must be a JSON object") from None
    if not isinstance(body, dict):
        raise BadInput("the request body must be a JSON object")
    return body


def _json(data: dict[str, Any]) -> web.Response:
    return web.json_response(data)


def _error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)
