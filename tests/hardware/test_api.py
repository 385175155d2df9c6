"""The hardware package's public names are pinned: changing them is a deliberate act."""

from __future__ import annotations

import subprocess
import sys

import hardware
import hardware.sim
from crypto.errors import DoorwardError
from hardware.errors import CameraDisconnected, CameraOpenFailed, HardwareError, ScenarioError


def test_all_is_pinned() -> None:
    assert sorted(hardware.__all__) == [
        "AUDIO_RATE",
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
        "DETECT_TIMEOUT_S",
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
    for name in hardware.__all__:
        assert getattr(hardware, name) is not None


def test_sim_all_is_pinned() -> None:
    assert sorted(hardware.sim.__all__) == [
        "Actor",
        "CameraSpec",
        "DEFAULT_SCENARIO",
        "Expect",
        "Fault",
        "Light",
        "Press",
        "Scenario",
        "SimulatedCamera",
        "SimulatedMicrophone",
        "SimulatedRecordStream",
        "StripReading",
        "TruthSpan",
        "draw_strip",
        "load_scenario",
        "parse_scenario",
        "read_strip",
        "strip_rows",
        "two_stream_camera",
    ]
    for name in hardware.sim.__all__:
        assert getattr(hardware.sim, name) is not None


def test_production_hardware_does_not_load_the_simulator() -> None:
    probe = "import sys, hardware; print('hardware.sim' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_errors_derive_from_the_root() -> None:
    for cls in (ScenarioError, CameraOpenFailed, CameraDisconnected):
        assert issubclass(cls, HardwareError)
    assert issubclass(HardwareError, DoorwardError)
