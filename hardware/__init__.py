"""Doorward's camera and sensor sources behind one protocol.

The scenario simulator lives in :mod:`hardware.sim`; production code opens a simulated camera
only through :func:`open_camera`.
"""

import logging

from hardware._alsa import AlsaSink, alsa_available
from hardware._audio import (
    AUDIO_RATE,
    AudioChunk,
    AudioSource,
    StreamMicrophone,
    microphone_of,
)
from hardware._backoff import Backoff
from hardware._clock import Clock, SystemClock
from hardware._frames import CameraSource, EncodedPacket, Frame, Plane, StreamInfo, StreamPacket
from hardware._packets import PacketCamera, RecordStream
from hardware._speaker import (
    AudioSink,
    FloorTaken,
    Played,
    SimulatedSpeaker,
    SpeakerError,
    SpeakerFloor,
    WavSink,
    peak_frequency,
    speaker_of,
)
from hardware._two_streams import DETECT_TIMEOUT_S, SizeChanges, TwoStreamCamera, fit_plane
from hardware._worker import Worker
from hardware.button import ButtonEvent, DoorbellButton, SoftButton
from hardware.errors import CameraDisconnected, CameraOpenFailed, HardwareError, ScenarioError
from hardware.file import FileCamera
from hardware.live import LiveCamera, SourceSpec, parse_source
from hardware.sources import button_of, detect_lost, open_camera, open_speaker, reconnecting

__all__ = [
    "AUDIO_RATE",
    "DETECT_TIMEOUT_S",
    "AlsaSink",
    "AudioChunk",
    "AudioSink",
    "AudioSource",
    "Backoff",
    "ButtonEvent",
    "CameraDisconnected",
    "CameraOpenFailed",
    "CameraSource",
    "Clock",
    "DoorbellButton",
    "EncodedPacket",
    "FileCamera",
    "FloorTaken",
    "Frame",
    "HardwareError",
    "LiveCamera",
    "PacketCamera",
    "Plane",
    "Played",
    "RecordStream",
    "ScenarioError",
    "SimulatedSpeaker",
    "SizeChanges",
    "SoftButton",
    "SourceSpec",
    "SpeakerError",
    "SpeakerFloor",
    "StreamInfo",
    "StreamMicrophone",
    "StreamPacket",
    "SystemClock",
    "TwoStreamCamera",
    "WavSink",
    "Worker",
    "alsa_available",
    "button_of",
    "detect_lost",
    "fit_plane",
    "microphone_of",
    "open_camera",
    "open_speaker",
    "parse_source",
    "peak_frequency",
    "reconnecting",
    "speaker_of",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
