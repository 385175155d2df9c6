"""Doorward's camera and sensor sources behind one protocol, plus the scenario simulator."""

import logging

from hardware._audio import (
    AudioChunk,
    AudioSource,
    SimulatedMicrophone,
    StreamMicrophone,
    microphone_of,
)
from hardware._backoff import Backoff
from hardware._clock import Clock, SystemClock
from hardware._frames import CameraSource, EncodedPacket, Frame, StreamInfo
from hardware.button import ButtonEvent, DoorbellButton, SimulatedButton
from hardware.errors import CameraDisconnected, CameraOpenFailed, HardwareError, ScenarioError
from hardware.file import FileCamera
from hardware.live import LiveCamera, SourceSpec, parse_source
from hardware.scenario import (
    Actor,
    CameraSpec,
    Expect,
    Fault,
    Light,
    Press,
    Scenario,
    load_scenario,
    parse_scenario,
)
from hardware.simulated import SimulatedCamera, TruthSpan
from hardware.strip import StripReading, read_strip, strip_rows

__all__ = [
    "Actor",
    "AudioChunk",
    "AudioSource",
    "Backoff",
    "ButtonEvent",
    "CameraDisconnected",
    "CameraOpenFailed",
    "CameraSource",
    "CameraSpec",
    "Clock",
    "DoorbellButton",
    "EncodedPacket",
    "Expect",
    "Fault",
    "FileCamera",
    "Frame",
    "HardwareError",
    "Light",
    "LiveCamera",
    "Press",
    "Scenario",
    "ScenarioError",
    "SimulatedButton",
    "SimulatedCamera",
    "SimulatedMicrophone",
    "SourceSpec",
    "StreamInfo",
    "StreamMicrophone",
    "StripReading",
    "SystemClock",
    "TruthSpan",
    "load_scenario",
    "microphone_of",
    "parse_scenario",
    "parse_source",
    "read_strip",
    "strip_rows",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
