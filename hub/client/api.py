"""An async Python client for a Doorward device's HTTPS API.

Common case (an owner's phone, after pairing)::

    async with DoorwardClient(url, fingerprint=pin, device_id=dev, key=keys.signing_key) as api:
        for clip in (await api.clips(camera="front")).clips:
            await api.download_segment(clip.segment_ids[0], Path("seg.age"))

With ``relay=`` (:class:`hub.relay.client.RelayTransport`) the same signed requests go through the
MQTT relay, sealed to the device's relay key; ``base_url`` is then only what is signed. Downloads
come back in chunks through the relay, or from the backup store when the device redirects to it.

Every connection pins the device's TLS key by SPKI fingerprint (``crypto.tls.client_context``):
a device with another key is refused during the handshake, before any request is written. Every
request is signed (RFC 9421, ``hub.wire.httpsig``) with a fresh nonce. Errors from the device raise
:class:`ApiError` carrying its stable ``code``; every network wait has a timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlencode

import aiohttp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from yarl import URL

from consent.owner import Approval
from crypto import age
from crypto.errors import DoorwardError
from crypto.keys import KeyBundle, key_id
from crypto.pairing import DeviceKeys, PhonePairing
from crypto.setup_code import PairingURI
from crypto.signed import b64url, b64url_decode
from crypto.tls import client_context
from hub.client.records import (
    AuditEntries,
    Camera,
    Clip,
    ClipPage,
    CosignatureInfo,
    EventMessage,
    LiveLink,
    LiveStats,
    OwnerInfo,
    ReleaseInfo,
    ReleaseLink,
    RequestInfo,
    clip_of,
    cosignature_of,
    owner_of,
    release_link_of,
    release_of,
    request_of,
    segment_of,
)
from hub.wire.events import CLOSE_OWNER_REMOVED, CLOSE_TOO_SLOW, EVENT_KINDS
from hub.wire.httpsig import RequestSigner

if TYPE_CHECKING:  # aiomqtt loads only for a client that uses the relay
    from hub.client.talk import TalkSound
    from hub.relay.client import RelayResponse, RelayStream, RelayTransport

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "ApiError",
    "DoorwardClient",
    "DownloadTooLarge",
    "EventStreamDropped",
    "pair",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 30.0
_CHUNK_BYTES = 256 * 1024
_MAX_AGE_HEADER_BYTES = 64 * 1024  # as the device's GET /segments/{id}/header


class EventStreamDropped(DoorwardError):
    """The device dropped this event stream because the client fell behind: reconnect, then
    re-list clips and requests to catch up on what was missed."""


class DownloadTooLarge(DoorwardError):
    """The device sent (or announced) more bytes than the caller's limit: the download stopped
    there and a partial file written by the client was removed. Raise the limit only for a
    release you expect to be that large."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the device sent more than {limit} bytes, the limit for this download")
        self.limit = limit


class LinkFailed(DoorwardError):
    """A presigned URL for a release did not give the bundle (the caller falls back)."""


class ApiError(DoorwardError):
    """The device refused a request: ``status`` (HTTP), ``code`` (stable) and its message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{message} ({code}, HTTP {status})")
        self.status = status
        self.code = code
        self.detail = message


class DoorwardClient:
    """A signed, pinned session with one device, as one key (an owner's or a requester's).

    Every method raises :class:`ApiError` when the device refuses; besides the codes each method
    names, any call may get ``unsigned``, ``bad_signature``, ``stale`` or ``replayed`` (401),
    ``unknown_key`` (403: not a current owner, or not this request's requester), and requester
    calls ``rate_limited`` (429). An id that is not a plain path segment raises ``ValueError``
    before anything is sent; a device with another TLS key, or none answering within
    ``timeout_s`` (whole request), raises aiohttp's ``ClientError`` or ``TimeoutError``.
    """

    def __init__(
        self,
        base_url: str,
        *,
        fingerprint: str,
        device_id: str,
        key: Ed25519PrivateKey,
        clock: Callable[[], float] = time.time,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        relay: RelayTransport | None = None,
    ) -> None:
        self._base = URL(base_url)
        self._relay = relay
        self._key, self._device_id, self._clock = key, device_id, clock
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=min(10.0, timeout_s))
        self._ssl = client_context(fingerprint)
        self._signer = RequestSigner(
            key, key_id=key_id(key.public_key()), device_id=device_id, now_s=clock
        )
        self._session: aiohttp.ClientSession | None = None

    @property
    def key_id(self) -> str:
        """The RFC 7638 thumbprint of this client's signing key, as the device names it."""
        return self._signer.key_id

    async def __aenter__(self) -> DoorwardClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session; the client opens a new one if it is used again."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- cameras, clips, segments ----------------------------------------------------------

    async def cameras(self) -> list[Camera]:
        """The device's cameras (name, size in pixels, frames per second, codec), as configured."""
        body = await self._json("GET", "/cameras")
        return [
            Camera(c["name"], c["width"], c["height"], c["fps"], c["codec"])
            for c in body["cameras"]
        ]

    async def clips(
        self,
        *,
        camera: str | None = None,
        start_s: float | None = None,
        end_s: float | None = None,
        limit: int = 100,
        after: str | None = None,
    ) -> ClipPage:
        """Up to ``limit`` (1-1000) clips after the clip id ``after``, oldest first, that overlap
        [``start_s``, ``end_s``] (seconds since 1970), on ``camera`` only if given; segments are not
        listed (see :meth:`clip`). Raises ApiError ``bad_request`` for an out-of-range value."""
        query = {"camera": camera, "start": start_s, "end": end_s, "limit": limit, "after": after}
        body = await self._json("GET", "/clips", query=query)
        return ClipPage(tuple(clip_of(c) for c in body["clips"]), body["next"])

    async def clip(self, clip_id: str) -> Clip:
        """One clip with its segments in order; raises ApiError ``not_found`` for an unknown id."""
        body = await self._json("GET", f"/clips/{_seg(clip_id)}")
        return clip_of(body, tuple(segment_of(s) for s in body["segment_list"]))

    async def delete_clip(self, clip_id: str) -> None:
        """Delete a clip and its stored segments (audited); raises ApiError ``not_found``, or
        ``clip_held`` (409) while a release still holds it."""
        await self._json("DELETE", f"/clips/{_seg(clip_id)}")

    async def clip_manifest(self, clip_id: str) -> bytes:
        """A clip's manifest JSON, byte for byte as stored; raises ApiError ``not_found``."""
        return await self._bytes("GET", f"/clips/{_seg(clip_id)}/manifest")

    async def segment_header(self, segment_id: str) -> bytes:
        """The age header of a segment's stored file (at most 64 KiB), to re-wrap for a requester;
        raises ApiError ``not_found`` if the segment is unknown or its header unreadable."""
        return await self._bytes("GET", f"/segments/{_seg(segment_id)}/header")

    async def download_segment(
        self,
        segment_id: str,
        dst: Path | IO[bytes],
        *,
        max_bytes: int | None = None,
        offsite: bool | None = None,
    ) -> int:
        """Stream the stored age file of a segment to ``dst``; returns its size in bytes. A Path is
        written as ``<name>.part`` and renamed only once complete. Raises ApiError ``not_found``,
        or DoorwardError once the device sends more than ``max_bytes`` (if given).

        With ``offsite`` (the default over the relay, when ``dst`` is a path or a seekable file),
        the device may send the client to its backup store instead (a presigned URL): what the
        store gives is checked against the payload hash the device states, and on any failure the
        segment comes from the device after all."""
        path = f"/segments/{_seg(segment_id)}"
        if offsite is None:
            offsite = self._relay is not None
        if not offsite or not _rewindable(dst):
            return await self._download(path, dst, max_bytes=max_bytes)
        redirect = await self._fetch(path, dst, max_bytes=max_bytes, prefer_offsite=True)
        if isinstance(redirect, int):
            return redirect
        url, payload_sha256 = redirect
        start = _position(dst)
        try:
            return await self._download_url(
                url, dst, max_bytes=max_bytes, payload_sha256=payload_sha256
            )
        except DownloadTooLarge:
            raise
        except (aiohttp.ClientError, TimeoutError, LinkFailed) as exc:
            logger.warning(
                "segment.link_failed segment_id=%s error=%s",
                segment_id,
                exc if isinstance(exc, LinkFailed) else type(exc).__name__,
            )
        _rewind(dst, start)
        return await self._download(path, dst, max_bytes=max_bytes)

    # -- policy, requests, decisions -------------------------------------------------------

    async def policy(self) -> dict[str, Any]:
        """The consent policy in force as JSON: the last owner-signed one, else the default."""
        return dict((await self._json("GET", "/policy"))["policy"])

    async def set_policy(self, document: str) -> dict[str, Any]:
        """Install an owner-signed policy document (``consent.policy_doc.sign_policy``)."""
        return dict((await self._json("PUT", "/policy", body={"document": document}))["policy"])

    async def requests(self, status: str | None = None) -> list[RequestInfo]:
        """Requests stored on the device, each with its signed token for the phone to verify;
        ``status`` filters them (``pending``, ``approved``, ``declined``, ``auto_declined`` or
        ``expired``; anything else raises ApiError ``bad_request``)."""
        body = await self._json("GET", "/requests", query={"status": status})
        return [request_of(r) for r in body["requests"]]

    async def request(self, request_id: str) -> RequestInfo:
        """One stored request with its signed token; raises ApiError ``not_found``."""
        return request_of(await self._json("GET", f"/requests/{_seg(request_id)}"))

    async def consent(self, request_id: str, approval: Approval) -> ReleaseInfo:
        """Post a consent token and release manifest built by ``consent.owner.approve``; returns the
        release it created. Raises ApiError ``request_mismatch`` (the request is not pending, or not
        the token's), ``manifest_mismatch``, ``header_invalid``, ``header_reused`` or
        ``segment_missing`` (the manifest does not fit the stored footage), or a token code."""
        body = {"token": approval.token, "manifest": b64url(approval.manifest)}
        return release_of(
            await self._json("POST", f"/requests/{_seg(request_id)}/consent", body=body)
        )

    async def decline(self, request_id: str, token: str) -> RequestInfo:
        """Post an owner's signed refusal (``consent.owner.decline``); returns the request, now
        declined. Raises ApiError ``request_mismatch`` (409) if the request is unknown, no longer
        pending or not the token's, or a token code (``token_invalid``, ``expired``, ...)."""
        path = f"/requests/{_seg(request_id)}/decline"
        return request_of(await self._json("POST", path, body={"token": token}))

    async def revoke(self, release_id: str, token: str) -> ReleaseInfo:
        """Post an owner's signed revocation (``consent.owner.revoke``); returns the release, now
        revoked. Raises ApiError ``revocation_too_late`` once it was downloaded,
        ``release_revoked``, ``not_found`` or a token code (``token_invalid``, ``expired``, ...)."""
        path = f"/releases/{_seg(release_id)}/revoke"
        return release_of(await self._json("POST", path, body={"token": token}))

    # -- owners ----------------------------------------------------------------------------

    async def owners(self, *, include_removed: bool = False) -> list[OwnerInfo]:
        """The device's owners, oldest first; removed ones too when ``include_removed``."""
        query = {"removed": "true" if include_removed else None}
        body = await self._json("GET", "/owners", query=query)
        return [owner_of(o) for o in body["owners"]]

    async def remove_owner(self, owner_key_id: str) -> OwnerInfo:
        """Remove an owner (an admin may remove anyone, an owner only itself); returns its record
        with ``removed_s`` set. Raises ApiError ``forbidden`` or ``not_found``."""
        return owner_of(await self._json("DELETE", f"/owners/{_seg(owner_key_id)}"))

    async def approve_owner(self, phone_key_id: str) -> None:
        """As an admin, let the phone with this key id pair during the next few minutes."""
        await self._json("POST", "/owners/approve", body={"key_id": phone_key_id})

    # -- audit -----------------------------------------------------------------------------

    async def audit_entries(self, start: int = 0, end: int | None = None) -> AuditEntries:
        """Audit log leaves ``[start, end)`` and the size now; at most 10,000 per call, else
        ApiError ``bad_request`` (without ``end``, one page of up to 10,000 from ``start``)."""
        body = await self._json("GET", "/audit/entries", query={"start": start, "end": end})
        leaves = tuple(e["leaf"].encode() for e in body["entries"])
        return AuditEntries(body["size"], leaves, start)

    async def audit_checkpoint(self) -> str:
        """The device's signed checkpoint of its audit log now (a C2SP tlog-checkpoint note)."""
        return (await self._bytes("GET", "/audit/checkpoint")).decode()

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The RFC 9162 inclusion proof (hashes) of leaf ``index`` in the tree of ``size``
        leaves; an index or size out of range raises ApiError ``bad_request``."""
        body = await self._json(
            "GET", "/audit/proof/inclusion", query={"index": index, "size": size}
        )
        return [b64url_decode(p) for p in body["proof"]]

    async def consistency_proof(self, old: int, new: int) -> list[bytes]:
        """The RFC 9162 consistency proof (hashes) from tree size ``old`` to ``new``; sizes out of
        range raise ApiError ``bad_request``."""
        body = await self._json("GET", "/audit/proof/consistency", query={"old": old, "new": new})
        return [b64url_decode(p) for p in body["proof"]]

    async def audit_cosignatures(self) -> list[CosignatureInfo]:
        """Each current owner's latest cosigned checkpoint (C2SP tlog-cosignature), largest first;
        a note carries the lines of every owner who cosigned that same checkpoint."""
        body = await self._json("GET", "/audit/cosignatures")
        return [cosignature_of(c) for c in body["cosignatures"]]

    async def post_cosignature(self, checkpoint: str) -> CosignatureInfo:
        """Give the device this owner's cosignature: ``checkpoint`` is a checkpoint note it signed
        with this owner's cosignature line added (``consent.witness.cosign``)."""
        body = await self._json("POST", "/audit/cosignatures", body={"checkpoint": checkpoint})
        return cosignature_of(body)

    # -- live view (owners) ----------------------------------------------------------------

    async def live_offer(self, sdp: str, camera: str | None = None) -> str:
        """Send a WebRTC SDP offer to ``POST /live/offer`` (default camera: the device's first);
        returns the device's answer SDP. For apps with their own WebRTC stack."""
        body: dict[str, Any] = {"sdp": sdp}
        if camera is not None:
            body["camera"] = camera
        answer = await self._json("POST", "/live/offer", body=body)
        return str(answer["sdp"])

    async def live(
        self,
        camera: str | None = None,
        *,
        seconds: float | None = None,
        on_frame: Callable[[Any], None] | None = None,
        on_audio: Callable[[Any], None] | None = None,
        out: Path | None = None,
        stop: asyncio.Event | None = None,
        codec: str | None = None,
        connect_timeout_s: float = 20.0,
        talk: TalkSound | None = None,
        on_talk_start: Callable[[float], None] | None = None,
    ) -> LiveStats:
        """Watch live view over WebRTC (aiortc) until ``seconds`` pass, ``stop`` (an
        ``asyncio.Event``) is set or the device hangs up. ``on_frame`` gets each decoded
        ``av.VideoFrame``, ``on_audio`` each ``av.AudioFrame`` when the camera has sound; ``out``
        records both to MP4; ``codec`` (``"video/VP8"`` or ``"video/H264"``) limits what is
        offered. ``talk`` (``hub.client.talk.TalkSound``: a WAV file or a tone) is played on the
        doorbell's speaker; while someone else plays there the call fails with :class:`ApiError`
        409 ``speaker_busy``, naming who. ``on_talk_start`` gets the ``time.monotonic()`` at
        which the first 20 ms of it was sent."""
        from hub.client.live import receive_live  # aiortc loads slowly: only for live view

        heard = 0

        def count_audio(frame: Any) -> None:
            nonlocal heard
            heard += 1
            if on_audio is not None:
                on_audio(frame)

        frames = await receive_live(
            lambda sdp: self.live_offer(sdp, camera),
            on_frame=on_frame,
            on_audio=count_audio,
            seconds=seconds,
            out=out,
            stop=stop,
            codec=codec,
            connect_timeout_s=connect_timeout_s,
            talk=talk,
            on_talk_start=on_talk_start,
        )
        return LiveStats(frames, heard)

    async def live_link(self, camera: str | None = None, *, ttl_s: int = 300) -> LiveLink:
        """Mint a single-use link to the live-view page (signed by this client's owner key,
        valid ``ttl_s`` seconds, at most ``hub.wire.live_link.MAX_LINK_TTL_S``) and register it."""
        from hub.wire.live_link import mint_link_token

        if camera is None:
            cameras = await self.cameras()
            if not cameras:
                raise ApiError(404, "not_found", "this device has no camera to watch")
            camera = cameras[0].name
        token = mint_link_token(
            self._key,
            device_id=self._device_id,
            camera=camera,
            now_s=int(self._clock()),
            ttl_s=ttl_s,
        )
        body = await self._json("POST", "/live/link", body={"token": token})
        return LiveLink(str(body["url"]), int(body["expires"]))

    # -- health, metrics, events -----------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """The device's health: ``status`` (``"ok"``), ``device_id``, ``name``, camera and owner
        counts, ``uptime_s``."""
        return dict(await self._json("GET", "/health"))

    async def metrics(self) -> dict[str, Any]:
        """Frame, clip and byte counters (totals and per camera), stored bytes, and the device
        process's CPU seconds, 1-minute load and peak RSS in KiB."""
        return dict(await self._json("GET", "/metrics"))

    async def backup(self) -> dict[str, Any]:
        """The off-site backup's state: ``enabled``, and when it is, ``target``, the queue
        (``queued_objects``, ``queued_bytes``, ``lag_s``), ``uploaded_*``, ``skipped_objects``,
        ``last_success`` and ``last_error`` (see ``GET /backup`` in docs/openapi.yaml)."""
        return dict(await self._json("GET", "/backup"))

    async def events(self, kinds: tuple[str, ...] = ()) -> AsyncIterator[EventMessage]:
        """Device events as they happen, until the device closes the stream; raises
        :class:`EventStreamDropped` if it dropped this client for falling behind, and ApiError
        ``unknown_key`` (403) once this key is removed as an owner.

        Over the relay (``relay=`` with the owner's age identity) the same events come through
        the broker, decrypted by the transport; ``kinds`` is applied here (an unknown kind raises
        ValueError); a lost broker connection is bridged by the transport (it logs in again and
        what was published meanwhile arrives), and the stream ends when the transport is closed.
        A removed owner's relay stream just goes quiet."""
        if self._relay is not None:
            async for event in self._relayed_events(kinds):
                yield event
            return
        query = {"kinds": ",".join(kinds) if kinds else None}
        url = self._url("/events", query)
        headers = self._signer.headers("GET", str(url), b"")
        session = self._ensure_session()
        try:
            socket = await session.ws_connect(url, headers=headers, ssl=self._ssl, heartbeat=30.0)
        except aiohttp.WSServerHandshakeError as exc:
            raise ApiError(exc.status, "websocket_refused", exc.message) from exc
        async with socket:
            async for message in socket:
                if message.type is not aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(message.data)
                yield EventMessage(data["seq"], data["kind"], data["time"], data["data"])
        if socket.close_code == CLOSE_OWNER_REMOVED:
            raise ApiError(
                403,
                "unknown_key",
                "this key was removed as an owner of the device; its event stream is closed",
            )
        if socket.close_code == CLOSE_TOO_SLOW:
            raise EventStreamDropped(
                "the device dropped the event stream because this client fell behind; "
                "reconnect and re-list what changed"
            )

    async def _relayed_events(self, kinds: tuple[str, ...]) -> AsyncIterator[EventMessage]:
        assert self._relay is not None
        unknown = sorted(set(kinds) - EVENT_KINDS)
        if unknown:
            raise ValueError(
                f"kinds must be among {', '.join(sorted(EVENT_KINDS))}; "
                f"unknown: {', '.join(k[:32] for k in unknown[:5])}"
            )
        async for event in self._relay.events():
            if not kinds or event.kind in kinds:
                yield EventMessage(event.seq, event.kind, event.time_s, event.data)

    # -- requester -------------------------------------------------------------------------

    async def submit_request(self, token: str) -> RequestInfo:
        """Send a signed request (``consent.requests.sign_request``); raises ApiError with code
        ``policy_refused`` (and the rule in its message) if the owner's policy declines it."""
        body = await self._json(
            "POST", "/requests", raw=token.encode("ascii"), content_type="application/jose"
        )
        return request_of(body)

    async def request_status(self, request_id: str) -> RequestInfo:
        """As the requester who sent it: a request's status, rule, reason and release ids. Raises
        ApiError ``not_found`` for an unknown id, ``unknown_key`` when signed by another key."""
        return request_of(await self._json("GET", f"/requests/{_seg(request_id)}/status"))

    async def fetch_release(
        self,
        release_id: str,
        dst: Path | IO[bytes],
        *,
        max_bytes: int | None = None,
        offsite: bool = True,
    ) -> int:
        """Stream a release bundle (a tar) to ``dst``; returns its size in bytes. Each call counts
        as one download. Raises ApiError ``not_found``, ``release_revoked``, ``expired`` or
        ``downloads_exhausted`` (410), and DownloadTooLarge past ``max_bytes`` (a hostile device
        or store could otherwise fill the disk): then at most ``max_bytes`` were written to ``dst``.

        With ``offsite`` (and ``dst`` a path or a seekable file), a bundle the device has put in
        its off-site store is fetched from there with the presigned URL the device gives
        (:meth:`release_link`); if that URL fails, from the device, for the same download. The
        store is not pinned: the bundle is checked end to end afterwards
        (``consent.requester.open_bundle``), wherever it came from."""
        path = f"/releases/{_seg(release_id)}"
        if not offsite or not _rewindable(dst):
            return await self._download(path, dst, max_bytes=max_bytes)
        try:
            link = await self.release_link(release_id)
        except ApiError as exc:
            # not_offsite (nothing counted), or a device without the route, or no such release:
            # the direct download answers (and refuses) as ever.
            if exc.status not in (404, 409):
                raise
            return await self._download(path, dst, max_bytes=max_bytes)
        start = _position(dst)
        try:
            return await self._download_url(link.url, dst, max_bytes=max_bytes)
        except DownloadTooLarge:
            raise
        except (aiohttp.ClientError, TimeoutError, LinkFailed) as exc:
            logger.warning(
                "release.link_failed release_id=%s link=%s error=%s",
                release_id,
                link.link_id,
                exc if isinstance(exc, LinkFailed) else type(exc).__name__,
            )
        _rewind(dst, start)
        return await self._download(path, dst, max_bytes=max_bytes, query={"link": link.link_id})

    async def relay_key_config(self) -> bytes:
        """The device's relay key configuration (RFC 9458 §3), to keep in the profile; raises
        ApiError ``not_found`` if the device has none."""
        body = await self._json("GET", "/relay/key-config")
        return b64url_decode(str(body["key_config"]))

    async def relay_info(self) -> tuple[bytes, str | None]:
        """The device's relay key configuration and the relay URL it gives clients (None when
        ``[relay]`` is not configured); raises ApiError ``not_found`` if it has no relay key."""
        body = await self._json("GET", "/relay/key-config")
        url = body.get("relay_url")
        return b64url_decode(str(body["key_config"])), str(url) if url else None

    async def release_link(self, release_id: str) -> ReleaseLink:
        """A presigned URL for a release bundle in the device's off-site store; counts one
        download (a later ``GET /releases/ID?link=LINK_ID`` serves it once if the URL fails).
        Raises ApiError ``not_offsite`` (409; nothing counted) and those of
        :meth:`fetch_release`."""
        return release_link_of(await self._json("GET", f"/releases/{_seg(release_id)}/link"))

    # -- transport -------------------------------------------------------------------------

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    def _url(self, path: str, query: Mapping[str, Any] | None = None) -> URL:
        params = {k: str(v) for k, v in (query or {}).items() if v is not None}
        text = str(self._base.with_path(path, encoded=True))
        if params:
            text += "?" + urlencode(params)
        return URL(text, encoded=True)

    async def _send(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
        stream: bool = False,
        prefer: str | None = None,
    ) -> Any:
        url = self._url(path, query)
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        headers = self._signer.headers(method, str(url), data)
        if data:
            headers["Content-Type"] = content_type
        if prefer is not None:
            headers["Prefer"] = prefer
        response: aiohttp.ClientResponse | RelayResponse | RelayStream
        if self._relay is not None and stream:
            response = await self._relay.stream(method, str(url), headers, data)
        elif self._relay is not None:
            response = await self._relay.request(method, str(url), headers, data)
        else:
            session = self._ensure_session()
            response = await session.request(
                method, url, data=data, headers=headers, ssl=self._ssl, allow_redirects=False
            )
        if response.status >= 400:
            try:
                error = (await response.json(content_type=None))["error"]
                code, message = str(error["code"]), str(error["message"])
            # RecursionError: a body nested deeper than the parser's stack (a hostile device).
            except (ValueError, KeyError, TypeError, RecursionError, aiohttp.ContentTypeError):
                code, message = "http_error", response.reason or "request failed"
            finally:
                response.release()
            raise ApiError(response.status, code, message)
        return response

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._send(method, path, **kwargs)
        async with response:
            return await response.json()

    async def _bytes(self, method: str, path: str, **kwargs: Any) -> bytes:
        response = await self._send(method, path, **kwargs)
        async with response:
            return await response.read()

    async def _download(
        self,
        path: str,
        dst: Path | IO[bytes],
        *,
        max_bytes: int | None = None,
        query: Mapping[str, Any] | None = None,
    ) -> int:
        result = await self._fetch(path, dst, max_bytes=max_bytes, query=query)
        assert isinstance(result, int)  # no redirect without prefer_offsite
        return result

    async def _fetch(
        self,
        path: str,
        dst: Path | IO[bytes],
        *,
        max_bytes: int | None = None,
        query: Mapping[str, Any] | None = None,
        prefer_offsite: bool = False,
    ) -> int | tuple[str, str]:
        """The size written to ``dst``; with ``prefer_offsite``, (url, payload hash) instead when
        the device sends the client to its backup store."""
        prefer = "offsite" if prefer_offsite else None
        response = await self._send("GET", path, query=query, stream=True, prefer=prefer)
        async with response:
            if response.status == 303 and prefer_offsite:
                location = response.headers.get("Location", "")
                digest = response.headers.get("X-Payload-SHA256", "")
                if not location.startswith(("https://", "http://")) or not _is_sha256(digest):
                    raise ApiError(
                        502,
                        "bad_redirect",
                        "the device sent the download elsewhere without a usable URL and "
                        "payload hash; retry with offsite=False",
                    )
                return location, digest
            if response.status != 200:
                raise ApiError(
                    response.status, "http_error", f"unexpected HTTP {response.status} for {path}"
                )
            return await _save(response, dst, max_bytes)

    async def _download_url(
        self,
        url: str,
        dst: Path | IO[bytes],
        *,
        max_bytes: int | None,
        payload_sha256: str | None = None,
    ) -> int:
        """GET a presigned URL: a plain request (no signature, no device pin, system CAs); with
        ``payload_sha256``, what comes must be an age file with that payload (LinkFailed if not)."""
        async with (
            aiohttp.ClientSession(timeout=self._timeout) as session,
            session.get(URL(url, encoded=True), allow_redirects=False) as response,
        ):
            if response.status != 200:
                raise LinkFailed(f"the store answered HTTP {response.status}")
            check = _PayloadCheck(payload_sha256) if payload_sha256 is not None else None
            return await _save(response, dst, max_bytes, check)


async def pair(
    base_url: str,
    uri: PairingURI,
    keys: KeyBundle,
    *,
    name: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> DeviceKeys:
    """Pair ``keys`` with the device of a pairing URI (the QR code); returns the device's keys.

    The TLS connection is pinned to the fingerprint in the URI; the SPAKE2 exchange checks the
    setup code and both identities, the phone signs the session with ``keys.signing_key`` to prove
    it holds it, then the device's keys are checked against the URI again.
    """
    machine = PhonePairing(
        uri.code,
        phone_signing_key=keys.signing_key,
        recipient=str(keys.recipient),
        name=name,
        device_id=uri.device_id,
        expected_fingerprint=uri.fingerprint,
    )
    ssl = client_context(uri.fingerprint)
    base = URL(base_url)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def post(path: str, data: bytes) -> bytes:
            async with session.post(
                base.with_path(path),
                data=data,
                ssl=ssl,
                headers={"Content-Type": "application/json"},
            ) as response:
                body = await response.read()
                if response.status >= 400:
                    try:
                        error = json.loads(body)["error"]
                        raise ApiError(response.status, error["code"], error["message"])
                    except (ValueError, KeyError, TypeError, RecursionError):
                        raise ApiError(
                            response.status, "http_error", response.reason or ""
                        ) from None
                return body

        pake2 = await post("/pair/start", machine.start())
        confirm = machine.receive_pake(pake2)
        keys_message = await post("/pair/finish", confirm)
        return machine.receive_keys(keys_message)


async def _save(
    response: aiohttp.ClientResponse | RelayStream,
    dst: Path | IO[bytes],
    max_bytes: int | None,
    check: _PayloadCheck | None = None,
) -> int:
    """Copy the body to ``dst`` (a path: through ``NAME.part``, renamed when whole and checked),
    capped."""
    announced = response.content_length
    if max_bytes is not None and announced is not None and announced > max_bytes:
        raise DownloadTooLarge(max_bytes)
    if not isinstance(dst, Path):
        return await _copy_capped(response, dst, max_bytes, check)
    tmp = dst.with_name(dst.name + ".part")
    try:
        with open(tmp, "wb") as f:  # noqa: ASYNC230 - chunks are small writes
            size = await _copy_capped(response, f, max_bytes, check)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    tmp.replace(dst)
    return size


def _rewindable(dst: Path | IO[bytes]) -> bool:
    """Whether a failed download from a link can be undone before the direct one."""
    if isinstance(dst, Path):
        return True
    try:
        return bool(dst.seekable())
    except (AttributeError, ValueError, OSError):
        return False


def _position(dst: Path | IO[bytes]) -> int | None:
    return None if isinstance(dst, Path) else dst.tell()


def _rewind(dst: Path | IO[bytes], start: int | None) -> None:
    """Drop what a failed download wrote to a file (a path's ``.part`` is removed already)."""
    if start is not None and not isinstance(dst, Path):
        dst.seek(start)
        dst.truncate()


async def _copy_capped(
    response: aiohttp.ClientResponse | RelayStream,
    dst: IO[bytes],
    max_bytes: int | None,
    check: _PayloadCheck | None = None,
) -> int:
    """Copy the body to ``dst``; stop before writing past ``max_bytes`` (DownloadTooLarge)."""
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK_BYTES):
        if max_bytes is not None and size + len(chunk) > max_bytes:
            raise DownloadTooLarge(max_bytes)
        if check is not None:
            check.update(chunk)
        dst.write(chunk)
        size += len(chunk)
    if check is not None:
        check.verify()
    return size


class _PayloadCheck:
    """The SHA-256 of an age file's payload (the bytes after its header), as it streams by."""

    def __init__(self, expected: str) -> None:
        self._expected = expected
        self._head: bytearray | None = bytearray()
        self._digest = hashlib.sha256()

    def update(self, chunk: bytes) -> None:
        if self._head is None:
            self._digest.update(chunk)
            return
        self._head += chunk
        end = self._head.find(b"\n--- ")
        if end < 0 or self._head.find(b"\n", end + 1) < 0:
            if len(self._head) > _MAX_AGE_HEADER_BYTES:
                raise LinkFailed("what the store sent has no age header")
            return
        try:
            header = age.read_header(io.BytesIO(bytes(self._head)))
        except DoorwardError:
            raise LinkFailed("what the store sent has no valid age header") from None
        self._digest.update(memoryview(self._head)[len(header) :])
        self._head = None

    def verify(self) -> None:
        if self._head is not None:
            raise LinkFailed("what the store sent ends inside its age header")
        if not hmac.compare_digest(self._digest.hexdigest(), self._expected):
            raise LinkFailed(
                "what the store sent is not the segment the device named (payload hash)"
            )


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def _seg(value: str) -> str:
    """A path segment, refusing characters that would change the path."""
    if not value or any(c in value for c in "/?#%") or value in (".", ".."):
        raise ValueError(f"id must be a plain path segment, got {value[:64]!r}")
    return value
