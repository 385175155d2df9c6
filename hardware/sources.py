"""Camera sources by kind: the one place that turns a camera spec into a source.

A simulated camera is a legitimate camera kind (hardware testers run ``doorward serve --camera
simulated:SCENARIO``), but the simulator is a test rig: it is imported here, lazily, and nowhere
else in production code.
"""

from __future__ import annotations

from pathlib import Path

from hardware._frames import CameraSource
from hardware._packets import PacketCamera, RecordStream
from hardware._speaker import AudioSink, SimulatedSpeaker, WavSink, speaker_of
from hardware._two_streams import TwoStreamCamera
from hardware.button import DoorbellButton
from hardware.file import FileCamera
from hardware.live import LiveCamera, parse_source

__all__ = ["button_of", "detect_lost", "open_camera", "open_speaker", "reconnecting"]


def open_camera(
    kind: str, target: str, *, name: str, detect: tuple[str, str] | None = None
) -> CameraSource:
    """A real-time source called ``name``: a scenario file played by the simulator, a video file
    played in a loop, or a live camera (``v4l2:/dev/videoN``, ``rtsp://…``).

    With ``detect`` (its kind and target, as for the camera) the camera has two streams: ``target``
    is recorded as it comes (H.264, never decoded) and motion runs on the detect stream (a
    :class:`TwoStreamCamera`). A scenario with ``detect_width`` gives both streams by itself."""
    if detect is not None:
        if kind == "simulated":
            raise ValueError(
                "a simulated camera makes its own detect stream: set detect_width and "
                "detect_height in the scenario's [camera] instead of detect="
            )
        return TwoStreamCamera(
            _record_stream(kind, target, name),
            open_camera(*detect, name=f"{name}-detect"),
            name=name,
        )
    if kind == "simulated":
        from hardware.sim import SimulatedCamera, load_scenario, two_stream_camera

        scenario = load_scenario(target)
        if scenario.camera.two_streams:
            return two_stream_camera(scenario, realtime=True, name=name, reconnect=True)
        return SimulatedCamera(scenario, realtime=True, name=name, reconnect=True)
    if kind == "file":
        return FileCamera(target, loop=True, realtime=True, name=name)
    if kind == "live":
        return LiveCamera(target, name=name)
    raise ValueError(f"camera kind must be simulated, file or live, got {kind!r}")


def open_speaker(kind: str, target: str = "", *, camera: object = None) -> AudioSink | None:
    """The speaker of one camera (blocking: it may open a device): ``sim`` (the camera's own
    simulated speaker, or a new one), ``wav`` (a WAV file at ``target``), ``alsa`` (the ALSA
    output device ``target``) or ``none``. Raises :class:`~hardware.SpeakerError` when the
    speaker cannot be opened."""
    if kind == "none":
        return None
    if kind == "sim":
        own = speaker_of(camera)
        return own if isinstance(own, SimulatedSpeaker) else SimulatedSpeaker()
    if kind == "wav":
        return WavSink(Path(target))
    if kind == "alsa":
        from hardware._alsa import AlsaSink

        return AlsaSink(target)
    raise ValueError(f"speaker kind must be sim, wav, alsa or none, got {kind!r}")


def _record_stream(kind: str, target: str, name: str) -> RecordStream:
    if kind == "file":
        return PacketCamera(target, name=name, loop=True, realtime=True)
    if kind == "live" and target.startswith(("rtsp://", "rtsps://")):
        spec = parse_source(target)
        return PacketCamera(spec.url, name=name, live=True, options=dict(spec.options))
    raise ValueError(
        f"camera {name}: a record stream must be an H.264 file or rtsp://…, got {kind} "
        f"{target!r} (a V4L2 or simulated camera has one stream: drop detect=)"
    )


def _detect_stream(kind: str, target: str, *, name: str) -> CameraSource:
    """A detect substream: small, so decoded on one thread (frame threads cost memory)."""
    if kind == "file":
        return FileCamera(target, loop=True, realtime=True, name=f"{name}-detect", one_thread=True)
    if kind == "live":
        return LiveCamera(target, name=f"{name}-detect", one_thread=True)
    return open_camera(kind, target, name=f"{name}-detect")


def detect_lost(camera: object) -> str | None:
    """Why a two-stream camera's motion runs on its main stream (its detect stream is lost), or
    None (it is not, or the camera has one stream)."""
    lost = getattr(camera, "detect_lost", None)
    return lost if isinstance(lost, str) else None


def button_of(camera: object) -> DoorbellButton | None:
    """The camera's own doorbell button, or None when it has none."""
    button = getattr(camera, "button", None)
    return button if isinstance(button, DoorbellButton) else None


def reconnecting(camera: object) -> bool:
    """Whether the camera has lost its stream and is reconnecting (waiting out its backoff or
    opening again): a camera that delivers no frame then is not stuck."""
    return getattr(camera, "reconnecting", False) is True
