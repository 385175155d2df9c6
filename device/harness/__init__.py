"""The hardware testers' harness: a scenario through the real pipeline, checked from the outside.

Common case::

    report = run_scenario("scenarios/visitor.toml", report_dir=Path("out"))
    print(report.text())

It plays the scenario on the simulator (:mod:`hardware.sim`) through the real CameraPipeline and
ClipStore, injecting the scenario's storage faults through :class:`FaultyStore`, then decrypts and
decodes what was recorded and judges it against the scenario's ``[expect]``. The report's plot
needs matplotlib (``pip install 'doorward[harness]'``); without it, asking for a report raises
:class:`PlotUnavailable`. Production code never imports this package.
"""

import logging

from device.harness._plot import PlotUnavailable, plot_run
from device.harness._report import (
    ClipCheck,
    EventResult,
    FrameSample,
    GroundTruth,
    HarnessReport,
    clip_gaps,
    judge,
    truth_events,
)
from device.harness._run import run_scenario, run_scenario_async
from device.harness.faults import FaultyStore, StorageFaults

__all__ = [
    "ClipCheck",
    "EventResult",
    "FaultyStore",
    "FrameSample",
    "GroundTruth",
    "HarnessReport",
    "PlotUnavailable",
    "StorageFaults",
    "clip_gaps",
    "judge",
    "plot_run",
    "run_scenario",
    "run_scenario_async",
    "truth_events",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
