"""What a harness run found, judged against the scenario's ``[expect]``: records and pure checks.

Everything here works on plain values collected during and after a run (per-frame samples, decoded
clip spans, ground truth), so the judgement can be tested without running a pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hardware.sim import Scenario

__all__ = [
    "ClipCheck",
    "EventResult",
    "FrameSample",
    "GroundTruth",
    "HarnessReport",
    "clip_gaps",
    "judge",
    "truth_events",
]


@dataclass(frozen=True, slots=True)
class FrameSample:
    """One frame as the pipeline saw it: motion score and flag, and whether a clip was open."""

    index: int
    pts_s: float
    score: float
    motion: bool
    recording: bool
    truth: frozenset[str]


@dataclass(frozen=True, slots=True)
class GroundTruth:
    """Something that must be recorded: an actor's visibility window or a doorbell press."""

    name: str
    kind: str  # "actor" or "press"
    start_s: float
    end_s: float
    start_index: int  # frame index of the first frame at or after start_s
    available_preroll_s: float  # video the camera delivered just before start_s (caps the check)


@dataclass(frozen=True, slots=True)
class ClipCheck:
    """One recorded clip after decryption and decoding, in source time (from the frame strip)."""

    clip_id: str
    first_s: float
    last_s: float
    frames: int
    segments: int
    bytes: int
    gaps: int  # frames the pipeline received but the clip lacks, plus out-of-order steps
    unreadable: int  # pictures whose strip did not read back
    false: bool = False  # overlaps no ground-truth event


@dataclass(frozen=True, slots=True)
class EventResult:
    """How one ground-truth event was recorded."""

    name: str
    kind: str
    start_s: float
    end_s: float
    recorded: bool
    latency_frames: int | None  # frames from the event's start until a clip was open
    preroll_s: float | None  # seconds of video before the event's start in its clip
    required_preroll_s: float | None  # what [expect] asked, capped by what the camera delivered
    trigger_preroll_s: float | None = None  # seconds of video before the trigger (the recorder's)


@dataclass(frozen=True, slots=True)
class HarnessReport:
    """The result of one ``harness run``; ``passed`` is the scenario's ``[expect]`` verdict."""

    scenario: str
    description: str
    frames: int
    dropped_frames: int
    events: tuple[EventResult, ...]
    clips: tuple[ClipCheck, ...]
    frame_gaps: int
    unreadable_frames: int
    cpu_s: float  # process CPU seconds of the recording run (every thread), not of the checks
    wall_s: float
    peak_rss_mb: float  # the process's peak resident set so far (ru_maxrss), run included
    failures: tuple[str, ...]
    errors: tuple[str, ...] = ()  # RecordingError messages the pipeline reported
    encoded_frames: int = 0  # frames the pipeline encoded with libx264
    remuxed_packets: int = 0  # camera H.264 packets the pipeline passed through untouched
    analysed_frames: int = 0  # pictures the motion detector looked at
    # A two-stream camera: what its detect stream did (losses reported to owners, pictures decoded
    # from the main stream meanwhile, detect pictures of another size scaled back).
    detect_losses: int = 0
    fallback_pictures: int = 0
    resized_pictures: int = 0
    plot: Path | None = None
    samples: tuple[FrameSample, ...] = field(default=(), repr=False)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def false_clips(self) -> int:
        return sum(1 for c in self.clips if c.false)

    @property
    def events_recorded(self) -> int:
        return sum(1 for e in self.events if e.recorded)

    @property
    def segments(self) -> int:
        return sum(c.segments for c in self.clips)

    @property
    def bytes(self) -> int:
        return sum(c.bytes for c in self.clips)

    @property
    def max_trigger_latency_frames(self) -> int | None:
        values = [e.latency_frames for e in self.events if e.latency_frames is not None]
        return max(values) if values else None

    @property
    def min_preroll_s(self) -> float | None:
        """Least video before an event's start in its clip."""
        values = [e.preroll_s for e in self.events if e.preroll_s is not None]
        return min(values) if values else None

    @property
    def min_trigger_preroll_s(self) -> float | None:
        """Least video before the trigger in an event's clip (what [expect] min_preroll_s checks)."""
        values = [e.trigger_preroll_s for e in self.events if e.trigger_preroll_s is not None]
        return min(values) if values else None

    def to_json(self) -> dict[str, Any]:
        """The machine-readable report (what ``--json`` prints)."""
        return {
            "scenario": self.scenario,
            "passed": self.passed,
            "failures": list(self.failures),
            "events": len(self.events),
            "events_recorded": self.events_recorded,
            "false_clips": self.false_clips,
            "max_trigger_latency_frames": self.max_trigger_latency_frames,
            "min_preroll_s": _round(self.min_preroll_s),
            "min_trigger_preroll_s": _round(self.min_trigger_preroll_s),
            "frames": self.frames,
            "dropped_frames": self.dropped_frames,
            "frame_gaps": self.frame_gaps,
            "unreadable_frames": self.unreadable_frames,
            "clips": len(self.clips),
            "segments": self.segments,
            "bytes": self.bytes,
            "cpu_s": round(self.cpu_s, 3),
            "wall_s": round(self.wall_s, 3),
            "peak_rss_MB": round(self.peak_rss_mb, 1),
            "recording_errors": list(self.errors),
            "encoded_frames": self.encoded_frames,
            "remuxed_packets": self.remuxed_packets,
            "analysed_frames": self.analysed_frames,
            "detect_losses": self.detect_losses,
            "fallback_pictures": self.fallback_pictures,
            "resized_pictures": self.resized_pictures,
            "plot": None if self.plot is None else str(self.plot),
            "event_details": [
                {
                    "name": e.name,
                    "kind": e.kind,
                    "start_s": _round(e.start_s),
                    "end_s": _round(e.end_s),
                    "recorded": e.recorded,
                    "latency_frames": e.latency_frames,
                    "preroll_s": _round(e.preroll_s),
                    "trigger_preroll_s": _round(e.trigger_preroll_s),
                }
                for e in self.events
            ],
            "clip_details": [
                {
                    "clip_id": c.clip_id,
                    "first_s": _round(c.first_s),
                    "last_s": _round(c.last_s),
                    "frames": c.frames,
                    "segments": c.segments,
                    "bytes": c.bytes,
                    "gaps": c.gaps,
                    "false": c.false,
                }
                for c in self.clips
            ],
        }

    def text(self) -> str:
        """A human-readable summary, one fact per line."""
        lines = [f"scenario {self.scenario}: {'PASSED' if self.passed else 'FAILED'}"]
        if self.description:
            lines.append(f"  {self.description}")
        for e in self.events:
            state = "recorded" if e.recorded else "NOT recorded"
            latency = "-" if e.latency_frames is None else f"{e.latency_frames} frames"
            preroll = "-"
            if e.preroll_s is not None and e.trigger_preroll_s is not None:
                preroll = f"{e.preroll_s:.2f} s ({e.trigger_preroll_s:.2f} s before the trigger)"
            lines.append(
                f"  event {e.name} [{e.start_s:.2f} s .. {e.end_s:.2f} s]: {state}, "
                f"trigger latency {latency}, pre-roll {preroll}"
            )
        for c in self.clips:
            lines.append(
                f"  clip {c.clip_id} [{c.first_s:.2f} s .. {c.last_s:.2f} s]: {c.frames} frames, "
                f"{c.segments} segments, {c.bytes} bytes, {c.gaps} gaps"
                + (", FALSE (no event)" if c.false else "")
            )
        lines.append(
            f"  frames {self.frames} (dropped at the source {self.dropped_frames}), "
            f"frame gaps {self.frame_gaps}, unreadable {self.unreadable_frames}"
        )
        lines.append(
            f"  pipeline encoded {self.encoded_frames} frames, "
            f"remuxed {self.remuxed_packets} camera packets"
        )
        if self.detect_losses or self.fallback_pictures or self.resized_pictures:
            lines.append(
                f"  detect stream lost {self.detect_losses} times, {self.fallback_pictures} "
                f"pictures decoded from the main stream, {self.resized_pictures} rescaled"
            )
        lines.append(
            f"  cpu {self.cpu_s:.2f} s, wall {self.wall_s:.2f} s, peak RSS {self.peak_rss_mb:.0f} MB"
        )
        lines.extend(f"  recording error: {message}" for message in self.errors)
        lines.extend(f"  failed: {failure}" for failure in self.failures)
        if self.plot is not None:
            lines.append(f"  plot: {self.plot}")
        return "\n".join(lines)


def truth_events(scenario: Scenario, samples: Sequence[FrameSample]) -> list[GroundTruth]:
    """Ground truth from the delivered frames (actors) and the scenario (presses)."""
    if not samples:
        return []
    first_s = samples[0].pts_s
    fps = scenario.camera.fps
    reconnects = sorted(f.end_s for f in scenario.faults_of("disconnect"))
    events: list[GroundTruth] = []

    def available(start_s: float) -> float:
        since = max([first_s, *(end for end in reconnects if end <= start_s)])
        return max(0.0, start_s - since)

    for actor in scenario.actors:
        seen = [s for s in samples if actor.id in s.truth]
        if not seen:
            continue
        start, end = seen[0], seen[-1]
        events.append(
            GroundTruth(
                f"{actor.id} ({actor.kind})",
                "actor",
                start.pts_s,
                end.pts_s,
                start.index,
                available(start.pts_s),
            )
        )
    for press in scenario.presses:
        index = math.ceil(press.at_s * fps - 1e-9)
        at_s = index / fps
        events.append(
            GroundTruth(
                f"press at {press.at_s:g} s",
                "press",
                at_s,
                at_s + press.hold_s,
                index,
                available(at_s),
            )
        )
    return events


def clip_gaps(counters: Iterable[int | None], delivered: set[int]) -> tuple[int, int]:
    """Gaps (missing delivered frames and out-of-order steps) and unreadable pictures in a clip."""
    gaps = unreadable = 0
    last: int | None = None
    for counter in counters:
        if counter is None:
            unreadable += 1
            continue
        if last is not None:
            if counter <= last:
                gaps += 1
            else:
                gaps += sum(1 for i in range(last + 1, counter) if i in delivered)
        last = counter if last is None else max(last, counter)
    return gaps, unreadable


def judge(
    scenario: Scenario,
    truths: Sequence[GroundTruth],
    clips: Sequence[ClipCheck],
    samples: Sequence[FrameSample],
) -> tuple[list[EventResult], list[ClipCheck], list[str]]:
    """Match events to clips, mark false clips, and list the [expect] items that failed."""
    expect = scenario.expect
    by_index = {s.index: s for s in samples}
    results: list[EventResult] = []
    for truth in truths:
        overlapping = [c for c in clips if c.first_s <= truth.end_s and c.last_s >= truth.start_s]
        recorded = bool(overlapping)
        preroll = None
        if recorded:
            first = min(overlapping, key=lambda c: c.first_s)
            preroll = max(0.0, truth.start_s - first.first_s)
        latency = None
        for index in sorted(i for i in by_index if i >= truth.start_index):
            if by_index[index].recording:
                latency = index - truth.start_index
                break
        required = None
        if expect.min_preroll_s is not None:
            required = min(expect.min_preroll_s, truth.available_preroll_s)
        trigger_preroll = None
        if preroll is not None and latency is not None:
            trigger_preroll = preroll + latency / scenario.camera.fps
        results.append(
            EventResult(
                truth.name,
                truth.kind,
                truth.start_s,
                truth.end_s,
                recorded,
                latency,
                preroll,
                required,
                trigger_preroll,
            )
        )
    marked = [
        replace(c, false=not any(c.first_s <= t.end_s and c.last_s >= t.start_s for t in truths))
        for c in clips
    ]
    return results, marked, _failures(scenario, results, marked)


def _failures(
    scenario: Scenario, events: Sequence[EventResult], clips: Sequence[ClipCheck]
) -> list[str]:
    expect = scenario.expect
    failures: list[str] = []
    for e in events:
        must_record = expect.all_events_recorded if e.kind == "actor" else expect.presses_recorded
        if must_record and not e.recorded:
            failures.append(f"event {e.name} was not recorded")
            continue
        if not e.recorded:
            continue
        limit = expect.max_trigger_latency_frames
        late = e.latency_frames is None or (limit is not None and e.latency_frames > limit)
        if e.kind == "actor" and limit is not None and late:
            shown = "never" if e.latency_frames is None else f"{e.latency_frames} frames"
            failures.append(
                f"event {e.name}: trigger latency {shown}, at most {limit} frames allowed"
            )
        # The recorder's pre-roll runs back from the moment it triggered; the frames between the
        # event's start and the trigger are the trigger latency, checked on their own above.
        # One millisecond of slack: times come from millisecond strip timestamps.
        needed, got = e.required_preroll_s, e.trigger_preroll_s
        if needed is not None and (got is None or got < needed - 0.001):
            shown = "none" if got is None else f"{got:.2f} s"
            failures.append(
                f"event {e.name}: pre-roll before the trigger {shown}, "
                f"at least {needed:.2f} s required"
            )
    false_clips = sum(1 for c in clips if c.false)
    if false_clips > expect.max_false_clips:
        spans = ", ".join(f"{c.first_s:.1f}-{c.last_s:.1f} s" for c in clips if c.false)
        failures.append(
            f"{_count(false_clips, 'false clip')} ({spans}), "
            f"at most {expect.max_false_clips} allowed"
        )
    if expect.max_clips is not None and len(clips) > expect.max_clips:
        failures.append(
            f"{_count(len(clips), 'clip')} recorded, at most {expect.max_clips} allowed"
        )
    return failures


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
