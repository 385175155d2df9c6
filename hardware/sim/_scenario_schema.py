"""The scenario schema: which tables and keys exist, and the check each value must pass.

A check returns the value (converted) or raises ``Bad`` with what the value "must be ...".
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ACTOR_KINDS",
    "ARRAYS",
    "FAULT_KINDS",
    "LIGHT_KINDS",
    "REQUIRED_FOR_KIND",
    "SCHEMA",
    "Bad",
    "Key",
    "Point",
    "Polygon",
]

Point = tuple[float, float]
Polygon = tuple[Point, ...]

ACTOR_KINDS = ("car", "dog", "parcel", "person")
LIGHT_KINDS = ("cloud", "flicker", "headlights", "ir_switch")
FAULT_KINDS = (
    "clock_jump",
    "corrupt_packets",
    "detect_resize",
    "detect_stop",
    "disconnect",
    "disk_full",
    "drop_frames",
    "hang",
    "slow_disk",
    "stall",
)


class Bad(Exception):
    """A value failed its check (internal: the parser turns it into a ScenarioError)."""

    def __init__(self, must: str) -> None:
        super().__init__(must)
        self.must = must


Check = Callable[[Any], Any]


def _number(lo: float, hi: float, *, lo_open: bool = False, what: str = "a number") -> Check:
    lo_text = f"greater than {lo:g}" if lo_open else f"from {lo:g}"

    def check(value: Any) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and math.isfinite(value) and (value > lo if lo_open else value >= lo) and value <= hi:
            return float(value)
        if lo_open:
            raise Bad(f"must be {what} {lo_text} and at most {hi:g}")
        raise Bad(f"must be {what} {lo_text} to {hi:g}")

    return check


def _integer(lo: int, hi: int, *, even: bool = False) -> Check:
    def check(value: Any) -> int:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if is_int and lo <= value <= hi and (not even or value % 2 == 0):
            return int(value)
        raise Bad(f"must be an {'even ' if even else ''}integer from {lo} to {hi}")

    return check


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise Bad("must be true or false")


def _choice(options: tuple[str, ...]) -> Check:
    def check(value: Any) -> str:
        if isinstance(value, str) and value in options:
            return value
        raise Bad(f"must be one of {', '.join(options)}")

    return check


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def _identifier(value: Any) -> str:
    if isinstance(value, str) and _ID.fullmatch(value):
        return value
    raise Bad("must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit")


def _text(value: Any) -> str:
    if isinstance(value, str) and len(value) <= 2000:
        return value
    raise Bad("must be a string of at most 2000 characters")


def _datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value
    raise Bad("must be a TOML date-time with a UTC offset, like 2026-06-01T18:30:00Z")


def _points(lo: float, hi: float, min_points: int, max_points: int) -> Check:
    must = (
        f"must be a list of {min_points} to {max_points} [x, y] points, "
        f"each coordinate from {lo:g} to {hi:g}"
    )

    def check(value: Any) -> tuple[Point, ...]:
        if not isinstance(value, list) or not min_points <= len(value) <= max_points:
            raise Bad(must)
        points = []
        for item in value:
            if not isinstance(item, list) or len(item) != 2:
                raise Bad(must)
            try:
                x, y = (_number(lo, hi)(c) for c in item)
            except Bad:
                raise Bad(must) from None
            points.append((x, y))
        return tuple(points)

    return check


def _times(value: Any) -> tuple[float, ...]:
    must = "must be a list of times in seconds, one per waypoint, never decreasing"
    if not isinstance(value, list) or not 1 <= len(value) <= 64:
        raise Bad(must)
    try:
        times = tuple(TIME(item) for item in value)
    except Bad:
        raise Bad(must) from None
    if any(b < a for a, b in itertools.pairwise(times)):
        raise Bad(must)
    return times


def _polygons(value: Any) -> tuple[Polygon, ...]:
    polygon = _points(0.0, 1.0, 3, 64)
    if not isinstance(value, list) or len(value) > 32:
        raise Bad("must be a list of at most 32 polygons, each a list of [x, y] points")
    try:
        return tuple(polygon(item) for item in value)
    except Bad:
        raise Bad(
            "must be a list of polygons, each a list of 3 to 64 [x, y] points from 0 to 1"
        ) from None


@dataclass(frozen=True, slots=True)
class Key:
    check: Check
    required: bool = False
    kinds: tuple[str, ...] | None = None  # kinds this key applies to; None: every kind


_MAX_S = 24 * 3600.0
TIME = _number(0.0, _MAX_S)
_DURATION = _number(0.0, _MAX_S, lo_open=True)

SCHEMA: dict[str, dict[str, Key]] = {
    "": {"description": Key(_text)},
    "camera": {
        "width": Key(_integer(160, 3840, even=True), required=True),
        "height": Key(_integer(96, 2160, even=True), required=True),
        "fps": Key(_integer(1, 120), required=True),
        "seconds": Key(_number(0.0, 3600.0, lo_open=True), required=True),
        "seed": Key(_integer(0, 2**63 - 1)),
        "realtime": Key(_boolean),
        "noise": Key(_number(0.0, 50.0)),
        "ambient": Key(_number(0.05, 2.0)),
        "h264": Key(_boolean),
        "audio": Key(_boolean),
        "tone_hz": Key(_number(20.0, 20_000.0)),
        "start": Key(_datetime),
        "detect_width": Key(_integer(96, 1920, even=True)),
        "detect_height": Key(_integer(64, 1080, even=True)),
        "detect_fps": Key(_integer(1, 60)),
    },
    "actor": {
        "id": Key(_identifier),
        "kind": Key(_choice(ACTOR_KINDS), required=True),
        "enter_s": Key(TIME, required=True),
        "leave_s": Key(TIME),
        "path": Key(_points(-1.0, 2.0, 1, 64), required=True),
        "size": Key(_number(0.0, 1.0, lo_open=True)),
        "times": Key(_times),
    },
    "light": {
        "kind": Key(_choice(LIGHT_KINDS), required=True),
        "at_s": Key(TIME, required=True),
        "duration_s": Key(_DURATION, required=True),
        "strength": Key(_number(0.0, 1.0)),
        "period_s": Key(_number(0.02, 60.0), kinds=("flicker",)),
        "direction": Key(_choice(("left", "right")), kinds=("headlights",)),
    },
    "press": {
        "at_s": Key(TIME, required=True),
        "hold_s": Key(_number(0.0, 60.0)),
    },
    "fault": {
        "kind": Key(_choice(FAULT_KINDS), required=True),
        "at_s": Key(TIME, required=True),
        "duration_s": Key(
            _DURATION,
            kinds=(
                "corrupt_packets",
                "detect_resize",
                "detect_stop",
                "disconnect",
                "disk_full",
                "drop_frames",
                "hang",
                "slow_disk",
                "stall",
            ),
        ),
        "every": Key(_integer(1, 1000), kinds=("drop_frames",)),
        "flips": Key(_integer(1, 64), kinds=("corrupt_packets",)),
        "jump_s": Key(_number(-_MAX_S * 365, _MAX_S * 365), kinds=("clock_jump",)),
        "delay_s": Key(_number(0.0, 60.0, lo_open=True), kinds=("slow_disk",)),
        "width": Key(_integer(96, 1920, even=True), kinds=("detect_resize",)),
        "height": Key(_integer(64, 1080, even=True), kinds=("detect_resize",)),
    },
    "expect": {
        "all_events_recorded": Key(_boolean),
        "max_false_clips": Key(_integer(0, 10_000)),
        "max_trigger_latency_frames": Key(_integer(0, 100_000)),
        "min_preroll_s": Key(_number(0.0, 60.0)),
        "max_clips": Key(_integer(0, 10_000)),
        "presses_recorded": Key(_boolean),
    },
    "privacy": {"zones": Key(_polygons)},
    "motion": {"masks": Key(_polygons), "sensitivity": Key(_number(0.0, 1.0, lo_open=True))},
}
ARRAYS = ("actor", "fault", "light", "press")
REQUIRED_FOR_KIND = {
    "fault": {
        "jump_s": ("clock_jump",),
        "duration_s": (
            "corrupt_packets",
            "detect_stop",
            "disconnect",
            "drop_frames",
            "slow_disk",
            "stall",
        ),
        "width": ("detect_resize",),
        "height": ("detect_resize",),
    }
}
