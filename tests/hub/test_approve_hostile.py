"""A compromised device against the phone over HTTPS: the device's files and manifests are altered
on its disk, the phone fetches what it is served and approves as ``doorward owner approve`` does.
Every approval is refused before anything is signed; the request stays pending with no release."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import pytest_asyncio

import consent.owner
from consent.clip_manifest import MANIFEST_NAME, ClipManifest
from consent.errors import ConsentError
from consent.requester import open_bundle
from consent.requests import verify_request
from crypto import age
from crypto.keys import DeviceIdentity, KeyBundle
from hub.cli.request_footage import ApiFootage
from hub.client import DownloadTooLarge
from tests.hub.hubkit import (
    Running,
    audited_seals,
    owner_profile,
    request_token,
    run_owner_cli,
    running_device,
    write_big_clip,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60), pytest.mark.slow]


@pytest_asyncio.fixture
async def stocked(tmp_path: Path) -> AsyncIterator[tuple[Running, KeyBundle, str, list[bytes]]]:
    """A running device with one paired owner and one finished clip of four segments, two of
    them longer than one 64 KiB STREAM chunk."""
    owner = KeyBundle.generate("x25519")
    async with running_device(tmp_path / "data") as running:
        running.add_owner(owner)
        clip_id, plaintexts = write_big_clip(running, owner)
        yield running, owner, clip_id, plaintexts


async def _approve(
    running: Running, owner: KeyBundle, requester: KeyBundle, wanted: list[str], tmp_path: Path
) -> tuple[str, consent.owner.Approval | ConsentError]:
    """Submit a request, then approve ``wanted`` as the CLI does; return the request id and the
    approval posted, or the error that refused it (nothing posted then)."""
    async with running.client(owner) as phone, running.client(requester) as agency:
        submitted = await agency.submit_request(request_token(requester))
        now = int(time.time())
        request = verify_request((await phone.request(submitted.request_id)).token or "", now)
        workdir = tmp_path / "phone"
        workdir.mkdir()
        footage = await ApiFootage.load(phone, request, wanted, workdir=workdir)
        sealed = await audited_seals(running, phone, owner, {s.clip_id for s in footage.chosen()})
        try:
            approval = consent.owner.approve(
                owner.signing_key,
                [owner.age_identity],
                request,
                footage.chosen(),
                footage,
                device_id=running.device.identity.device_id,
                device_key=running.device.identity.public_key,
                sealed=sealed,
                token_id=secrets.token_hex(8),
                now=now,
                expires_at_s=now + 3600,
            )
        except ConsentError as exc:
            return request.request_id, exc
        await phone.consent(request.request_id, approval)
        return request.request_id, approval


def _path(running: Running, clip_id: str, index: int) -> Path:
    return running.device.store.segment_path(f"{clip_id}.{index:06d}")


def _swap_header(running: Running, clip_id: str) -> None:
    header_3, _ = age.split_header(_path(running, clip_id, 3).read_bytes())
    _, payload_1 = age.split_header(_path(running, clip_id, 1).read_bytes())
    _path(running, clip_id, 1).write_bytes(header_3 + payload_1)


def _swap_file(running: Running, clip_id: str) -> None:
    _path(running, clip_id, 1).write_bytes(_path(running, clip_id, 3).read_bytes())


def _resign_manifest(running: Running, clip_id: str) -> None:
    path = _path(running, clip_id, 0).parent / MANIFEST_NAME
    signed = ClipManifest.verify(path.read_bytes(), running.device.identity.public_key)
    path.write_bytes(signed.sign(DeviceIdentity.generate().private_key))


@pytest.mark.parametrize(
    ("attack", "expected"),
    [
        (_swap_header, "its payload does not open under the file key of the header"),
        (_swap_file, "but the device listed it with"),
        (_resign_manifest, "its manifest is not signed by the device key pinned at pairing"),
    ],
    ids=["header-of-another-segment", "file-of-another-segment", "manifest-bad-signature"],
)
async def test_a_compromised_device_gets_no_consent(
    stocked: tuple[Running, KeyBundle, str, list[bytes]],
    tmp_path: Path,
    attack: Callable[[Running, str], None],
    expected: str,
) -> None:
    running, owner, clip_id, _ = stocked
    attack(running, clip_id)
    requester = KeyBundle.generate("x25519")
    request_id, outcome = await _approve(
        running, owner, requester, [f"{clip_id}.000000", f"{clip_id}.000001"], tmp_path
    )
    assert isinstance(outcome, ConsentError), "the phone signed consent for a forged segment"
    assert expected in str(outcome)
    async with running.client(owner) as phone:
        stored = await phone.request(request_id)
    assert stored.status == "pending"
    async with running.client(requester) as agency:
        assert (await agency.request_status(request_id)).release_ids == ()


async def test_a_segment_longer_than_listed_is_not_downloaded_past_its_size(
    stocked: tuple[Running, KeyBundle, str, list[bytes]], tmp_path: Path
) -> None:
    running, owner, clip_id, _ = stocked
    path = _path(running, clip_id, 1)
    listed = path.stat().st_size
    path.write_bytes(path.read_bytes() + bytes(1024 * 1024))
    requester = KeyBundle.generate("x25519")
    with pytest.raises(DownloadTooLarge) as caught:
        await _approve(running, owner, requester, [f"{clip_id}.000001"], tmp_path)
    assert caught.value.limit == listed
    assert list((tmp_path / "phone").iterdir()) == []  # the partial download was removed


async def test_an_honest_device_releases_what_the_owner_chose(
    stocked: tuple[Running, KeyBundle, str, list[bytes]], tmp_path: Path
) -> None:
    running, owner, clip_id, plaintexts = stocked
    requester = KeyBundle.generate("x25519")
    request_id, outcome = await _approve(
        running, owner, requester, [f"{clip_id}.000002", f"{clip_id}.000001"], tmp_path
    )
    assert isinstance(outcome, consent.owner.Approval)
    async with running.client(requester) as agency:
        [release_id] = (await agency.request_status(request_id)).release_ids
        bundle = tmp_path / "release.tar"
        await agency.fetch_release(release_id, bundle)
    assert _opened(bundle, requester, running, tmp_path / "out") == plaintexts[1] + plaintexts[2]


def _opened(bundle: Path, requester: KeyBundle, running: Running, out: Path) -> bytes:
    """The video of a release bundle, once the requester has verified it."""
    report = open_bundle(
        bundle,
        [requester.age_identity],
        out,
        requester_key_id=requester.key_id,
        device_key=running.device.identity.public_key,
    )
    assert report.ok
    return Path(report.video or "").read_bytes()


async def test_doorward_owner_approve_refuses_a_compromised_device(
    stocked: tuple[Running, KeyBundle, str, list[bytes]], tmp_path: Path
) -> None:
    running, owner, clip_id, _ = stocked
    profile = owner_profile(running, owner, tmp_path / "owner")
    requester = KeyBundle.generate("x25519")
    async with running.client(requester) as agency:
        request_id = (await agency.submit_request(request_token(requester))).request_id
    _swap_header(running, clip_id)
    argv = [
        "approve",
        request_id,
        "--segments",
        f"{clip_id}.000001",
        "--yes",
        "--profile",
        str(profile.directory),
    ]
    code, out, err = await asyncio.to_thread(run_owner_cli, argv)
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == (
        f"doorward: error: refusing to approve: segment '{clip_id}.000001': its payload does not "
        "open under the file key of the header the device sent (payload chunk 0 failed "
        "authentication); the device may be compromised, nothing was signed"
    )
    async with running.client(requester) as agency:
        status = await agency.request_status(request_id)
    assert (status.status, status.release_ids) == ("pending", ())
