"""Camera sources by kind: the one place that turns a camera spec into a source.

A simulated camera is a legitimate camera kind (hardware testers run ``doorward serve --camera
simulated:SCENARIO``), but the simulator is a test rig: it is imported here, lazily, and nowhere
else in production code.
"""

from __future__ import annotations

from pathlib import Path

from hardware._frames import CameraSource
from hardware._speaker import AudioSink, SimulatedSpeaker, WavSink, speaker_of
from hardware.button import DoorbellButton
from hardware.file import FileCamera
from hardware.live import LiveCamera

__all__ = ["button_of", "open_camera", "open_speaker", "reconnecting"]


def open_camera(kind: str, target: str, *, name: str) -> CameraSource:
    """A real-time source called ``name``: a scenario file played by the simulator, a video file
    played in a loop, or a live camera (``v4l2:/dev/videoN``, ``rtsp://…``)."""
    if kind == "simulated":
        from hardware.sim import SimulatedCamera, load_scenario

        return SimulatedCamera(load_scenario(target), realtime=True, name=name, reconnect=True)
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


def button_of(camera: object) -> DoorbellButton | None:
    """The camera's own doorbell button, or None when it has none."""
    button = getattr(camera, "button", None)
    return button if isinstance(button, DoorbellButton) else None


def reconnecting(camera: object) -> bool:
    """Whether the camera has lost its stream and is reconnecting (waiting out its backoff or
    opening again): a camera that delivers no frame then is not stuck."""
    return getattr(camera, "reconnecting", False) is True
