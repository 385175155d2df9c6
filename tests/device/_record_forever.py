"""Recording process for the crash test: records a simulated camera until it is killed.

Usage: python -m tests.device._record_forever DATA_DIR OWNER_RECIPIENT
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from crypto import age
from crypto.keys import DeviceIdentity
from device import CameraPipeline, ClipStore, RecorderConfig
from tests.device.kit import camera


async def main(data_dir: Path, recipient: str) -> None:
    device = DeviceIdentity.load_or_create(data_dir / "keys" / "device.ed25519")
    store = ClipStore(data_dir, device)  # recovers whatever the last kill left
    owner = age.parse_recipient(recipient)
    source = camera(600, presses=[float(t) for t in range(1, 600, 9)])
    pipeline = CameraPipeline(
        "front",
        source,
        store,
        lambda: [owner],
        button=source.button,
        config=RecorderConfig(post_roll_s=2, pre_roll_s=2),
    )
    print("ready", flush=True)
    await pipeline.run()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
