"""The whole consent flow over HTTPS: a clip recorded by a real pipeline from the simulated camera,
a requester's signed request, the owner's approval of part of it built from what the API serves,
the requester's fetch and verification; plus policy refusals and events."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from yarl import URL

from consent.owner import approve, decline, revoke
from consent.requester import open_bundle
from consent.requests import verify_request
from crypto.keys import KeyBundle
from crypto.tls import client_context
from device import CameraPipeline, RecorderConfig
from hub.cli.request_footage import ApiFootage
from hub.client import ApiError, DoorwardClient, EventMessage, ReleaseInfo, Segment
from hub.server import appkeys
from hub.server.events import device_event
from hub.wire.httpsig import RequestSigner
from tests.hub.hubkit import (
    Running,
    audited_seals,
    request_token,
    running_device,
    small_camera,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(90)]


@pytest_asyncio.fixture
async def recorded(tmp_path: Path) -> AsyncIterator[tuple[Running, KeyBundle, float]]:
    """A device whose owner is paired and whose camera recorded one clip ten minutes ago."""
    owner = KeyBundle.generate("x25519")
    start_s = time.time() - 600
    async with running_device(tmp_path / "data") as running:
        running.add_owner(owner)
        bus = running.app[appkeys.BUS]
        source = small_camera(start_s, seconds=5.0)
        pipeline = CameraPipeline(
            "front",
            source,
            running.device.store,
            running.device.owners.recipients,
            config=RecorderConfig(
                pre_roll_s=1.0, post_roll_s=1.0, segment_s=1.0, keyframe_interval_s=1.0
            ),
            on_event=lambda e: (m := device_event(e)) and bus.publish(m[0], **m[1]),
            button=source.button,
        )
        stats = await pipeline.run()
        assert stats.clips == 1
        assert stats.segments >= 2
        yield running, owner, start_s


def _request(requester: KeyBundle, start_s: float, *, kind: str = "local_agency") -> str:
    window = (int(start_s) - 60, int(start_s) + 600)
    return request_token(requester, window=window, contact="ada@pd.example", kind=kind)


async def test_consent_round_trip_over_https(recorded, tmp_path: Path) -> None:
    running, owner, start_s = recorded
    requester = KeyBundle.generate("x25519")
    device_id = running.device.identity.device_id
    async with running.client(owner) as phone, running.client(requester) as agency:
        events: asyncio.Queue[EventMessage] = asyncio.Queue()

        async def listen() -> None:
            async for event in phone.events(("request.pending", "request.decided")):
                await events.put(event)

        listener = asyncio.ensure_future(listen())
        await _until_subscribed(running)

        token = _request(requester, start_s)
        submitted = await agency.submit_request(token)
        assert submitted.status == "pending"
        pending_event = await asyncio.wait_for(events.get(), 10)
        assert (pending_event.kind, pending_event.data["request_id"]) == (
            "request.pending",
            submitted.request_id,
        )

        # The phone lists pending requests, verifies the token itself, finds the footage.
        [listed] = await phone.requests("pending")
        request = verify_request(listed.token or "", int(time.time()))
        page = await phone.clips(camera="front", start_s=start_s - 60, end_s=start_s + 600)
        [clip] = page.clips
        detail = await phone.clip(clip.clip_id)
        chosen: list[Segment] = list(detail.segments[:1])  # part of the clip only
        workdir = tmp_path / "phone"
        workdir.mkdir()
        footage = await ApiFootage.load(
            phone, request, [s.segment_id for s in chosen], workdir=workdir
        )
        now = int(time.time())
        approval = approve(
            owner.signing_key,
            [owner.age_identity],
            request,
            footage.chosen(),
            footage,
            device_id=device_id,
            device_key=running.device.identity.public_key,
            sealed=await audited_seals(running, phone, owner, [clip.clip_id]),
            token_id=secrets.token_urlsafe(16),
            now=now,
            expires_at_s=now + 3600,
        )
        release = await phone.consent(request.request_id, approval)
        assert release.segment_ids == tuple(s.segment_id for s in chosen)
        decided = await asyncio.wait_for(events.get(), 10)
        assert decided.data == {
            "request_id": request.request_id,
            "decision": "approved",
            "release_id": release.release_id,
        }

        status = await agency.request_status(request.request_id)
        assert (status.status, status.release_ids) == ("approved", (release.release_id,))
        # The owners' listings name the release too (the console offers to revoke it).
        [listed] = [r for r in await phone.requests() if r.request_id == request.request_id]
        assert listed.release_ids == (release.release_id,)
        assert (await phone.request(request.request_id)).release_ids == (release.release_id,)
        bundle = tmp_path / "release.tar"
        size = await agency.fetch_release(release.release_id, bundle)
        assert size == bundle.stat().st_size > 0
        report = open_bundle(
            bundle,
            [requester.age_identity],
            tmp_path / "out",
            requester_key_id=requester.key_id,
            device_key=running.device.identity.public_key,
        )
        assert report.ok
        assert [s.segment_id for s in report.segments] == [s.segment_id for s in chosen]
        assert report.video is not None
        assert _size(report.video) > 0

        # max_downloads = 1: the second fetch is refused, and the refusal is JSON with a code.
        with pytest.raises(ApiError) as again:
            await agency.fetch_release(release.release_id, tmp_path / "again.tar")
        assert (again.value.status, again.value.code) == (410, "downloads_exhausted")
        assert again.value.detail == (
            f"release {release.release_id} was downloaded 1 of 1 allowed time(s)"
        )
        listener.cancel()

    kinds = [e["body"]["kind"] for e in (await _audit(running, owner))]
    for kind in ("request.pending", "release.created", "request.approved", "release.downloaded"):
        assert kind in kinds


async def test_only_the_requester_can_see_its_status(recorded) -> None:
    running, _, start_s = recorded
    requester, other = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    async with running.client(requester) as agency, running.client(other) as stranger:
        submitted = await agency.submit_request(_request(requester, start_s))
        with pytest.raises(ApiError) as caught:
            await stranger.request_status(submitted.request_id)
        assert (caught.value.status, caught.value.code) == (403, "unknown_key")


async def test_policy_refuses_a_federal_request_at_once(recorded) -> None:
    running, owner, start_s = recorded
    requester = KeyBundle.generate("x25519")
    async with running.client(requester) as agency, running.client(owner) as phone:
        with pytest.raises(ApiError) as caught:
            await agency.submit_request(_request(requester, start_s, kind="federal_agency"))
        assert (caught.value.status, caught.value.code) == (403, "policy_refused")
        assert "declined by the owner's policy" in caught.value.detail
        [stored] = await phone.requests()
        assert (stored.status, stored.rule) == ("auto_declined", "requester_kind")


async def test_owner_declines_a_request(recorded) -> None:
    running, owner, start_s = recorded
    requester = KeyBundle.generate("x25519")
    async with running.client(requester) as agency, running.client(owner) as phone:
        submitted = await agency.submit_request(_request(requester, start_s))
        request = verify_request(
            (await phone.request(submitted.request_id)).token or "", int(time.time())
        )
        token = decline(
            owner.signing_key,
            request,
            "Not without a warrant.",
            device_id=running.device.identity.device_id,
            token_id=secrets.token_urlsafe(16),
            now=int(time.time()),
        )
        declined = await phone.decline(request.request_id, token)
        assert (declined.status, declined.reason) == ("declined", "Not without a warrant.")
        status = await agency.request_status(request.request_id)
        assert (status.status, status.release_ids) == ("declined", ())
        # The same decline token again is a replay.
        with pytest.raises(ApiError) as caught:
            await phone.decline(request.request_id, token)
        assert caught.value.code in ("token_replayed", "request_mismatch")


async def test_segments_and_deletion(recorded, tmp_path: Path) -> None:
    running, owner, _ = recorded
    async with running.client(owner) as phone:
        [clip] = (await phone.clips()).clips
        detail = await phone.clip(clip.clip_id)
        first = detail.segments[0]
        path = tmp_path / "seg.age"
        size = await phone.download_segment(first.segment_id, path)
        stored = running.device.store.segment(first.segment_id)
        assert size == first.size == stored.size
        assert path.read_bytes() == stored.path.read_bytes()
        assert path.read_bytes().startswith(await phone.segment_header(first.segment_id))
        metrics = await phone.metrics()
        assert metrics["stored_bytes"] == running.device.store.total_bytes() > 0
        await phone.delete_clip(clip.clip_id)
        assert (await phone.clips()).clips == ()
        with pytest.raises(ApiError) as caught:
            await phone.clip(clip.clip_id)
        assert (caught.value.status, caught.value.code) == (404, "not_found")
        assert caught.value.detail == f"unknown clip {clip.clip_id!r}"
        entries = await _audit(running, owner)
        assert entries[-1]["body"]["kind"] == "clip.deleted"


def _size(path: str) -> int:
    return Path(path).stat().st_size


async def _audit(running: Running, owner: KeyBundle) -> list[dict[str, object]]:
    async with running.client(owner) as phone:
        result = await phone.audit_entries()
    return [{"body": json.loads(leaf)} for leaf in result.leaves]


async def _until_subscribed(running: Running) -> None:
    await asyncio.wait_for(running.app[appkeys.BUS].wait_for_subscriber(), 10)


async def test_owner_revokes_a_release_before_download(recorded, tmp_path: Path) -> None:
    running, owner, start_s = recorded
    requester = KeyBundle.generate("x25519")
    device_id = running.device.identity.device_id
    async with running.client(owner) as phone, running.client(requester) as agency:
        release = await _approved_release(running, owner, requester, phone, agency, start_s)
        now = int(time.time())
        token = revoke(
            owner.signing_key,
            release.release_id,
            device_id=device_id,
            token_id=secrets.token_urlsafe(16),
            now=now,
        )
        revoked = await phone.revoke(release.release_id, token)
        assert revoked.revoked
        with pytest.raises(ApiError) as caught:
            await agency.fetch_release(release.release_id, tmp_path / "bundle.tar")
        assert (caught.value.status, caught.value.code) == (410, "release_revoked")
        assert caught.value.detail == f"release {release.release_id} was revoked by an owner"


async def test_a_request_must_be_signed_by_its_own_key(recorded) -> None:
    running, _, start_s = recorded
    requester, other = KeyBundle.generate("x25519"), KeyBundle.generate("x25519")
    async with running.client(other) as impostor:
        with pytest.raises(ApiError) as caught:
            await impostor.submit_request(_request(requester, start_s))
    assert (caught.value.status, caught.value.code) == (403, "unknown_key")
    async with running.client(requester) as agency:
        with pytest.raises(ApiError) as caught:
            await agency.submit_request("not-a-jws")
    assert (caught.value.status, caught.value.code) == (400, "request_invalid")


async def test_a_fetch_abandoned_before_the_bundle_is_sent_is_recorded_as_incomplete(
    recorded, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    running, owner, start_s = recorded
    requester = KeyBundle.generate("x25519")
    downloads = running.app[appkeys.BUS].subscribe(frozenset({"release.downloaded"}))
    assert downloads is not None
    caplog.set_level(logging.INFO, logger="hub.server.routes.requester")
    async with running.client(owner) as phone, running.client(requester) as agency:
        release = await _approved_release(
            running, owner, requester, phone, agency, start_s, max_downloads=2
        )
        await _fetch_and_hang_up(running, requester, release.release_id)
        # The abandoned fetch was counted (download 1) but nothing of the bundle went out.
        cut = await asyncio.wait_for(downloads.get(), 30)
        assert cut is not None
        assert (cut.kind, cut.data) == (
            "release.downloaded",
            {"release_id": release.release_id, "download": 1, "bytes": 0, "complete": False},
        )
        bundle = tmp_path / "release.tar"
        size = await agency.fetch_release(release.release_id, bundle)
        whole = await asyncio.wait_for(downloads.get(), 30)
        entries = await phone.audit_entries()
    assert whole is not None
    assert whole.data == {
        "release_id": release.release_id,
        "download": 2,
        "bytes": size,
        "complete": True,
    }
    # Both are in the audit log after the authorisations they follow.
    leaves = [json.loads(leaf) for leaf in entries.leaves]
    kinds = [(e["kind"], e.get("download"), e.get("complete")) for e in leaves]
    assert kinds[-4:] == [
        ("release.downloaded", 1, None),
        ("release.sent", 1, False),
        ("release.downloaded", 2, None),
        ("release.sent", 2, True),
    ]
    lines = [r.getMessage() for r in caplog.records if r.name == "hub.server.routes.requester"]
    assert any(
        m.startswith(f"release.send_incomplete release_id={release.release_id} bytes=0 of=")
        and m.endswith(" ended_by=disconnected")
        for m in lines
    ), lines
    assert f"release.sent release_id={release.release_id} bytes={size}" in lines
    downloads.close()


async def _approved_release(
    running: Running,
    owner: KeyBundle,
    requester: KeyBundle,
    phone: DoorwardClient,
    agency: DoorwardClient,
    start_s: float,
    *,
    max_downloads: int = 1,
) -> ReleaseInfo:
    """A release of the recorded clip's first segment, to be downloaded ``max_downloads`` times."""
    submitted = await agency.submit_request(_request(requester, start_s))
    request = verify_request(
        (await phone.request(submitted.request_id)).token or "", int(time.time())
    )
    [clip] = (await phone.clips()).clips
    [first, *_] = (await phone.clip(clip.clip_id)).segments
    with tempfile.TemporaryDirectory() as workdir:
        footage = await ApiFootage.load(phone, request, [first.segment_id], workdir=Path(workdir))
        now = int(time.time())
        approval = approve(
            owner.signing_key,
            [owner.age_identity],
            request,
            [first],
            footage,
            device_id=running.device.identity.device_id,
            device_key=running.device.identity.public_key,
            sealed=await audited_seals(running, phone, owner, [clip.clip_id]),
            token_id=secrets.token_urlsafe(16),
            now=now,
            expires_at_s=now + 3600,
            max_downloads=max_downloads,
        )
    return await phone.consent(request.request_id, approval)


async def _fetch_and_hang_up(running: Running, requester: KeyBundle, release_id: str) -> None:
    """Send a signed fetch over a pinned TLS connection and close it before any answer."""
    url = URL(f"{running.url}/releases/{release_id}")
    signer = RequestSigner(
        requester.signing_key,
        key_id=requester.key_id,
        device_id=running.device.identity.device_id,
        now_s=time.time,
    )
    headers = {"Host": f"{url.host}:{url.port}", **signer.headers("GET", str(url), b"")}
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    _, writer = await asyncio.open_connection(
        url.host, url.port, ssl=client_context(running.device.fingerprint)
    )
    writer.write(f"GET {url.path} HTTP/1.1\r\n{head}\r\n".encode())
    await writer.drain()
    writer.transport.abort()
