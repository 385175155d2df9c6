"""``doorward owner status`` and ``GET /backup`` against a running device, with its uploader on a
real SeaweedFS and on a store that does not answer."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from crypto.keys import KeyBundle
from hub.offsite.seaweed import SeaweedServer, write_credentials_file
from hub.offsite.target import BucketAddress
from hub.server.backup import OffsiteBackup
from hub.server.config import BackupConfig
from hub.server.state import Device
from tests.device.kit import write_clip
from tests.hub.hubkit import owner_profile, run_owner_cli, running_device


def uploader(config: BackupConfig):  # type: ignore[no-untyped-def]
    def make(device: Device) -> OffsiteBackup:
        return OffsiteBackup(
            config,
            data_dir=device.data_dir,
            store=device.store,
            audit=device.audit,
            owners=device.owners,
            device_key=device.identity.private_key,
            retention_days=30,
            audit_every_s=0.2,
        )

    return make


async def status(profile_dir: Path, *extra: str) -> tuple[int, str, str]:
    return await asyncio.to_thread(run_owner_cli, ["status", "--profile", str(profile_dir), *extra])


@pytest.mark.asyncio
async def test_status_shows_a_working_backup_and_its_queue(
    tmp_path: Path, seaweed: SeaweedServer, bucket: BucketAddress
) -> None:
    owner = KeyBundle.generate("x25519")
    config = BackupConfig(
        endpoint=bucket.endpoint,
        bucket=bucket.bucket,
        prefix=bucket.prefix,
        credentials_file=write_credentials_file(tmp_path / "s3", seaweed.identities.device),
    )
    async with running_device(tmp_path / "data", backup=uploader(config)) as running:
        running.add_owner(owner)
        write_clip(running.device.store, owner.age_identity, start_s=time.time() - 60)
        profile = owner_profile(running, owner, tmp_path / "phone")
        deadline = time.monotonic() + 60
        while True:
            code, out, err = await status(profile.directory, "--json")
            assert code == 0, err
            backup = json.loads(out)["backup"]
            if backup["uploaded_objects"] >= 3 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        code, text, _ = await status(profile.directory)
    assert backup["enabled"] is True
    assert backup["uploaded_objects"] >= 3
    assert backup["last_error"] is None
    assert backup["target"] == f"s3://{bucket.bucket}/{bucket.prefix} at {bucket.endpoint}"
    assert code == 0
    assert f"backup: ok → s3://{bucket.bucket}/{bucket.prefix}" in text
    assert seaweed.identities.device.secret_access_key not in out + text


@pytest.mark.asyncio
async def test_status_shows_why_the_backup_fails_and_when_it_is_off(tmp_path: Path) -> None:
    owner = KeyBundle.generate("x25519")
    keys = tmp_path / "s3"
    keys.write_text("[default]\naws_access_key_id = K\naws_secret_access_key = S3CR3T\n")
    keys.chmod(0o600)
    dead = BackupConfig(
        endpoint="http://127.0.0.1:9", bucket="evidence", prefix="p", credentials_file=keys
    )
    async with running_device(tmp_path / "a", backup=uploader(dead)) as running:
        running.add_owner(owner)
        write_clip(running.device.store, owner.age_identity, start_s=time.time() - 60)
        profile = owner_profile(running, owner, tmp_path / "phone-a")
        deadline = time.monotonic() + 60
        while True:
            code, text, err = await status(profile.directory)
            if "backup: failing" in text or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    assert code == 0, err
    assert "backup: failing → s3://evidence/p at http://127.0.0.1:9" in text
    assert "did not answer" in text
    assert "S3CR3T" not in text
    async with running_device(tmp_path / "b") as running:
        running.add_owner(owner)
        profile = owner_profile(running, owner, tmp_path / "phone-b")
        code, text, _ = await status(profile.directory)
    assert code == 0
    assert "backup: off" in text
