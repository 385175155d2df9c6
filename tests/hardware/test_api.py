"""The hardware package's public names are pinned: changing them is a deliberate act."""

from __future__ import annotations

import hardware
from crypto.errors import DoorwardError
from hardware.errors import CameraDisconnected, CameraOpenFailed, HardwareError, ScenarioError


def test_all_is_pinned() -> None:
    assert sorted(hardware.__all__) == [
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
    for name in hardware.__all__:
        assert getattr(hardware, name) is not None


def test_errors_derive_from_the_root() -> None:
    for cls in (ScenarioError, CameraOpenFailed, CameraDisconnected):
        assert issubclass(cls, HardwareError)
    assert issubclass(HardwareError, DoorwardError)
