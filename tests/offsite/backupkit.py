"""A real device's data in the bucket, for the owner's side: clips recorded by the real pipeline
(simulated camera, libx264), the device's store and audit log, and an upload in exactly the object
layout of ``hub.offsite.layout`` with the device's write-only keys."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from consent.clip_manifest import ClipManifest
from crypto import age
from crypto.keys import KeyBundle
from device import RecorderConfig
from hub.cli import cmd_owner
from hub.client.profile import PinnedDevice, Profile
from hub.offsite.layout import (
    checkpoint_name,
    clip_token_key,
    log_name,
    manifest_name,
    segment_name,
)
from hub.offsite.s3 import ObjectStore
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
    recorded = Recorded(device, owner, profile)
    for _ in range(clips):
        await record_clip(recorded)
    return recorded


async def upload(
    recorded: Recorded,
    store: ObjectStore,
    *,
    batch_entries: int = 3,
    recipients: Sequence[age.Recipient] | None = None,
) -> int:
    """Upload every segment, manifest, the log in batches and the checkpoint; the log's size."""
    await upload_clips(recorded, store)
    await upload_log(recorded, store, batch_entries=batch_entries, recipients=recipients)
    return recorded.device.audit.size


async def upload_clips(recorded: Recorded, store: ObjectStore) -> None:
    """Upload every clip's segments, then its manifest."""
    device = recorded.device
    for clip_id in recorded.clip_ids:
        for segment in device.store.list_segments(clip_id):
            await store.put_file(segment_name(segment.payload_sha256), segment.path)
        await store.put_bytes(recorded.manifest_name(clip_id), device.store.manifest_bytes(clip_id))


async def upload_log(
    recorded: Recorded,
    store: ObjectStore,
    *,
    start: int = 0,
    batch_entries: int = 3,
    recipients: Sequence[age.Recipient] | None = None,
) -> None:
    """Upload the log's entries from ``start`` in batches, then its checkpoint."""
    audit = recorded.device.audit
    size = audit.size
    checkpoint = audit.checkpoint()
    recipients = recipients or [recorded.owner.age_identity.recipient()]
    for first in range(start, size, batch_entries):
        entries = audit.entries(first, min(size, first + batch_entries))
        plaintext = b"".join(e.leaf + b"\n" for e in entries)
        await store.put_bytes(log_name(first), age.encrypt_bytes(recipients, plaintext))
    await store.put_bytes(checkpoint_name(size), checkpoint.encode())


def run_owner_cli(argv: list[str]) -> tuple[int, str, str]:
    """``doorward owner ARGV`` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cmd_owner.main(argv)
    return code, out.getvalue(), err.getvalue()
