"""Small real media for the tests: frames from the simulator, encoded with libx264 via PyAV."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from hardware.sim import parse_scenario
from hardware.sim._scene import SceneRenderer
from tests.hardware.kit import camera_toml

Planes = tuple[np.ndarray, np.ndarray, np.ndarray]


def rendered(count: int, width: int = 320, height: int = 240, fps: int = 15) -> list[Planes]:
    """``count`` simulator pictures (with their strips) of a scene with a person walking."""
    text = camera_toml(width, height, fps, seconds=count / fps) + (
        '[[actor]]\nkind = "person"\nenter_s = 0\npath = [[0.1, 0.9], [0.9, 0.9]]\n'
    )
    renderer = SceneRenderer(parse_scenario(text, "media.toml"))
    return [renderer.render(i)[:3] for i in range(count)]


def to_video_frame(planes: Planes, pts: int) -> av.VideoFrame:
    y, u, v = planes
    h, w = y.shape
    stacked = np.concatenate((y.reshape(-1), u.reshape(-1), v.reshape(-1))).reshape(h * 3 // 2, w)
    frame = av.VideoFrame.from_ndarray(stacked, format="yuv420p")
    frame.pts = pts
    return frame


def write_video(
    path: Path,
    pictures: list[Planes],
    *,
    codec: str = "libx264",
    fps: int = 15,
    options: dict[str, str] | None = None,
) -> None:
    """Encode pictures into a container chosen by the file's extension."""
    h, w = pictures[0][0].shape
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        default: dict[str, str] = {"preset": "veryfast", "g": "10"} if codec == "libx264" else {}
        stream.options = dict(options if options is not None else default)
        for i, planes in enumerate(pictures):
            for packet in stream.encode(to_video_frame(planes, i)):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def x264_round_trip(pictures: list[Planes], *, crf: int = 28) -> list[np.ndarray]:
    """Encode with libx264 and decode back; returns the decoded luma planes."""
    h, w = pictures[0][0].shape
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = w, h, "yuv420p"
    encoder.time_base = Fraction(1, 15)
    encoder.options = {"preset": "veryfast", "crf": str(crf)}
    decoder = av.CodecContext.create("h264", "r")
    lumas = []
    packets = []
    for i, planes in enumerate(pictures):
        packets += encoder.encode(to_video_frame(planes, i))
    packets += encoder.encode(None)
    for packet in packets:
        for frame in decoder.decode(packet):
            lumas.append(frame.to_ndarray(format="gray"))
    for frame in decoder.decode(None):
        lumas.append(frame.to_ndarray(format="gray"))
    return lumas


def write_video_with_tone(
    path: Path, *, seconds: int = 2, fps: int = 15, rate: int = 44_100, layout: str = "stereo"
) -> None:
    """160x120 H.264 pictures with an AAC sound track of a steady 440 Hz tone (MP4)."""
    pictures = rendered(fps * seconds, 160, 120, fps)
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        assert isinstance(video, av.VideoStream)
        video.width, video.height, video.pix_fmt = 160, 120, "yuv420p"
        video.options = {"preset": "veryfast", "g": "10"}
        audio = container.add_stream("aac", rate=rate)
        assert isinstance(audio, av.AudioStream)
        audio.layout = layout
        channels = 2 if layout == "stereo" else 1
        block = 1024
        for i, planes in enumerate(pictures):
            for packet in video.encode(to_video_frame(planes, i)):
                container.mux(packet)
        for k in range(seconds * rate // block):
            t = (k * block + np.arange(block)) / rate
            wave = (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(
                np.tile(wave, (channels, 1)), format="fltp", layout=layout
            )
            frame.sample_rate, frame.pts = rate, k * block
            for packet in audio.encode(frame):
                container.mux(packet)
        for stream in (video, audio):
            for packet in stream.encode(None):
                container.mux(packet)
