"""The owner's restore against a plain download, for ``bench/backup.py``.

    restore_vs_download()   {"restore_vs_download": ..., "restore_mib_per_s": ...,
                             "download_mib_per_s": ..., "restore_mib": ...}

A device (its real store and audit log) holds clips of 1 MiB segments encrypted to one owner
(a 4 Mb/s camera writes 1 MB every 2-second segment); everything is uploaded to a SeaweedFS
server on loopback in the backup's object layout. Then, alternately and ``rounds`` times each:
the owner's ``BackupReader.restore`` (list, manifests, checkpoint, log batches, every segment
streamed, hashed, decrypted and joined into one file per clip), and a plain
``ObjectStore.get_file`` of the same objects into files with the same client. The figure is the
restore's throughput over the download's (best round of each), so the store, the disk and the
machine cancel out. ``python bench/_restore_bench.py --json`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from crypto import age
from crypto.keys import KeyBundle
from hub.client.backup import BackupReader
from hub.offsite.layout import (
    checkpoint_name,
    clip_token_key,
    log_name,
    manifest_name,
    segment_name,
)
from hub.offsite.s3 import ObjectStore
from hub.offsite.seaweed import seaweed_server
from hub.server.state import Device

__all__ = ["restore_vs_download"]

_SEGMENT_BYTES = 1024 * 1024
_T0 = 1_767_268_800.0


def restore_vs_download(
    *, clips: int = 8, segments_per_clip: int = 8, rounds: int = 3
) -> dict[str, float]:
    """Measure the owner's restore+verify against a plain download of the same objects."""
    with tempfile.TemporaryDirectory(prefix="doorward-restore-bench-") as tmp:
        root = Path(tmp)
        owner = KeyBundle.generate("x25519")
        device = Device.open(root / "device")
        try:
            _record(device, owner, clips, segments_per_clip)
            with seaweed_server(root / "seaweed", "evidence", "bench") as server:
                return asyncio.run(_measure(server, device, owner, root, rounds))
        finally:
            device.close()


def _record(device: Device, owner: KeyBundle, clips: int, segments: int) -> None:
    store = device.store
    for number in range(clips):
        start_s = _T0 + 60 * number
        clip_id = store.open_clip("front", start_s)
        for index in range(segments):
            file = store.open_segment(clip_id, index)
            with age.Encryptor(file, [owner.age_identity.recipient()]) as enc:  # type: ignore[arg-type]
                enc.write(os.urandom(_SEGMENT_BYTES))
            store.commit_segment(
                clip_id,
                index,
                file,
                start_s=start_s + 2 * index,
                duration_s=2.0,
                payload_sha256=enc.payload_sha256,
            )
        store.finish_clip(clip_id, start_s + 2 * segments)


async def _upload(device: Device, owner: KeyBundle, store: ObjectStore) -> None:
    token_key = clip_token_key(device.identity.private_key)
    for clip in device.store.list_clips():
        for segment in device.store.list_segments(clip.clip_id):
            await store.put_file(segment_name(segment.payload_sha256), segment.path)
        await store.put_bytes(
            manifest_name(token_key, clip.clip_id), device.store.manifest_bytes(clip.clip_id)
        )
    size = device.audit.size
    leaves = b"".join(e.leaf + b"\n" for e in device.audit.entries(0, size))
    await store.put_bytes(log_name(0), age.encrypt_bytes([owner.age_identity.recipient()], leaves))
    await store.put_bytes(checkpoint_name(size), device.audit.checkpoint().encode())


async def _measure(
    server: object, device: Device, owner: KeyBundle, root: Path, rounds: int
) -> dict[str, float]:
    from hub.offsite.seaweed import SeaweedServer

    assert isinstance(server, SeaweedServer)
    address = server.address()
    async with ObjectStore(address, server.identities.device) as writer:
        await _upload(device, owner, writer)
    restore_s: list[float] = []
    download_s: list[float] = []
    total = 0
    async with ObjectStore(address, server.identities.owner) as reader:
        for _ in range(rounds):
            out = root / "restored"
            reader_ = BackupReader(
                reader,
                device_id=device.identity.device_id,
                device_key=device.identity.public_key,
                identities=[owner.age_identity],
            )
            started = time.perf_counter()
            report = await reader_.restore(out)
            restore_s.append(time.perf_counter() - started)
            if not report.ok or len(report.restored) != len(device.store.list_clips()):
                raise RuntimeError(f"restore failed in the benchmark: {report.problems[:3]}")
            shutil.rmtree(out)

            plain = root / "plain"
            plain.mkdir()
            started = time.perf_counter()
            total = 0
            for item in await reader.list():
                with open(plain / item.name.replace("/", "_"), "wb") as f:  # noqa: ASYNC230
                    size, _ = await reader.get_file(item.name, f)
                total += size
            download_s.append(time.perf_counter() - started)
            shutil.rmtree(plain)
    mib = total / (1024 * 1024)
    best_restore, best_download = min(restore_s), min(download_s)
    return {
        "restore_vs_download": round(best_download / best_restore, 3),
        "restore_mib_per_s": round(mib / best_restore, 1),
        "download_mib_per_s": round(mib / best_download, 1),
        "restore_mib": round(mib, 1),
    }


def main() -> int:
    """``--json``: one JSON line; else a short table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--segments", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    result = restore_vs_download(
        clips=args.clips, segments_per_clip=args.segments, rounds=args.rounds
    )
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key:24} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
