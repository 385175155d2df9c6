"""``doorward doctor``: is this board ready to be a doorbell? Each check says what it found and, when
it fails, how to fix it.

The checks, in order: every camera opens and delivers a frame; libx264 encodes at the cameras'
size; the data folder is the service user's alone (0700) and its disk has room and writes fast
enough for the cameras; the clock is sane (not before this software was installed, and, given a
URL, within the signature window of that server's HTTP ``Date``: TLS certificates, RFC 9421
signatures and S3's SigV4 all fail on a wrong clock); the descriptor limit leaves room for
recording and connections; the GPIO button (when configured) opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import os
import resource
import shutil
import ssl
import stat
import time
import urllib.request
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from hardware import CameraSource, Frame, HardwareError, LiveCamera, open_camera
from hub.server.config import CameraConfig, ServeConfig, parse_camera
from hub.server.data_dir import prepare_data_dir

__all__ = ["Finding", "run_doctor"]

CAMERA_TIMEOUT_S = 20.0
WRITE_TEST_BYTES = 16 * 1024 * 1024
MIN_FREE_BYTES = 256 * 1024 * 1024
# What one camera's recording writes at most, generously (1080p at about 4 Mbit/s, encrypted).
CAMERA_WRITE_BPS = 512 * 1024
WRITE_MARGIN = 4  # the disk must keep up with several times that (retention and the API too)
MIN_CONNECTIONS = 64  # connections the API should be able to hold beyond the reserve


@dataclass(frozen=True, slots=True)
class Finding:
    """One check's outcome: passed or not, what was found, and how to fix a failure."""

    check: str
    ok: bool
    detail: str
    fix: str = ""
    facts: dict[str, float | int | str] = field(default_factory=dict)


async def run_doctor(config: ServeConfig, *, time_url: str | None = None) -> list[Finding]:
    """Run every check against ``config``; a check that raises unexpectedly is a failure too."""
    cameras = [parse_camera(text, i) for i, text in enumerate(config.cameras)]
    findings: list[Finding] = []
    sizes: list[tuple[int, int, Fraction]] = []
    for camera in cameras:
        findings.append(await _camera(camera, sizes))
    findings.append(await asyncio.to_thread(_encoder, sizes or [(640, 360, Fraction(15))]))
    findings.append(_data_folder(config.data_dir))
    if findings[-1].ok:
        findings.append(await asyncio.to_thread(_disk, config, len(cameras)))
    findings.append(await asyncio.to_thread(_clock, time_url, config.signature_window_s))
    findings.append(_descriptors(config))
    if config.button is not None:
        findings.append(await asyncio.to_thread(_button, config))
    return findings


async def _camera(camera: CameraConfig, sizes: list[tuple[int, int, Fraction]]) -> Finding:
    check = f"camera {camera.name}"
    try:
        source: CameraSource = (
            LiveCamera(camera.target, name=camera.name, max_attempts=2, open_timeout_s=5.0)
            if camera.kind == "live"
            else open_camera(camera.kind, camera.target, name=camera.name)
        )
    except (HardwareError, ValueError, OSError) as exc:
        return Finding(
            check, False, f"{camera.target} cannot be opened: {exc}", _camera_fix(camera)
        )
    try:
        frame = await asyncio.wait_for(_first_frame(source), CAMERA_TIMEOUT_S)
    except TimeoutError:
        return Finding(
            check,
            False,
            f"{camera.target} delivered no frame in {CAMERA_TIMEOUT_S:.0f} s",
            _camera_fix(camera),
        )
    except (HardwareError, OSError, StopAsyncIteration) as exc:
        return Finding(
            check, False, f"{camera.target} delivered no frame: {exc}", _camera_fix(camera)
        )
    finally:
        with contextlib.suppress(HardwareError, OSError):
            await source.close()
    info = source.info
    sizes.append((info.width, info.height, Fraction(info.fps)))
    return Finding(
        check,
        True,
        f"{camera.kind} {camera.target if camera.kind != 'simulated' else ''}".strip()
        + f": {info.width}x{info.height} at {float(info.fps):g} fps, {info.codec or 'raw'}",
        facts={"width": frame.y.shape[1], "height": frame.y.shape[0]},
    )


async def _first_frame(source: CameraSource) -> Frame:
    if isinstance(source, LiveCamera):
        await source.connect()
    frames = source.frames()
    try:
        return await frames.__anext__()
    finally:
        with contextlib.suppress(RuntimeError):
            await frames.aclose()  # type: ignore[attr-defined]


def _camera_fix(camera: CameraConfig) -> str:
    if camera.target.startswith("v4l2:"):
        device = camera.target.removeprefix("v4l2:")
        return (
            f"check the camera is plugged in and {device} exists (v4l2-ctl --list-devices); the "
            "service user must be in the video group"
        )
    if camera.kind == "live":
        return "check the camera's address, user and password, and that it streams RTSP over TCP"
    return "check the camera spec in the config (doorward serve --print-config shows the forms)"


def _encoder(sizes: list[tuple[int, int, Fraction]]) -> Finding:
    import av
    import numpy as np

    width, height, fps = max(sizes, key=lambda s: s[0] * s[1])
    try:
        context = av.CodecContext.create("libx264", "w")
        context.width, context.height, context.pix_fmt = width, height, "yuv420p"
        context.time_base = Fraction(1, 90_000)
        context.framerate = fps
        context.options = {"preset": "veryfast", "tune": "zerolatency"}
        started = time.monotonic()
        packets = 0
        frames = 10
        for index in range(frames):
            picture = np.full((height * 3 // 2, width), (index * 20) % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
            frame.pts = index * 3000
            packets += len(context.encode(frame))
        packets += len(context.encode(None))
        elapsed = time.monotonic() - started
    except (av.error.FFmpegError, ValueError) as exc:  # type: ignore[attr-defined]
        return Finding(
            "encoder",
            False,
            f"libx264 failed at {width}x{height}: {exc}",
            "install a PyAV build with libx264 (pip install --force-reinstall av)",
        )
    fps_possible = frames / elapsed if elapsed > 0 else float("inf")
    if packets == 0:
        return Finding(
            "encoder", False, "libx264 produced no packet", "reinstall PyAV (pip install av)"
        )
    slow = fps_possible < float(fps)
    return Finding(
        "encoder",
        not slow,
        f"libx264 encodes {width}x{height} at {fps_possible:.0f} fps (needs {float(fps):g})",
        "lower the camera's resolution or frame rate, or use a camera that delivers H.264 (remuxed, not encoded)"
        if slow
        else "",
        facts={"fps": round(fps_possible, 1)},
    )


def _data_folder(data_dir: Path) -> Finding:
    check = "data folder"
    data_dir = Path(data_dir)
    if not data_dir.exists():
        parent = data_dir.parent
        if not os.access(parent, os.W_OK | os.X_OK):
            return Finding(
                check,
                False,
                f"{data_dir} does not exist and {parent} is not writable for this user",
                f"create it for the service user: install -d -m 0700 -o doorward {data_dir}",
            )
        prepare_data_dir(data_dir)
        return Finding(check, True, f"{data_dir} created, mode 0700")
    info = data_dir.stat()
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid != os.geteuid():
        return Finding(
            check,
            False,
            f"{data_dir} belongs to uid {info.st_uid}, not to this user (uid {os.geteuid()})",
            f"run doctor as the service user (sudo -u doorward doorward doctor …), or chown -R that user {data_dir}",
        )
    if mode & 0o077:
        return Finding(
            check,
            False,
            f"{data_dir} has mode {mode:04o}: other users can reach the device key and its records",
            f"chmod 0700 {data_dir}",
        )
    if not os.access(data_dir, os.W_OK | os.X_OK):
        return Finding(check, False, f"{data_dir} is not writable", f"chmod 0700 {data_dir}")
    return Finding(check, True, f"{data_dir} is this user's alone (mode {mode:04o})")


def _disk(config: ServeConfig, cameras: int) -> Finding:
    data_dir = Path(config.data_dir)
    free = shutil.disk_usage(data_dir).free
    budget = config.max_storage_mb * 1024 * 1024
    if free < MIN_FREE_BYTES:
        return Finding(
            "disk",
            False,
            f"only {free / 2**20:.0f} MiB free under {data_dir}",
            "free some space, or put data_dir on a larger disk",
            facts={"free_mb": free // 2**20},
        )
    needed_bps = max(1, cameras) * CAMERA_WRITE_BPS * WRITE_MARGIN
    probe = data_dir / f".doctor-{os.getpid()}.tmp"
    block = os.urandom(1024 * 1024)
    try:
        started = time.monotonic()
        with probe.open("wb") as out:
            for _ in range(WRITE_TEST_BYTES // len(block)):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        elapsed = max(time.monotonic() - started, 1e-6)
    except OSError as exc:
        return Finding(
            "disk",
            False,
            f"writing under {data_dir} failed: {exc.strerror}",
            "check the disk (dmesg) and its free space",
        )
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    bps = WRITE_TEST_BYTES / elapsed
    facts: dict[str, float | int | str] = {
        "free_mb": free // 2**20,
        "write_mb_s": round(bps / 2**20, 1),
    }
    detail = f"{free / 2**30:.1f} GiB free, writes at {bps / 2**20:.1f} MB/s with fsync"
    if bps < needed_bps:
        return Finding(
            "disk",
            False,
            f"{detail}; {cameras} camera(s) need about {needed_bps / 2**20:.1f} MB/s",
            "use a faster SD card (A1/A2, U3) or a USB disk for data_dir",
            facts=facts,
        )
    if free < budget:
        detail += f" (less than max_storage_mb = {config.max_storage_mb}: retention deletes before the disk fills only if it is lowered)"
        return Finding(
            "disk",
            False,
            detail,
            f"set max_storage_mb below {free // 2**20 - 256} in the config",
            facts=facts,
        )
    return Finding("disk", True, detail, facts=facts)


def _clock(time_url: str | None, window_s: int) -> Finding:
    now = time.time()
    floor = Path(__file__).stat().st_mtime  # this file is as old as the installed software
    if now < floor - 86400:
        return Finding(
            "clock",
            False,
            f"the clock says {time.strftime('%Y-%m-%d %H:%M', time.gmtime(now))} UTC, before this "
            f"software was installed ({time.strftime('%Y-%m-%d', time.gmtime(floor))})",
            "enable time sync: timedatectl set-ntp true (and check the network reaches an NTP server)",
        )
    if time_url is None:
        return Finding(
            "clock",
            True,
            f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(now))} UTC (give --time-url to compare with a server)",
        )
    try:
        server = _http_date(time_url)
    except (OSError, ValueError) as exc:
        return Finding(
            "clock",
            False,
            f"could not read the time from {time_url}: {exc}",
            "give a reachable https URL with --time-url",
        )
    skew = time.time() - server
    facts: dict[str, float | int | str] = {"skew_s": round(skew, 1)}
    if abs(skew) > window_s:
        return Finding(
            "clock",
            False,
            f"the clock is {skew:+.0f} s off {time_url}'s",
            "enable time sync: timedatectl set-ntp true; signed requests, TLS and S3 uploads fail otherwise",
            facts=facts,
        )
    return Finding("clock", True, f"within {abs(skew):.0f} s of {time_url}", facts=facts)


def _http_date(url: str) -> float:
    if not url.startswith(("https://", "http://")):
        raise ValueError("the URL must start with https:// or http://")
    request = urllib.request.Request(url, method="HEAD")  # noqa: S310 - scheme checked above
    context = ssl.create_default_context()
    # The clock is what is being checked: a certificate check would fail on the very clock it
    # means to test. Only the Date header is read.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
        date = response.headers.get("Date")
    if not date:
        raise ValueError("the server sent no Date header")
    return email.utils.parsedate_to_datetime(date).timestamp()


def _descriptors(config: ServeConfig) -> Finding:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    usable = hard if hard != resource.RLIM_INFINITY else 1 << 20
    needed = config.descriptor_reserve + MIN_CONNECTIONS
    facts: dict[str, float | int | str] = {"soft": int(soft), "hard": int(usable)}
    if usable < needed:
        return Finding(
            "descriptors",
            False,
            f"the descriptor limit is {usable}; recording keeps {config.descriptor_reserve} and the API needs at least {MIN_CONNECTIONS} more",
            "raise it: LimitNOFILE=8192 in the unit (the packaged unit has it), or ulimit -n 8192",
            facts=facts,
        )
    connections = min(config.max_connections, usable - config.descriptor_reserve)
    return Finding(
        "descriptors",
        True,
        f"limit {usable}: {connections} connections beside the reserve of {config.descriptor_reserve}",
        facts=facts,
    )


def _button(config: ServeConfig) -> Finding:
    from hardware.gpio import ButtonOpenFailed, GpioButton

    assert config.button is not None
    try:
        button = GpioButton(config.button).open()
    except ButtonOpenFailed as exc:
        return Finding("button", False, str(exc), "fix [button] in the config, or remove it")
    with contextlib.suppress(RuntimeError):
        asyncio.run(button.close())
    return Finding("button", True, f"line {config.button.line} of {config.button.chip_path} opened")
