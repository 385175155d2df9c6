"""A compromised device that holds its signing key relabels a sealed clip: it swaps two segments'
rows and files and re-signs the clip manifest to match, so every hash, size and header the phone
checks agrees. The phone catches it only because the manifest's hash differs from the one the
device logged (``clip.sealed``) when it finished the clip, before it was compromised.

Every test drives ``doorward owner approve`` as the owner would, against a real device over HTTPS.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from consent.clip_manifest import MANIFEST_NAME, ClipManifest
from crypto import age
from crypto.keys import KeyBundle
from hub.client.profile import Profile
from tests.hub.hubkit import (
    Running,
    owner_profile,
    request_token,
    run_owner_cli,
    running_device,
    write_big_clip,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60), pytest.mark.slow]

_SEGMENTS = 4


@dataclass
class Home:
    running: Running
    owner: KeyBundle
    profile: Profile
    clip_id: str
    plaintexts: list[bytes]

    def path(self, index: int) -> Path:
        return self.running.device.store.segment_path(f"{self.clip_id}.{index:06d}")

    async def owner_cli(self, *argv: str) -> tuple[int, str, str]:
        """``doorward owner ARGV --profile …`` in this process (the device keeps serving)."""
        return await asyncio.to_thread(
            run_owner_cli, [*argv, "--profile", str(self.profile.directory)]
        )

    async def ask(self, requester: KeyBundle) -> str:
        async with self.running.client(requester) as agency:
            return (await agency.submit_request(request_token(requester))).request_id

    async def status(self, requester: KeyBundle, request_id: str) -> tuple[str, tuple[str, ...]]:
        async with self.running.client(requester) as agency:
            status = await agency.request_status(request_id)
        return status.status, tuple(status.release_ids)


@pytest_asyncio.fixture
async def home(tmp_path: Path) -> AsyncIterator[Home]:
    """A running device, one owner's phone profile pinned to it, and one finished clip."""
    owner = KeyBundle.generate("x25519")
    async with running_device(tmp_path / "data") as running:
        running.add_owner(owner)
        profile = owner_profile(running, owner, tmp_path / "owner")
        clip_id, plaintexts = write_big_clip(running, owner)
        yield Home(running, owner, profile, clip_id, plaintexts)


def relabel(home: Home, a: int, b: int) -> str:
    """What a compromised device does: swap segments ``a`` and ``b`` (rows, files) and re-sign
    the clip manifest with its own key so that it agrees; returns the new manifest's SHA-256."""
    device = home.running.device
    clip_id = home.clip_id
    with contextlib.closing(sqlite3.connect(device.data_dir / "doorward.db")) as db, db:
        rows = {
            idx: (size, sha)
            for idx, size, sha in db.execute(
                "SELECT idx, size, payload_sha256 FROM segments WHERE clip_id = ?", (clip_id,)
            )
        }
        for mine, theirs in ((a, b), (b, a)):
            db.execute(
                "UPDATE segments SET size = ?, payload_sha256 = ? WHERE clip_id = ? AND idx = ?",
                (*rows[theirs], clip_id, mine),
            )
    file_a, file_b = home.path(a).read_bytes(), home.path(b).read_bytes()
    home.path(a).write_bytes(file_b)
    home.path(b).write_bytes(file_a)
    manifest_path = home.path(0).parent / MANIFEST_NAME
    signed = ClipManifest.verify(manifest_path.read_bytes(), device.identity.public_key)
    entries = {e.index: e for e in signed.segments}
    swapped = [
        dataclasses.replace(
            entries[i],
            size=entries[{a: b, b: a}.get(i, i)].size,
            payload_sha256=entries[{a: b, b: a}.get(i, i)].payload_sha256,
        )
        for i in sorted(entries)
    ]
    forged = dataclasses.replace(signed, segments=tuple(swapped)).sign(device.identity.private_key)
    manifest_path.write_bytes(forged)
    return hashlib.sha256(forged).hexdigest()


async def test_a_relabelled_clip_is_refused(home: Home) -> None:
    # The owner's phone audits the log while the device is still honest.
    code, _, err = await home.owner_cli("audit")
    assert code == 0, err
    requester = KeyBundle.generate("x25519")
    request_id = await home.ask(requester)
    sealed = hashlib.sha256(home.running.device.store.manifest_bytes(home.clip_id)).hexdigest()
    forged = relabel(home, 1, 2)
    # The attack is real: what the device now serves as segment 1 is segment 2's video, and its
    # header opens it.
    served = home.path(1).read_bytes()
    assert age.decrypt_bytes([home.owner.age_identity], served) == home.plaintexts[2]

    code, out, err = await home.owner_cli(
        "approve", request_id, "--segments", f"{home.clip_id}.000001", "--yes"
    )
    assert (code, out) == (1, ""), "the phone signed consent for a relabelled segment"
    assert err.splitlines()[-1] == (
        f"doorward: error: refusing to approve: clip '{home.clip_id}': its signed manifest "
        f"hashes to {forged}, but the device sealed the clip with {sealed} in the audit log when "
        "it finished: the device re-signed its manifest since; the device may be compromised, "
        "nothing was signed"
    )
    assert await home.status(requester, request_id) == ("pending", ())


async def test_a_second_seal_for_the_relabelled_clip_fails_the_audit(home: Home) -> None:
    code, _, err = await home.owner_cli("audit")
    assert code == 0, err
    state = home.profile.checkpoint_path(home.running.device.identity.device_id)
    verified = state.read_text()
    requester = KeyBundle.generate("x25519")
    request_id = await home.ask(requester)
    sealed = hashlib.sha256(home.running.device.store.manifest_bytes(home.clip_id)).hexdigest()
    forged = relabel(home, 1, 2)
    # The device covers its tracks with a new seal for the forged manifest.
    entry = home.running.device.audit.append(
        "clip.sealed",
        clip_id=home.clip_id,
        camera="front",
        segment_count=_SEGMENTS,
        manifest_sha256=forged,
    )
    code, out, err = await home.owner_cli(
        "approve", request_id, "--segments", f"{home.clip_id}.000001", "--yes"
    )
    assert (code, out) == (1, "")
    assert err.splitlines()[-1].startswith(
        f"doorward: error: the audit log seals clip '{home.clip_id}' twice, with manifest "
        f"{sealed} at entry "
    )
    assert err.splitlines()[-1].endswith(
        f" and {forged} at entry {entry.index}: a clip is sealed once, so the device re-signed "
        "its manifest; treat the device as compromised"
    )
    assert await home.status(requester, request_id) == ("pending", ())
    # `doorward owner audit` says the same, and the phone's stored checkpoint did not move.
    code, _, err = await home.owner_cli("audit")
    assert code == 1
    assert "seals clip" in err
    assert state.read_text() == verified


async def test_a_clip_still_recording_is_not_sealed_and_is_refused(home: Home) -> None:
    clip_id, _ = write_big_clip(home.running, home.owner, finish=False)
    requester = KeyBundle.generate("x25519")
    request_id = await home.ask(requester)
    code, out, err = await home.owner_cli(
        "approve", request_id, "--segments", f"{clip_id}.000001", "--yes"
    )
    assert (code, out) == (1, "")
    assert err.splitlines()[-1] == (
        f"doorward: error: refusing to approve: clip '{clip_id}' was not sealed in the audit log "
        "this phone verified (a clip is sealed when it finishes recording; a doorbell running a "
        "doorward version from before clip sealing seals none, and seals the clips it holds once "
        "upgraded): wait until the clip finishes or the doorbell is upgraded, then run "
        "`doorward owner audit` and approve again; nothing was signed"
    )
    assert await home.status(requester, request_id) == ("pending", ())


async def test_an_honest_approval_audits_first_and_releases(home: Home) -> None:
    # No audit beforehand: approve runs one itself, so the seal is in the phone's index.
    requester = KeyBundle.generate("x25519")
    request_id = await home.ask(requester)
    segments = f"{home.clip_id}.000001,{home.clip_id}.000002"
    code, _, err = await home.owner_cli("approve", request_id, "--segments", segments, "--yes")
    assert code == 0, err
    status, releases = await home.status(requester, request_id)
    assert (status, len(releases)) == ("approved", 1)
    checkpoint = home.profile.checkpoint_path(home.running.device.identity.device_id)
    assert checkpoint.exists()
