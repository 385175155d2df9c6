"""Is the doorbell recording? The watchdog's judgement, as a pure function of progress and ``now``.

systemd restarts a service whose watchdog pings stop (``WatchdogSec=``). Pinging from a timer
alone would only prove that the event loop turns; here a ping means that every camera's pipeline
is moving: each one has taken a frame within ``stall_s`` (unless its camera is reconnecting, which
restarting would not cure), no frame has been in its worker (detector, encoder, encryption,
segment write) for longer than ``stall_s``, a recording camera has committed a segment within
``segment_s + stall_s``, and the consent and audit writer has no call waiting longer than
``stall_s``. :func:`judge` says which camera is in which state; :func:`status_line` says it in one
line for ``systemctl status``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from device import PipelineProgress

__all__ = [
    "CameraReport",
    "CameraState",
    "CameraVerdict",
    "Deadlines",
    "Health",
    "WriterReport",
    "judge",
    "status_line",
]


class CameraState(enum.Enum):
    """What a camera's pipeline is doing, as the watchdog sees it."""

    STARTING = "starting"  # no frame yet, within the deadline
    RECORDING = "recording"  # frames (and, in a clip, segments) keep coming
    RECONNECTING = "reconnecting"  # the camera lost its stream and is backing off: not stuck
    ENDED = "ended"  # the source ran out (a simulated scenario that played to its end)
    STALLED = "stalled"  # no frame within the deadline, and the camera says nothing is wrong
    WEDGED = "wedged"  # a frame has been in the worker (encoder, encryption, disk) too long
    NOT_WRITING = "not writing"  # a clip is due but no segment reached the disk (disk full?)
    FAILED = "failed"  # the pipeline raised

    @property
    def stuck(self) -> bool:
        """Whether this state stops the watchdog pings (a restart is the cure)."""
        return self in _STUCK


_STUCK = frozenset(
    {CameraState.STALLED, CameraState.WEDGED, CameraState.NOT_WRITING, CameraState.FAILED}
)


@dataclass(frozen=True, slots=True)
class Deadlines:
    """How long a pipeline may go without moving before it counts as stuck, in seconds."""

    stall_s: float
    segment_s: float

    def __post_init__(self) -> None:
        if not self.stall_s > 0:
            raise ValueError(f"stall_s must be > 0, got {self.stall_s}")
        if not self.segment_s > 0:
            raise ValueError(f"segment_s must be > 0, got {self.segment_s}")


@dataclass(frozen=True, slots=True)
class CameraReport:
    """One camera at one moment: its pipeline's progress and what its task and source say."""

    name: str
    progress: PipelineProgress
    reconnecting: bool = False
    error: str | None = None  # the pipeline's task raised this (its type name)


@dataclass(frozen=True, slots=True)
class WriterReport:
    """The consent and audit writer: calls queued or running, and since when the oldest waits."""

    pending: int = 0
    oldest_s: float | None = None


@dataclass(frozen=True, slots=True)
class CameraVerdict:
    """A camera's state and how long (seconds) it has been without the progress that matters."""

    name: str
    state: CameraState
    quiet_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Health:
    """The judgement: each camera's verdict and whether the writer is stuck."""

    cameras: tuple[CameraVerdict, ...]
    writer_pending: int = 0
    writer_stuck_s: float | None = None

    @property
    def ok(self) -> bool:
        """Whether to ping the watchdog: no camera stuck, the writer moving."""
        return self.writer_stuck_s is None and not any(c.state.stuck for c in self.cameras)

    @property
    def recording(self) -> bool:
        """Whether every camera has taken frames (the service is ready): none still starting."""
        return all(c.state is not CameraState.STARTING for c in self.cameras)


def judge(
    cameras: Sequence[CameraReport], writer: WriterReport, now_s: float, deadlines: Deadlines
) -> Health:
    """Each camera's state at ``now_s`` (the clock of the progress stamps) and the writer's."""
    stuck_s = None
    if writer.oldest_s is not None and now_s - writer.oldest_s > deadlines.stall_s:
        stuck_s = now_s - writer.oldest_s
    return Health(
        tuple(_camera(report, now_s, deadlines) for report in cameras),
        writer_pending=writer.pending,
        writer_stuck_s=stuck_s,
    )


def status_line(health: Health, *, owners: int, connections: int) -> str:
    """One line for ``systemctl status``: each camera, owners, the writer's queue, connections."""
    cameras = ", ".join(_describe(verdict) for verdict in health.cameras) or "no camera"
    writer = f"writer queue {health.writer_pending}"
    if health.writer_stuck_s is not None:
        writer += f" (stuck {health.writer_stuck_s:.0f}s)"
    return (
        f"{cameras}; {owners} owner{'' if owners == 1 else 's'}; {writer}; "
        f"{connections} connection{'' if connections == 1 else 's'}"
    )


def _camera(report: CameraReport, now_s: float, deadlines: Deadlines) -> CameraVerdict:
    progress = report.progress
    name = report.name
    if report.error is not None:
        return CameraVerdict(name, CameraState.FAILED)
    if progress.finished:
        return CameraVerdict(name, CameraState.ENDED)
    busy = progress.busy_since_s
    if busy is not None and now_s - busy > deadlines.stall_s:
        return CameraVerdict(name, CameraState.WEDGED, now_s - busy)
    if busy is None:  # waiting for the source: has it delivered lately?
        since = progress.last_frame_s if progress.last_frame_s is not None else progress.started_s
        quiet_s = 0.0 if since is None else now_s - since
        if report.reconnecting:
            return CameraVerdict(name, CameraState.RECONNECTING, quiet_s)
        if quiet_s > deadlines.stall_s:
            return CameraVerdict(name, CameraState.STALLED, quiet_s)
    if progress.last_frame_s is None:  # the first frame is not through the worker yet
        return CameraVerdict(name, CameraState.STARTING)
    if progress.recording_since_s is not None:
        written = max(progress.recording_since_s, progress.last_segment_s or 0.0)
        if now_s - written > deadlines.segment_s + deadlines.stall_s:
            return CameraVerdict(name, CameraState.NOT_WRITING, now_s - written)
    return CameraVerdict(name, CameraState.RECORDING)


def _describe(verdict: CameraVerdict) -> str:
    text = f"{verdict.name} {verdict.state.value}"
    if verdict.state not in (CameraState.RECORDING, CameraState.ENDED, CameraState.STARTING):
        text += f" {verdict.quiet_s:.0f}s"
    return text
