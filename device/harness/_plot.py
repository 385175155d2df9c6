"""The harness's picture of a run: motion score over time against ground truth and clips."""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path

from device.errors import DeviceError
from device.harness._report import ClipCheck, EventResult, FrameSample

__all__ = ["PlotUnavailable", "plot_run", "require_matplotlib"]

_INSTALL_HINT = "pip install 'doorward[harness]'"


class PlotUnavailable(DeviceError):
    """The harness report's plot needs matplotlib: install the ``harness`` extra."""


def require_matplotlib() -> None:
    """Raise PlotUnavailable unless matplotlib can be imported (checked without importing it)."""
    try:
        found = importlib.util.find_spec("matplotlib") is not None
    except ValueError:  # already in sys.modules without a __spec__
        found = False
    if not found:
        raise PlotUnavailable(
            f"the harness report's plot needs matplotlib, which is not installed: {_INSTALL_HINT} "
            "(or run without --report)"
        )


def plot_run(
    path: Path,
    title: str,
    samples: Sequence[FrameSample],
    events: Sequence[EventResult],
    clips: Sequence[ClipCheck],
    min_area: float,
) -> Path:
    """Write a PNG: score (log scale) and motion on top, truth spans and clip spans shaded."""
    # The object API renders with Agg and keeps no global figure state (no pyplot).
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotUnavailable(
            f"the harness report's plot needs matplotlib, which cannot be imported: {_INSTALL_HINT}"
        ) from exc

    figure = Figure(figsize=(11, 4), dpi=100)
    axes = figure.subplots()
    times: list[float] = []
    scores: list[float] = []
    for before, sample in zip([None, *samples], samples, strict=False):
        if before is not None and sample.index > before.index + 1:
            times.append(math.nan)  # frames the camera never delivered: break the line
            scores.append(math.nan)
        times.append(sample.pts_s)
        scores.append(max(sample.score, 1e-5))
    axes.plot(times, scores, lw=0.8, color="black", label="motion score")
    axes.axhline(min_area, color="grey", ls=":", lw=0.8, label="min_area")
    axes.fill_between(
        [s.pts_s for s in samples],
        1e-5,
        [1.0 if s.motion else 1e-5 for s in samples],
        step="mid",
        color="red",
        alpha=0.12,
        label="motion",
    )
    presses = [e for e in events if e.kind == "press"]
    for i, e in enumerate(presses):
        axes.axvline(e.start_s, color="purple", lw=1.2, label="press" if i == 0 else None)
    for e in events:
        if e.kind != "press":
            axes.axvspan(e.start_s, e.end_s, ymin=0.0, ymax=0.5, color="green", alpha=0.25)
    for c in clips:
        colour = "orange" if c.false else "blue"
        axes.axvspan(c.first_s, c.last_s, ymin=0.5, ymax=1.0, color=colour, alpha=0.2)
    axes.set_yscale("log")
    axes.set_ylim(1e-5, 1.0)
    axes.set_xlabel("source time (s)")
    axes.set_ylabel("changed fraction")
    axes.set_title(f"{title}  (green: ground truth, blue: clips, orange: false clips)")
    axes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    return path
