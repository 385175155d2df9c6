"""The owner's restore against a plain download, for ``bench/backup.py``.

    restore_vs_download()   {"restore_vs_download": ..., "restore_mib_per_s": ...,
                             "download_mib_per_s": ..., "restore_mib": ...}

A device (its real store and audit log) holds clips of 1 MiB segments encrypted to one owner
(a 4 Mb/s camera writes 1 MB every 2-second segment); the device's own uploader puts everything
in a SeaweedFS server on loopback. Then, alternately and ``rounds`` times each:
the owner's ``BackupReader.restore`` (list, manifests, checkpoint, log batches, every segment
streamed, hashed, decrypted and joined into one file per clip), and a plain
``ObjectStore.get_file`` of the same objects into files with the same client. The figure is the
restore's throughput over the download's (best round of each), so the store, the disk and the
machine cancel out. ``python bench/_restore_bench.py --json`` prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from hub.offsite.s3 import ObjectStore
from hub.offsite.seaweed import SeaweedServer, seaweed_server, write_credentials_file
from hub.server.backup import OffsiteBackup
from hub.server.config import BackupConfig
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
        device.owners.add(owner.public(), name="bench", now=int(time.time()))
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


async def _upload(device: Device, server: SeaweedServer, root: Path) -> None:
    """The device's own uploader, run until the bucket holds everything."""
    address = server.address()
    config = BackupConfig(
        endpoint=address.endpoint,
        bucket=address.bucket,
        prefix=address.prefix,
        credentials_file=write_credentials_file(
            root / "device.credentials", server.identities.device
        ),
    )
    backup = OffsiteBackup(
        config,
        data_dir=device.data_dir,
        store=device.store,
        audit=device.audit,
        owners=device.owners,
        device_key=device.identity.private_key,
        retention_days=36500,
        audit_every_s=0.05,
    )
    task = asyncio.ensure_future(backup.run())
    try:
        deadline = time.monotonic() + 600
        while True:
            status = backup.status()
            if status.queued_objects == 0 and status.audit_entries_uploaded == device.audit.size:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the uploader did not drain: {status}")
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        backup.close()


async def _measure(
    server: SeaweedServer, device: Device, owner: KeyBundle, root: Path, rounds: int
) -> dict[str, float]:
    address = server.address()
    await _upload(device, server, root)
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
