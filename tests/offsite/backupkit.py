"""A real device's data in the bucket, for the owner's side: clips recorded by the real pipeline
(simulated camera, libx264) into the device's store and audit log, uploaded by the device's own
uploader (``hub.server.backup``) with its write-only keys."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from dataclasses import dataclass
from pathlib import Path

from consent.clip_manifest import ClipManifest
from crypto.keys import KeyBundle
from device import RecorderConfig
from hub.cli import cmd_owner
from hub.client.profile import PinnedDevice, Profile
from hub.offsite.layout import (
    clip_token_key,
    manifest_name,
    segment_name,
)
from hub.offsite.seaweed import SeaweedServer, write_credentials_file
from hub.offsite.target import BucketAddress
from hub.server.backup import OffsiteBackup
from hub.server.config import BackupConfig
from hub.server.state import Device
from tests.device.kit import camera, run_pipeline


@dataclass
class Recorded:
    """A device that recorded clips, its owner's keys and the owner's profile (pinned to it)."""

    device: Device
    owner: KeyBundle
    profile: Profile

    @property
    def clip_ids(self) -> list[str]:
        return [c.clip_id for c in self.device.store.list_clips()]

    def manifest_name(self, clip_id: str) -> str:
        return manifest_name(clip_token_key(self.device.identity.private_key), clip_id)

    def segment_names(self, clip_id: str) -> list[str]:
        return [segment_name(s.payload_sha256) for s in self.device.store.list_segments(clip_id)]

    def manifest(self, clip_id: str) -> ClipManifest:
        data = self.device.store.manifest_bytes(clip_id)
        return ClipManifest.verify(data, self.device.identity.public_key)

    def hold_checkpoint(self) -> int:
        """Store the device's current checkpoint in the profile, as an audit would; its size."""
        text = self.device.audit.checkpoint()
        self.profile.checkpoint_path(self.device.identity.device_id).write_text(text)
        return self.device.audit.size


async def record_clip(recorded: Recorded, *, seconds: int = 7) -> list[str]:
    """Record a clip with the real pipeline (the doorbell pressed every second, so the clip
    lasts about ``seconds`` - 1 s: several 2-second segments); the new clip ids (one, unless
    the recorder split the event)."""
    before = set(recorded.clip_ids)
    presses = [0.5 + t for t in range(seconds - 2)]
    source = camera(seconds, presses=presses, h264=True, width=160, height=120, fps=10)
    config = RecorderConfig(post_roll_s=2, pre_roll_s=1)
    pipeline = run_pipeline(
        source,
        recorded.device.store,
        recorded.owner.age_identity,  # type: ignore[arg-type]
        config=config,
    )
    await pipeline.run()
    return sorted(set(recorded.clip_ids) - before)


async def recorded_device(directory: Path, *, clips: int = 2) -> Recorded:
    """A device in ``directory / 'device'`` with ``clips`` finished clips, and its owner."""
    device = Device.open(directory / "device")
    owner = KeyBundle.generate("x25519")
    profile = Profile(directory / "phone", "owner")
    profile.create(owner, {"name": "Ada's phone"})
    identity = device.identity
    profile.pin(
        PinnedDevice(
            identity.device_id,
            device.fingerprint,
            "https://127.0.0.1:9",
            "door",
            identity.public_key,
        )
    )
    device.owners.add(owner.public(), name="phone", now=int(time.time()))
    recorded = Recorded(device, owner, profile)
    for _ in range(clips):
        await record_clip(recorded)
    return recorded


async def upload_as_device(
    recorded: Recorded, seaweed: SeaweedServer, bucket: BucketAddress, *, timeout_s: float = 60.0
) -> int:
    """Run the device's uploader until the bucket holds every segment, manifest and audit entry
    (and the checkpoint over them); the log's size."""
    device = recorded.device
    credentials = write_credentials_file(
        recorded.profile.directory.parent / "device.credentials", seaweed.identities.device
    )
    config = BackupConfig(
        endpoint=bucket.endpoint,
        bucket=bucket.bucket,
        prefix=bucket.prefix,
        credentials_file=credentials,
    )
    backup = OffsiteBackup(
        config,
        data_dir=device.data_dir,
        store=device.store,
        audit=device.audit,
        owners=device.owners,
        device_key=device.identity.private_key,
        retention_days=36500,  # the simulated clips are from 2026-01-01: keep them
        audit_every_s=0.05,
    )
    task = asyncio.ensure_future(backup.run())
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            status = backup.status()
            if status.queued_objects == 0 and status.audit_entries_uploaded == device.audit.size:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"the uploader did not drain: {status}")
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        backup.close()
    return device.audit.size


def run_owner_cli(argv: list[str]) -> tuple[int, str, str]:
    """``doorward owner ARGV`` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cmd_owner.main(argv)
    return code, out.getvalue(), err.getvalue()
