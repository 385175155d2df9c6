"""Device test kit: small simulated cameras, a pipeline runner, clip writing and decoding."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np

from crypto import age
from device import CameraPipeline, ClipStore, DeviceEvent, RecorderConfig
from device.harness import FaultyStore, StorageFaults
from hardware.sim import SimulatedCamera, parse_scenario, read_strip

T0 = 1_767_268_800.0  # 2026-01-01T12:00:00Z, the simulated cameras' default start


def write_clip(
    store: ClipStore,
    owner: age.Identity,
    *,
    camera: str = "front",
    start_s: float = T0,
    segments: int = 2,
    payload: int = 1000,
    payloads: Sequence[bytes] | None = None,
    finish: bool = True,
) -> str:
    """A clip of ``segments`` two-second segments of ``payload`` random bytes each (or one
    segment per entry of ``payloads``), encrypted to ``owner``; finished unless ``finish`` is
    false. Returns the clip id."""
    if payloads is None:
        payloads = [os.urandom(payload) for _ in range(segments)]
    segments = len(payloads)
    clip_id = store.open_clip(camera, start_s)
    for index, data in enumerate(payloads):
        file = store.open_segment(clip_id, index)
        with age.Encryptor(file, [owner.recipient()]) as encryptor:
            encryptor.write(data)
        store.commit_segment(
            clip_id,
            index,
            file,
            start_s=start_s + 2 * index,
            duration_s=2.0,
            payload_sha256=encryptor.payload_sha256,
        )
    if finish:
        store.finish_clip(clip_id, start_s + 2 * segments)
    return clip_id


def camera(
    seconds: float,
    *,
    presses: Sequence[float] = (),
    fps: int = 15,
    width: int = 320,
    height: int = 240,
    h264: bool = False,
    extra: str = "",
    name: str = "cam.toml",
) -> SimulatedCamera:
    """A simulated camera in virtual time with doorbell presses at ``presses`` seconds."""
    text = (
        f"[camera]\nwidth = {width}\nheight = {height}\nfps = {fps}\nseconds = {seconds}\n"
        f"seed = 7\nh264 = {'true' if h264 else 'false'}\n"
    )
    text += "".join(f"\n[[press]]\nat_s = {at_s}\n" for at_s in presses)
    return SimulatedCamera(parse_scenario(text + extra, name))


def run_pipeline(
    source: SimulatedCamera,
    store: ClipStore,
    owner: age.X25519Identity,
    *,
    name: str = "front",
    config: RecorderConfig | None = None,
    faults: StorageFaults | None = None,
    events: list[DeviceEvent] | None = None,
) -> CameraPipeline:
    return CameraPipeline(
        name,
        source,
        store if faults is None else FaultyStore(store, faults),
        lambda: [owner.recipient()],
        config=config,
        on_event=None if events is None else events.append,
        button=source.button,
    )


def decrypt_segments(store: ClipStore, clip_id: str, owner: age.X25519Identity) -> list[bytes]:
    return [
        age.decrypt_bytes([owner], seg.path.read_bytes()) for seg in store.list_segments(clip_id)
    ]


def decode_counters(ts: bytes) -> list[int | None]:
    """The strip counter of every picture in an MPEG-TS byte string (None where unreadable)."""
    counters: list[int | None] = []
    with av.open(io.BytesIO(ts)) as container:
        for frame in container.decode(video=0):
            reading = read_strip(frame.to_ndarray(format="gray"))
            counters.append(None if reading is None else reading.counter)
    return counters


def sync_runs(data: bytes, packets: int = 5) -> int:
    """How many offsets start ``packets`` MPEG-TS sync bytes (0x47) spaced 188 bytes apart."""
    span = 188 * (packets - 1)
    if len(data) <= span:
        return 0
    hit = np.frombuffer(data, dtype=np.uint8) == 0x47
    run = hit[: len(hit) - span].copy()
    for k in range(1, packets):
        run &= hit[188 * k : len(hit) - span + 188 * k]
    return int(run.sum())


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())
