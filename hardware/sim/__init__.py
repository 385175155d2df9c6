"""The hardware simulator: scenario files played as a camera, with its microphone and button.

Common case::

    camera = SimulatedCamera(load_scenario("scenarios/visitor.toml"), realtime=False)
    async for frame in camera.frames():
        ...

The format is documented in ``docs/scenarios.md``; a malformed file raises
``hardware.errors.ScenarioError``. Every frame carries a frame-counter strip in its top rows
(:func:`read_strip` reads it back, :func:`strip_rows` says how many rows a detector must ignore).
Production code reaches this package only through ``hardware.open_camera``.
"""

import logging
from pathlib import Path

from hardware.sim._microphone import SimulatedMicrophone
from hardware.sim.camera import SimulatedCamera, TruthSpan
from hardware.sim.scenario import (
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
from hardware.sim.streams import SimulatedRecordStream, two_stream_camera
from hardware.sim.strip import StripReading, draw_strip, read_strip, strip_rows

__all__ = [
    "DEFAULT_SCENARIO",
    "Actor",
    "CameraSpec",
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

DEFAULT_SCENARIO = Path(__file__).resolve().parent / "default_scenario.toml"
"""The scenario ``doorward serve --camera simulated`` plays (shipped as package data)."""

logging.getLogger(__name__).addHandler(logging.NullHandler())
