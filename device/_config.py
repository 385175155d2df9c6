"""How a camera records: pre/post-roll, clip and segment lengths, encoder settings, privacy zones."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["Polygon", "RecorderConfig"]

Polygon = tuple[tuple[float, float], ...]  # normalised (x, y) vertices, 0..1

_PRESETS = ("ultrafast", "superfast", "veryfast")
_ENCODER = re.compile(r"[a-z0-9_]{1,32}")


@dataclass(frozen=True, slots=True)
class RecorderConfig:
    """Recording settings for one camera.

    ``motion_fps`` caps how many frames a second the motion detector looks at: a 30 fps camera is
    analysed at 15 fps by default and the frames in between keep the last answer (motion that lasts
    one thirtieth of a second is not an event at a door); every frame is still recorded. While
    motion is on, ``event_motion_fps`` (5 by default, never more than ``motion_fps``) caps it
    instead: during an event the detector only has to notice that the motion goes on or ends, and
    the end waits ``hold_s`` (1 s) and the post-roll anyway; the start of an event, which the
    trigger latency measures, is still looked for at ``motion_fps``. That cuts the detection work
    to a third while the device is busiest (recording, and streaming to a viewer at the door).
    Frigate, for comparison, looks for motion at its detect rate, 5 fps by default, all the time.

    ``encoder`` names the H.264 encoder of a camera that delivers raw pictures: ``libx264`` (the
    default), or a hardware one (``h264_v4l2m2m`` on a Raspberry Pi, ``h264_vaapi`` on Intel, …)
    used when the PyAV build has it and it opens on this device; otherwise libx264 is used, with
    one log line saying why. The x264 options (preset, tune, crf) apply to libx264 only; a
    hardware encoder gets ``bitrate_kbps`` (4000 when unset) and the keyframe interval.

    ``privacy_zones`` are normalised polygons blacked out of every recorded frame before encoding.
    A camera with privacy zones is always encoded with libx264, even when it delivers H.264 itself:
    its own packets contain the unmasked picture, so they cannot be remuxed.
    """

    pre_roll_s: float = 5.0
    post_roll_s: float = 5.0
    max_clip_s: float = 300.0
    segment_s: float = 2.0
    keyframe_interval_s: float = 2.0
    privacy_zones: tuple[Polygon, ...] = ()
    x264_preset: str = "veryfast"
    x264_tune: str = "zerolatency"
    crf: int = 23
    encoder: str = "libx264"
    bitrate_kbps: int | None = None  # when set, replaces crf with a VBV-capped average bitrate
    max_preroll_bytes: int = 16 * 1024 * 1024
    motion_fps: float = 15.0
    event_motion_fps: float = 5.0

    def __post_init__(self) -> None:
        for name in ("pre_roll_s", "post_roll_s", "segment_s", "keyframe_interval_s"):
            value = getattr(self, name)
            if not 0 <= value <= 60:
                raise ValueError(f"{name} must be between 0 and 60 seconds, got {value}")
        if self.segment_s <= 0 or self.keyframe_interval_s <= 0:
            raise ValueError(
                f"segment_s and keyframe_interval_s must be positive, "
                f"got {self.segment_s} and {self.keyframe_interval_s}"
            )
        if not 10 <= self.max_clip_s <= 3600:
            raise ValueError(
                f"max_clip_s must be between 10 and 3600 seconds, got {self.max_clip_s}"
            )
        if self.x264_preset not in _PRESETS:
            raise ValueError(
                f"x264_preset must be one of {', '.join(_PRESETS)}, got {self.x264_preset!r}"
            )
        if self.x264_tune != "zerolatency":
            raise ValueError(f"x264_tune must be 'zerolatency', got {self.x264_tune!r}")
        if not _ENCODER.fullmatch(self.encoder):
            raise ValueError(
                f"encoder must be an FFmpeg encoder name such as libx264 or h264_v4l2m2m, "
                f"got {self.encoder!r}"
            )
        if not 0 <= self.crf <= 51:
            raise ValueError(f"crf must be between 0 and 51, got {self.crf}")
        if self.bitrate_kbps is not None and not 100 <= self.bitrate_kbps <= 50_000:
            raise ValueError(f"bitrate_kbps must be between 100 and 50000, got {self.bitrate_kbps}")
        if self.max_preroll_bytes < 1024 * 1024:
            raise ValueError(
                f"max_preroll_bytes must be at least 1 MiB, got {self.max_preroll_bytes}"
            )
        for name in ("motion_fps", "event_motion_fps"):
            value = getattr(self, name)
            if not 1 <= value <= 60:
                raise ValueError(f"{name} must be between 1 and 60, got {value}")
        for i, zone in enumerate(self.privacy_zones):
            if len(zone) < 3:
                raise ValueError(f"privacy_zones[{i}] must have at least 3 points, got {len(zone)}")
            for x, y in zone:
                if not (0 <= x <= 1 and 0 <= y <= 1):
                    raise ValueError(
                        f"privacy_zones[{i}] points must be normalised to 0..1, got ({x}, {y})"
                    )
