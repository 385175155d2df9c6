"""Release delivery through a real S3 store (SeaweedFS): an approved bundle is uploaded under
``rel/<release-id>``, the requester's fetch gets a presigned URL that expires no later than the
consent token and works for that one object, every URL is audited, and the direct download stays
(store down before or after the upload, revoked or exhausted releases)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import secrets
import tarfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
import pytest_asyncio

import consent.owner
from consent.bundle import bundle_root
from consent.requester import open_bundle
from consent.requests import verify_request
from crypto.keys import KeyBundle
from hub.cli import cmd_requester
from hub.cli.request_footage import ApiFootage
from hub.client import ApiError
from hub.client.profile import PinnedDevice, Profile
from hub.offsite.layout import release_name
from hub.offsite.s3 import ObjectStore
from hub.offsite.seaweed import SeaweedServer
from hub.offsite.target import BucketAddress
from hub.server.release_offsite import LINK_TTL_S, OffsiteReleases
from hub.server.state import Device
from tests.hub.hubkit import (
    Running,
    audited_seals,
    request_token,
    running_device,
    write_big_clip,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(120)]


@dataclass
class Home:
    """A running device with an off-site store, a paired owner and one recorded clip."""

    running: Running
    offsite_releases: OffsiteReleases | None
    owner: KeyBundle
    requester: KeyBundle
    tmp: Path

    @property
    def offsite(self) -> OffsiteReleases:
        assert self.offsite_releases is not None
        return self.offsite_releases


@contextlib.asynccontextmanager
async def _home(
    tmp: Path, store: ObjectStore | None, *, data: Path | None = None
) -> AsyncIterator[Home]:
    made: list[OffsiteReleases] = []

    def offsite(device: Device) -> OffsiteReleases:
        assert store is not None
        made.append(
            OffsiteReleases(
                store,
                desk=device.desk,
                audit=device.audit,
                data_dir=device.data_dir,
                retry_first_s=0.2,
                retry_max_s=0.5,
            )
        )
        return made[0]

    async with running_device(
        data or tmp / "data", offsite=None if store is None else offsite
    ) as running:
        owner = KeyBundle.generate("x25519")
        running.add_owner(owner)
        write_big_clip(running, owner)
        uploader = made[0] if made else None
        yield Home(running, uploader, owner, KeyBundle.generate("x25519"), tmp)


@pytest_asyncio.fixture
async def device_store(seaweed: SeaweedServer, bucket: BucketAddress) -> AsyncIterator[ObjectStore]:
    async with ObjectStore(bucket, seaweed.identities.device) as store:
        yield store


@pytest_asyncio.fixture
async def owner_store(seaweed: SeaweedServer, bucket: BucketAddress) -> AsyncIterator[ObjectStore]:
    async with ObjectStore(bucket, seaweed.identities.owner) as store:
        yield store


@pytest_asyncio.fixture
async def home(tmp_path: Path, device_store: ObjectStore) -> AsyncIterator[Home]:
    async with _home(tmp_path, device_store) as made:
        yield made


async def _approve(
    home: Home,
    *,
    expires_in_s: int = 3600,
    max_downloads: int = 1,
    requester: KeyBundle | None = None,
) -> tuple[str, int]:
    """Request the clip and approve all of it; returns the release id and the token's expiry."""
    running, owner = home.running, home.owner
    requester = requester or home.requester
    async with running.client(owner) as phone, running.client(requester) as agency:
        submitted = await agency.submit_request(request_token(requester))
        now = int(time.time())
        request = verify_request((await phone.request(submitted.request_id)).token or "", now)
        [clip] = (await phone.clips()).clips
        wanted = [s.segment_id for s in (await phone.clip(clip.clip_id)).segments]
        workdir = home.tmp / f"phone-{secrets.token_hex(4)}"
        workdir.mkdir()
        footage = await ApiFootage.load(phone, request, wanted, workdir=workdir)
        approval = consent.owner.approve(
            owner.signing_key,
            [owner.age_identity],
            request,
            footage.chosen(),
            footage,
            device_id=running.device.identity.device_id,
            device_key=running.device.identity.public_key,
            sealed=await audited_seals(running, phone, owner, [clip.clip_id]),
            token_id=secrets.token_hex(16),  # never starts with "-": a CLI argument
            now=now,
            expires_at_s=now + expires_in_s,
            max_downloads=max_downloads,
        )
        release = await phone.consent(request.request_id, approval)
    return release.release_id, now + expires_in_s


async def _settled(home: Home) -> None:
    await asyncio.wait_for(home.offsite.idle.wait(), 30)


async def _audit(home: Home, kind: str) -> list[dict[str, Any]]:
    async with home.running.client(home.owner) as phone:
        leaves = (await phone.audit_entries()).leaves
    bodies = [json.loads(leaf) for leaf in leaves]
    return [body for body in bodies if body["kind"] == kind]


def _verify(home: Home, bundle: Path, out: str) -> None:
    report = open_bundle(
        bundle,
        [home.requester.age_identity],
        home.tmp / out,
        requester_key_id=home.requester.key_id,
        device_key=home.running.device.identity.public_key,
    )
    assert report.ok
    assert report.verdict == "VERIFIED"
    assert len(report.segments) == 4


def _signed_until(url: str) -> int:
    """When a SigV4 presigned URL stops working: X-Amz-Date + X-Amz-Expires."""
    query = parse_qs(urlsplit(url).query)
    signed = datetime.strptime(query["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return int(signed.timestamp()) + int(query["X-Amz-Expires"][0])


async def _get(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.read()


@contextlib.asynccontextmanager
async def _stopped(seaweed: SeaweedServer) -> AsyncIterator[None]:
    """The store is down inside the block (its start blocks: run off the device's loop)."""
    await asyncio.to_thread(seaweed.stop)
    try:
        yield
    finally:
        await asyncio.to_thread(seaweed.start)


async def test_an_approved_release_is_uploaded_and_fetched_through_a_presigned_url(
    home: Home, owner_store: ObjectStore
) -> None:
    release_id, _ = await _approve(home)
    await _settled(home)
    [stored] = await owner_store.list("rel/")
    assert stored.name == release_name(release_id)
    [uploaded] = await _audit(home, "release.uploaded")
    assert (uploaded["release_id"], uploaded["bytes"]) == (release_id, stored.size)

    bundle = home.tmp / "release.tar"
    async with home.running.client(home.requester) as agency:
        size = await agency.fetch_release(release_id, bundle)
        assert size == stored.size == bundle.stat().st_size
        _verify(home, bundle, "out")
        # One download allowed, and it went through the store: no link, no direct download.
        with pytest.raises(ApiError) as again:
            await agency.fetch_release(release_id, home.tmp / "again.tar")
        assert (again.value.status, again.value.code) == (410, "downloads_exhausted")

    [presigned] = await _audit(home, "release.presigned")
    assert presigned["release_id"] == release_id
    assert presigned["requester"] == home.requester.key_id
    assert presigned["download"] == 1
    assert "X-Amz" not in json.dumps(presigned)  # nothing of the URL but its expiry and id
    assert await _audit(home, "release.sent") == []  # the device did not send the bundle
    assert [e["download"] for e in await _audit(home, "release.downloaded")] == [1]


async def test_a_link_expires_no_later_than_the_token_and_opens_that_object_only(
    home: Home, device_store: ObjectStore
) -> None:
    short_id, short_expiry = await _approve(home, expires_in_s=120, max_downloads=3)
    long_id, _ = await _approve(home, expires_in_s=3600)
    await _settled(home)
    async with home.running.client(home.requester) as agency:
        before = int(time.time())
        short = await agency.release_link(short_id)
        long = await agency.release_link(long_id)
        after = int(time.time())
    assert short.expires_s == short_expiry
    assert _signed_until(short.url) <= short_expiry
    assert before + LINK_TTL_S <= long.expires_s <= after + LINK_TTL_S
    assert _signed_until(long.url) <= long.expires_s

    status, body = await _get(short.url)
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert tar.getnames()[0].startswith(bundle_root(short_id))
    # The same signature on another object's key, or with a longer life, is refused.
    await device_store.put_bytes("rel/someone-elses-bundle", b"not yours")
    for tampered in (
        short.url.replace(release_name(short_id), "rel/someone-elses-bundle"),
        short.url.replace(release_name(short_id), release_name(long_id)),
        re.sub(r"X-Amz-Expires=[0-9]+", "X-Amz-Expires=604800", short.url),
    ):
        assert tampered != short.url
        status, body = await _get(tampered)
        assert status == 403, body
    assert len(await _audit(home, "release.presigned")) == 2


async def test_a_revoked_or_wrong_key_release_gets_no_url(home: Home) -> None:
    release_id, _ = await _approve(home, max_downloads=2)
    await _settled(home)
    stranger = KeyBundle.generate("x25519")
    async with home.running.client(stranger) as other:
        with pytest.raises(ApiError) as caught:
            await other.release_link(release_id)
        assert caught.value.status == 403
    async with home.running.client(home.owner) as phone:
        token = consent.owner.revoke(
            home.owner.signing_key,
            release_id,
            device_id=home.running.device.identity.device_id,
            token_id=secrets.token_hex(16),  # never starts with "-": a CLI argument
            now=int(time.time()),
        )
        await phone.revoke(release_id, token)
    async with home.running.client(home.requester) as agency:
        with pytest.raises(ApiError) as caught:
            await agency.release_link(release_id)
        assert (caught.value.status, caught.value.code) == (410, "release_revoked")
        with pytest.raises(ApiError) as caught:
            await agency.fetch_release(release_id, home.tmp / "bundle.tar")
        assert (caught.value.status, caught.value.code) == (410, "release_revoked")
    assert await _audit(home, "release.presigned") == []


async def test_a_failed_url_is_made_good_by_the_device_once(
    home: Home, seaweed: SeaweedServer
) -> None:
    release_id, _ = await _approve(home, max_downloads=1)
    await _settled(home)
    bundle = home.tmp / "release.tar"
    async with home.running.client(home.requester) as agency:
        async with _stopped(seaweed):  # the URL is issued, then the store does not answer
            size = await agency.fetch_release(release_id, bundle)
        assert size == bundle.stat().st_size
        _verify(home, bundle, "out")
        [presigned] = await _audit(home, "release.presigned")
        [sent] = await _audit(home, "release.sent")
        assert (sent["link"], sent["download"], sent["complete"]) == (presigned["link"], 1, True)
        # The link's direct download is used up; a made-up link is no download either.
        for link in (presigned["link"], "made-up"):
            with pytest.raises(ApiError) as caught:
                await agency._download(
                    f"/releases/{release_id}", home.tmp / "again.tar", query={"link": link}
                )
            assert (caught.value.status, caught.value.code) == (409, "link_unusable")


async def test_store_down_at_approval_the_direct_download_works_and_the_upload_retries(
    home: Home, seaweed: SeaweedServer, owner_store: ObjectStore
) -> None:
    async with _stopped(seaweed):
        release_id, _ = await _approve(home, max_downloads=2)
        await _settled(home)
        assert "StoreUnreachable" in (home.offsite.status()["last_error"] or "")
        bundle = home.tmp / "release.tar"
        async with home.running.client(home.requester) as agency:
            with pytest.raises(ApiError) as caught:
                await agency.release_link(release_id)
            assert (caught.value.status, caught.value.code) == (409, "not_offsite")
            await agency.fetch_release(release_id, bundle)  # straight from the device
        _verify(home, bundle, "out")
    # Back up: the retry uploads it (one download is left).
    deadline = time.monotonic() + 60
    while not await home.offsite.uploaded(release_id):
        assert time.monotonic() < deadline
        home.offsite.idle.clear()
        await asyncio.wait_for(home.offsite.idle.wait(), 30)
    assert [o.name for o in await owner_store.list("rel/")] == [release_name(release_id)]
    assert [e["download"] for e in await _audit(home, "release.downloaded")] == [1]


async def test_a_restart_uploads_what_was_approved_without_a_store_and_nothing_twice(
    tmp_path: Path, device_store: ObjectStore, owner_store: ObjectStore
) -> None:
    data = tmp_path / "data"
    async with _home(tmp_path, None, data=data) as first:
        release_id, _ = await _approve(first)
        requester = first.requester
    for _ in range(2):
        async with _home(tmp_path, device_store, data=data) as again:
            again.requester = requester
            await _settled(again)
            uploads = await _audit(again, "release.uploaded")
    assert [e["release_id"] for e in uploads] == [release_id]
    assert [o.name for o in await owner_store.list("rel/")] == [release_name(release_id)]


async def test_requester_fetch_command_follows_the_url(home: Home) -> None:
    """`doorward requester fetch` (its file behind a progress line) takes the presigned URL."""
    release_id, _ = await _approve(home)
    await _settled(home)
    device = home.running.device
    profile = Profile(home.tmp / "requester", "requester")
    profile.create(home.requester, {"identity": {}, "recipient_kind": "x25519"})
    profile.pin(
        PinnedDevice(device.identity.device_id, device.fingerprint, home.running.url, "door", None)
    )
    out = home.tmp / "fetched"
    argv = ["fetch", release_id, "--profile", str(profile.directory), "--out", str(out), "--json"]
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        code = await asyncio.to_thread(cmd_requester.main, argv)
    assert code == 0
    assert json.loads(printed.getvalue())["ok"] is True
    assert len(await _audit(home, "release.presigned")) == 1
    assert await _audit(home, "release.sent") == []


async def test_bundles_of_ended_releases_leave_the_store_once_their_last_url_expired(
    home: Home, owner_store: ObjectStore
) -> None:
    fetched, _ = await _approve(home)
    revoked, _ = await _approve(home)
    open_one, _ = await _approve(home)
    await _settled(home)
    assert len(await owner_store.list("rel/")) == 3
    async with home.running.client(home.requester) as agency:
        await agency.fetch_release(fetched, home.tmp / "bundle.tar")  # its one download: used
    async with home.running.client(home.owner) as phone:
        token = consent.owner.revoke(
            home.owner.signing_key,
            revoked,
            device_id=home.running.device.identity.device_id,
            token_id=secrets.token_hex(16),  # never starts with "-": a CLI argument
            now=int(time.time()),
        )
        await phone.revoke(revoked, token)
    now = int(time.time())
    # The revoked one had no URL: it goes. The used one's URL may still be in flight: it stays.
    assert await home.offsite.sweep(now) == [revoked]
    left = {o.name for o in await owner_store.list("rel/")}
    assert left == {release_name(fetched), release_name(open_one)}
    # Once every URL issued for it expired, the used one goes too; the open one never does.
    assert await home.offsite.sweep(now + LINK_TTL_S + 1) == [fetched]
    assert {o.name for o in await owner_store.list("rel/")} == {release_name(open_one)}
    deleted = await _audit(home, "backup.deleted")
    assert [(e["release_id"], e["reason"]) for e in deleted] == [
        (revoked, "release_ended"),
        (fetched, "release_ended"),
    ]
    assert await home.offsite.sweep(now + LINK_TTL_S + 1) == []
