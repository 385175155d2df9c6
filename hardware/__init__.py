"""Doorward's camera and sensor sources behind one protocol, plus the scenario simulator."""

from hardware._clock import Clock, SystemClock
from hardware._frames import CameraSource, EncodedPacket, Frame, StreamInfo
from hardware.button import ButtonEvent, DoorbellButton, SimulatedButton
from hardware.errors import CameraDisconnected, CameraOpenFailed, HardwareError, ScenarioError
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
from hardware.simulated import SimulatedCamera
from hardware.strip import StripReading, read_strip, strip_rows

__all__ = [
    "Actor",
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
    "Frame",
    "HardwareError",
    "Light",
    "Press",
    "Scenario",
    "ScenarioError",
    "SimulatedButton",
    "SimulatedCamera",
    "StreamInfo",
    "StripReading",
    "SystemClock",
    "load_scenario",
    "parse_scenario",
    "read_strip",
    "strip_rows",
]
