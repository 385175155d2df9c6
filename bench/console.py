"""The owner's console with 1,000 clips on the doorbell: how fast the Clips page renders, how fast
a thumbnail is made, how fast a 1080p clip starts playing.

    python bench/console.py [--json] [--clips 1000] [--runs 5]

A device data directory is prepared beforehand: one 1080p clip (15 fps, 2-s segments; its length
is ``play_clip_s``) recorded through the real pipeline from the simulated camera, ``_PLAY_CLIPS - 1`` copies of it
(distinct clips, so each play starts cold), and small 320x180 clips up to ``--clips``. A real
``doorward serve`` serves it (its camera sees an empty street, so it records nothing new); the
console (``hub.console.serve``) runs in this process over an owner profile pinned to it, and
headless Chromium (DevTools protocol) opens it.

- ``clips_page_ms``: from the click on "Clips" (the hash change) to the first page of 50 clips
  rendered in Chromium (listed, the page no longer busy, one animation frame later): the console's
  two device calls and the page's work. Thumbnails load after that and are not counted. The
  median of ``--runs``. Goal <= 300.
- ``thumbnail_ms_p95``: one thumbnail on the owner's side, from the encrypted 1080p segment (2 s)
  to the 192-px JPEG (age decryption with the owner's identity, the first picture decoded,
  scaled and encoded); 40 runs in this process, no network. Goal <= 50.
- ``play_start_ms``: from the click on a 1080p clip's Play button to the first frame the
  ``<video>`` element presents (``requestVideoFrameCallback``): the console downloads and decrypts
  the clip's segments, remuxes them into a fragmented MP4, and Chromium decodes. The median over
  the ``_PLAY_CLIPS`` copies (each played once, cold); ``play_start_ms_max`` the slowest. Goal <= 500.

``load_avg_1m`` is the machine's load when the run began (the figures move with it). The last
line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(_REPO))

from crypto import age  # noqa: E402
from crypto.keys import KeyBundle  # noqa: E402
from device import CameraPipeline, RecorderConfig  # noqa: E402
from hardware.sim import SimulatedCamera, parse_scenario  # noqa: E402
from hub.client.profile import PinnedDevice, Profile  # noqa: E402
from hub.console import new_gate, serve  # noqa: E402
from hub.console._thumbs import thumbnail_jpeg  # noqa: E402
from hub.server.state import Device  # noqa: E402
from tests.browserkit import DevTools, chromium  # noqa: E402

_PLAY_CLIPS = 5  # 1080p clips, each played once
_THUMB_RUNS = 40
_START_TIMEOUT_S = 60.0
_WAIT_MS = 60000  # in-page waits

_SCENE = """
[camera]
width = {width}
height = {height}
fps = 15
seconds = {seconds}
seed = 3
start = {start}

[[actor]]
id = "visitor"
kind = "person"
enter_s = 0.5
leave_s = {leave}
path = [[0.1, 0.9], [0.5, 0.85], [0.9, 0.9]]
times = [0.5, {middle}, {leave}]
{presses}
"""


def _scene(path: Path, *, width: int, height: int, seconds: float, start_s: float) -> Path:
    """A visitor who rings every 2 s, so that one clip lasts about ``seconds``."""
    leave = max(seconds - 3.0, 1.0)
    rings = [1.0 + 2 * n for n in range(int((seconds - 3) // 2))] or [1.0]
    presses = "".join(f"\n[[press]]\nat_s = {at:g}\n" for at in rings)
    start = datetime.fromtimestamp(int(start_s), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    path.write_text(
        _SCENE.format(
            width=width,
            height=height,
            seconds=seconds,
            start=start,
            leave=leave,
            middle=leave / 2,
            presses=presses,
        )
    )
    return path


_QUIET = """
[camera]
width = 320
height = 180
fps = 5
seconds = 3600
seed = 9
"""


@dataclass
class Prepared:
    data: Path
    owner: KeyBundle
    device_id: str
    fingerprint: str
    signing_key: Any
    play_ids: list[str]
    segment_1080p: Path
    play_clip: dict[str, float]  # the 1080p clip's seconds and segments


async def _record(device: Device, scene: Path) -> str:
    text = await asyncio.to_thread(scene.read_text)
    source = SimulatedCamera(parse_scenario(text, scene.name), realtime=False)
    pipeline = CameraPipeline(
        "front",
        source,
        device.store,
        device.owners.recipients,
        config=RecorderConfig(pre_roll_s=1.0, post_roll_s=2.0, segment_s=2.0),
        button=source.button,
    )
    before = {c.clip_id for c in device.store.list_clips()}
    await pipeline.run()
    made = [c for c in device.store.list_clips() if c.clip_id not in before and c.finished]
    if not made:
        raise RuntimeError(f"the scenario {scene.name} recorded no clip")
    return max(made, key=lambda c: c.segment_count).clip_id


def _copy(device: Device, clip_id: str, start_s: float) -> str:
    """A new finished clip at ``start_s`` holding ``clip_id``'s segments (the same ciphertext)."""
    store = device.store
    original = store.clip(clip_id)
    copy_id = store.open_clip(original.camera, start_s)
    for segment in store.list_segments(clip_id):
        sink = store.open_segment(copy_id, segment.index)
        sink.write(segment.path.read_bytes())
        store.commit_segment(
            copy_id,
            segment.index,
            sink,
            start_s=start_s + (segment.start_s - original.start_s),
            duration_s=segment.duration_s,
            payload_sha256=bytes.fromhex(segment.payload_sha256),
        )
    end_s = original.end_s if original.end_s is not None else original.start_s
    store.finish_clip(copy_id, start_s + (end_s - original.start_s))
    return copy_id


async def _prepare(work: Path, clips: int) -> Prepared:
    data = work / "data"
    owner = KeyBundle.generate("x25519")
    device = Device.open(data)
    try:
        device.owners.add(owner.public(), name="bench", now=int(time.time()))
        first_s = time.time() - 86400 * 2  # two days ago: well inside retention
        big = await _record(
            device,
            _scene(work / "1080p.toml", width=1920, height=1080, seconds=16, start_s=first_s),
        )
        small = await _record(
            device,
            _scene(work / "small.toml", width=320, height=180, seconds=6, start_s=first_s + 600),
        )
        play_ids = [big]
        for n in range(1, _PLAY_CLIPS):
            play_ids.append(_copy(device, big, first_s + 60 * n))
        made = _PLAY_CLIPS + 1
        at_s = first_s + 1200
        while made < clips:
            _copy(device, small, at_s)
            at_s += 60
            made += 1
        segment = device.store.list_segments(big)[0].path
        record = device.store.clip(big)
        shape = {
            "play_clip_s": round((record.end_s or record.start_s) - record.start_s, 1),
            "play_clip_segments": record.segment_count,
        }
        return Prepared(
            data,
            owner,
            device.identity.device_id,
            device.fingerprint,
            device.identity.public_key,
            play_ids,
            segment,
            shape,
        )
    finally:
        device.close()


def _thumbnail_ms(prepared: Prepared) -> list[float]:
    encrypted = prepared.segment_1080p.read_bytes()
    identity = prepared.owner.age_identity
    times = []
    for _ in range(_THUMB_RUNS):
        started = time.perf_counter()
        thumbnail_jpeg(age.decrypt_bytes([identity], encrypted))
        times.append((time.perf_counter() - started) * 1000)
    return times


@contextlib.asynccontextmanager
async def _serving(prepared: Prepared, work: Path) -> AsyncIterator[str]:
    quiet = work / "quiet.toml"
    quiet.write_text(_QUIET)
    log = (work / "serve.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli.cmd_serve", "--data", str(prepared.data),
        "--host", "127.0.0.1", "--port", "0", "--camera", f"front=simulated:{quiet}",
        stdout=subprocess.PIPE, stderr=log, cwd=_REPO,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = b""
        async with asyncio.timeout(_START_TIMEOUT_S):
            while not line.startswith(b"doorward: serving "):
                line = await process.stdout.readline()
                if not line:
                    log.flush()
                    tail = (work / "serve.log").read_text(errors="replace")[-1500:]
                    raise RuntimeError(f"doorward serve exited before serving:\n{tail}")
        yield line.split()[2].decode()
    finally:
        if process.returncode is None:
            process.terminate()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 30)
            if process.returncode is None:
                process.kill()
        log.close()


@contextlib.asynccontextmanager
async def _console(profile: Profile) -> AsyncIterator[str]:
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(profile, ready=ready.set_result, gate=new_gate()))
    try:
        yield await asyncio.wait_for(ready, 20)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _page_js(tools: DevTools, page: str, body: str) -> Any:
    """Run ``body`` (an async function body) in the page; raise on its ``{"timeout": …}``."""
    value = await tools.evaluate(page, f"(async () => {{ {body} }})()")
    if isinstance(value, dict) and value.get("timeout"):
        raise RuntimeError(f"the page waited in vain: {value}")
    return value


_UNTIL = """
const until = async (test) => {
  const deadline = performance.now() + WAIT_MS;
  while (!test()) {
    if (performance.now() > deadline) return false;
    await new Promise((r) => requestAnimationFrame(r));
  }
  return true;
};
const ready = (name) => document.body && document.body.dataset.page === name &&
  document.getElementById("main").getAttribute("aria-busy") === "false";
""".replace("WAIT_MS", str(_WAIT_MS))


async def _clips_page_ms(tools: DevTools, page: str) -> float:
    return float(
        await _page_js(
            tools,
            page,
            _UNTIL
            + """
            location.hash = "#doorbells";
            if (!await until(() => ready("doorbells"))) return {timeout: "doorbells"};
            const started = performance.now();
            location.hash = "#clips";
            if (!await until(() => ready("clips") &&
                document.querySelectorAll("#clip-list li").length >= 50)) return {timeout: "clips"};
            await new Promise((r) => requestAnimationFrame(r));
            const took = performance.now() - started;
            // Let the thumbnails finish before the next run.
            await until(() => [...document.querySelectorAll("#clip-list img")].every((i) => i.complete));
            return took;
            """,
        )
    )


async def _play_ms(tools: DevTools, page: str, clip_id: str) -> float:
    return float(
        await _page_js(
            tools,
            page,
            _UNTIL
            + f"""
            if (!ready("clips")) {{
              location.hash = "#clips";
              if (!await until(() => ready("clips"))) return {{timeout: "clips"}};
            }}
            const button = document.getElementById("play-{clip_id}");
            if (!button) return {{timeout: "no play button for {clip_id}"}};
            const started = performance.now();
            button.click();
            const video = document.getElementById("video");
            const shown = await Promise.race([
              new Promise((r) => video.requestVideoFrameCallback(() => r(true))),
              new Promise((r) => setTimeout(() => r(false), {_WAIT_MS})),
            ]);
            const took = performance.now() - started;
            const frames = video.getVideoPlaybackQuality().totalVideoFrames;
            document.getElementById("close-player").click();
            if (!shown) return {{timeout: "no frame", error: video.error && video.error.message}};
            return took;
            """,
        )
    )


async def run(clips: int, runs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="doorward-console-bench-") as tmp:
        work = Path(tmp)
        prepared_at = time.monotonic()
        prepared = await _prepare(work, clips)
        result: dict[str, Any] = {
            "clips": clips,
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "prepare_s": round(time.monotonic() - prepared_at, 1),
            "segment_1080p_bytes": prepared.segment_1080p.stat().st_size,
            **prepared.play_clip,
        }
        thumbs = sorted(await asyncio.to_thread(_thumbnail_ms, prepared))
        result["thumbnail_ms_p50"] = round(statistics.median(thumbs), 1)
        result["thumbnail_ms_p95"] = round(thumbs[int(0.95 * (len(thumbs) - 1))], 1)
        profile = Profile(work / "owner", "owner")
        profile.create(prepared.owner, {"name": "bench", "recipient_kind": "x25519"})
        async with _serving(prepared, work) as url:
            profile.pin(
                PinnedDevice(
                    prepared.device_id,
                    prepared.fingerprint,
                    url,
                    signing_key=prepared.signing_key,
                )
            )
            async with _console(profile) as console_url, chromium(work) as tools:
                page = await tools.open_page(console_url)  # once loaded
                await tools.call(
                    "Emulation.setDeviceMetricsOverride",
                    page,
                    width=1280,
                    height=900,
                    deviceScaleFactor=1,
                    mobile=False,
                )
                page_ms = [await _clips_page_ms(tools, page) for _ in range(runs)]
                result["clips_page_ms"] = round(statistics.median(page_ms), 1)
                result["clips_page_ms_runs"] = [round(ms, 1) for ms in page_ms]
                play_ms = [await _play_ms(tools, page, clip_id) for clip_id in prepared.play_ids]
                result["play_start_ms"] = round(statistics.median(play_ms), 1)
                result["play_start_ms_max"] = round(max(play_ms), 1)
                result["play_start_ms_runs"] = [round(ms, 1) for ms in play_ms]
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="only the JSON line")
    parser.add_argument("--clips", type=int, default=1000, help="clips on the device")
    parser.add_argument("--runs", type=int, default=5, help="Clips page loads")
    args = parser.parse_args()
    if args.clips < _PLAY_CLIPS + 51:
        parser.error(f"--clips must be at least {_PLAY_CLIPS + 51} (a full first page)")
    result = asyncio.run(run(args.clips, args.runs))
    if not args.json:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
