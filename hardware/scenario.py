"""Scenario files: a TOML description of one simulated camera run and what it must produce.

``load_scenario(path)`` and ``parse_scenario(text, name)`` turn the file into frozen records.
Every unknown key or bad value is refused with one message naming the file, the line and the
key, and saying what is allowed. The format is documented in ``docs/scenarios.md``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardware._toml_lines import LineIndex
from hardware.errors import ScenarioError

__all__ = [
    "ACTOR_KINDS",
    "FAULT_KINDS",
    "LIGHT_KINDS",
    "Actor",
    "CameraSpec",
    "Expect",
    "Fault",
    "Light",
    "Point",
    "Polygon",
    "Press",
    "Scenario",
    "load_scenario",
    "parse_scenario",
]

Point = tuple[float, float]
Polygon = tuple[Point, ...]

ACTOR_KINDS = ("car", "dog", "parcel", "person")
LIGHT_KINDS = ("cloud", "flicker", "headlights", "ir_switch")
FAULT_KINDS = (
    "clock_jump",
    "corrupt_packets",
    "disconnect",
    "disk_full",
    "drop_frames",
    "slow_disk",
    "stall",
)
DEFAULT_SIZE = {"person": 0.5, "car": 0.35, "dog": 0.18, "parcel": 0.1}
DEFAULT_STRENGTH = {"headlights": 0.6, "cloud": 0.35, "ir_switch": 0.5, "flicker": 0.12}
_EPSILON_S = 1e-9
DEFAULT_START = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class CameraSpec:
    """The simulated camera: picture size, rate, run length, randomness and sensor."""

    width: int
    height: int
    fps: int
    seconds: float
    seed: int = 0
    realtime: bool = False
    noise: float = 2.0  # sensor noise, standard deviation in luma levels
    ambient: float = 1.0  # scene brightness: 1 is daylight, 0.3 is night
    h264: bool = False  # deliver H.264 packets too, like a camera with a hardware encoder
    start: dt.datetime = DEFAULT_START  # wall-clock time of the first frame

    @property
    def frame_count(self) -> int:
        return math.ceil(self.seconds * self.fps - 1e-9)


@dataclass(frozen=True, slots=True)
class Actor:
    """Something that moves through the picture: bottom-centre follows ``path`` at constant speed."""

    id: str
    kind: str
    enter_s: float
    leave_s: float
    path: tuple[Point, ...]
    size: float  # height as a fraction of the picture height
    times: tuple[float, ...] | None = None  # when each waypoint is reached; None: constant speed


@dataclass(frozen=True, slots=True)
class Light:
    """A global lighting change that a detector must not count as motion."""

    kind: str
    at_s: float
    duration_s: float
    strength: float
    period_s: float = 0.5  # flicker only
    direction: str = "right"  # headlights only: where the beam travels to


@dataclass(frozen=True, slots=True)
class Press:
    """A doorbell press at ``at_s``; ``hold_s`` > 0 makes it a hold."""

    at_s: float
    hold_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Fault:
    """A fault injected at the source, or (disk_full, slow_disk) by the storage side."""

    kind: str
    at_s: float
    duration_s: float | None = None  # None: until the end of the run
    every: int = 1  # drop_frames: drop every n-th frame of the window
    flips: int = 4  # corrupt_packets: bytes flipped per packet
    jump_s: float = 0.0  # clock_jump: how far the wall clock jumps
    delay_s: float = 0.5  # slow_disk: extra seconds per write

    @property
    def end_s(self) -> float:
        return math.inf if self.duration_s is None else self.at_s + self.duration_s

    def active(self, t_s: float) -> bool:
        # The tolerance keeps at_s + duration_s rounding (0.2 + 0.4 > 0.6) off frame times.
        return self.at_s - _EPSILON_S <= t_s < self.end_s - _EPSILON_S


@dataclass(frozen=True, slots=True)
class Expect:
    """What the pipeline must produce for this scenario; None means not checked."""

    all_events_recorded: bool = True
    max_false_clips: int = 0
    max_trigger_latency_frames: int | None = None
    min_preroll_s: float | None = None
    max_clips: int | None = None
    presses_recorded: bool = True


@dataclass(frozen=True, slots=True)
class Scenario:
    """One parsed scenario file."""

    name: str
    camera: CameraSpec
    actors: tuple[Actor, ...] = ()
    lights: tuple[Light, ...] = ()
    presses: tuple[Press, ...] = ()
    faults: tuple[Fault, ...] = ()
    expect: Expect = Expect()
    privacy_zones: tuple[Polygon, ...] = ()
    motion_masks: tuple[Polygon, ...] = ()
    motion_sensitivity: float | None = None
    description: str = ""

    def faults_of(self, kind: str) -> tuple[Fault, ...]:
        return tuple(f for f in self.faults if f.kind == kind)


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raises ScenarioError naming file, line and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read the scenario file: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{path}: the scenario file is not UTF-8 text") from exc
    return parse_scenario(text, str(path))


def parse_scenario(text: str, name: str) -> Scenario:
    """Validate a scenario's TOML text; ``name`` (usually the path) prefixes every error."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _syntax_error(name, exc) from exc
    return _Parser(name, LineIndex.scan(text)).scenario(data)


# --- value checkers: return the value or raise _Bad("must be ...") --------------------------


class _Bad(Exception):
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
            raise _Bad(f"must be {what} {lo_text} and at most {hi:g}")
        raise _Bad(f"must be {what} {lo_text} to {hi:g}")

    return check


def _integer(lo: int, hi: int, *, even: bool = False) -> Check:
    def check(value: Any) -> int:
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if is_int and lo <= value <= hi and (not even or value % 2 == 0):
            return int(value)
        raise _Bad(f"must be an {'even ' if even else ''}integer from {lo} to {hi}")

    return check


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _Bad("must be true or false")


def _choice(options: tuple[str, ...]) -> Check:
    def check(value: Any) -> str:
        if isinstance(value, str) and value in options:
            return value
        raise _Bad(f"must be one of {', '.join(options)}")

    return check


_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


def _identifier(value: Any) -> str:
    if isinstance(value, str) and _ID.fullmatch(value):
        return value
    raise _Bad("must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit")


def _text(value: Any) -> str:
    if isinstance(value, str) and len(value) <= 2000:
        return value
    raise _Bad("must be a string of at most 2000 characters")


def _datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value
    raise _Bad("must be a TOML date-time with a UTC offset, like 2026-06-01T18:30:00Z")


def _points(lo: float, hi: float, min_points: int, max_points: int) -> Check:
    must = (
        f"must be a list of {min_points} to {max_points} [x, y] points, "
        f"each coordinate from {lo:g} to {hi:g}"
    )

    def check(value: Any) -> tuple[Point, ...]:
        if not isinstance(value, list) or not min_points <= len(value) <= max_points:
            raise _Bad(must)
        points = []
        for item in value:
            if not isinstance(item, list) or len(item) != 2:
                raise _Bad(must)
            try:
                x, y = (_number(lo, hi)(c) for c in item)
            except _Bad:
                raise _Bad(must) from None
            points.append((x, y))
        return tuple(points)

    return check


def _times(value: Any) -> tuple[float, ...]:
    must = "must be a list of times in seconds, one per waypoint, never decreasing"
    if not isinstance(value, list) or not 1 <= len(value) <= 64:
        raise _Bad(must)
    try:
        times = tuple(_TIME(item) for item in value)
    except _Bad:
        raise _Bad(must) from None
    if any(b < a for a, b in itertools.pairwise(times)):
        raise _Bad(must)
    return times


def _polygons(value: Any) -> tuple[Polygon, ...]:
    polygon = _points(0.0, 1.0, 3, 64)
    if not isinstance(value, list) or len(value) > 32:
        raise _Bad("must be a list of at most 32 polygons, each a list of [x, y] points")
    try:
        return tuple(polygon(item) for item in value)
    except _Bad:
        raise _Bad(
            "must be a list of polygons, each a list of 3 to 64 [x, y] points from 0 to 1"
        ) from None


@dataclass(frozen=True, slots=True)
class _Key:
    check: Check
    required: bool = False
    kinds: tuple[str, ...] | None = None  # kinds this key applies to; None: every kind


_MAX_S = 24 * 3600.0
_TIME = _number(0.0, _MAX_S)
_DURATION = _number(0.0, _MAX_S, lo_open=True)

_SCHEMA: dict[str, dict[str, _Key]] = {
    "": {"description": _Key(_text)},
    "camera": {
        "width": _Key(_integer(160, 3840, even=True), required=True),
        "height": _Key(_integer(96, 2160, even=True), required=True),
        "fps": _Key(_integer(1, 120), required=True),
        "seconds": _Key(_number(0.0, 3600.0, lo_open=True), required=True),
        "seed": _Key(_integer(0, 2**63 - 1)),
        "realtime": _Key(_boolean),
        "noise": _Key(_number(0.0, 50.0)),
        "ambient": _Key(_number(0.05, 2.0)),
        "h264": _Key(_boolean),
        "start": _Key(_datetime),
    },
    "actor": {
        "id": _Key(_identifier),
        "kind": _Key(_choice(ACTOR_KINDS), required=True),
        "enter_s": _Key(_TIME, required=True),
        "leave_s": _Key(_TIME),
        "path": _Key(_points(-1.0, 2.0, 1, 64), required=True),
        "size": _Key(_number(0.0, 1.0, lo_open=True)),
        "times": _Key(_times),
    },
    "light": {
        "kind": _Key(_choice(LIGHT_KINDS), required=True),
        "at_s": _Key(_TIME, required=True),
        "duration_s": _Key(_DURATION, required=True),
        "strength": _Key(_number(0.0, 1.0)),
        "period_s": _Key(_number(0.02, 60.0), kinds=("flicker",)),
        "direction": _Key(_choice(("left", "right")), kinds=("headlights",)),
    },
    "press": {
        "at_s": _Key(_TIME, required=True),
        "hold_s": _Key(_number(0.0, 60.0)),
    },
    "fault": {
        "kind": _Key(_choice(FAULT_KINDS), required=True),
        "at_s": _Key(_TIME, required=True),
        "duration_s": _Key(
            _DURATION,
            kinds=(
                "corrupt_packets",
                "disconnect",
                "disk_full",
                "drop_frames",
                "slow_disk",
                "stall",
            ),
        ),
        "every": _Key(_integer(1, 1000), kinds=("drop_frames",)),
        "flips": _Key(_integer(1, 64), kinds=("corrupt_packets",)),
        "jump_s": _Key(_number(-_MAX_S * 365, _MAX_S * 365), kinds=("clock_jump",)),
        "delay_s": _Key(_number(0.0, 60.0, lo_open=True), kinds=("slow_disk",)),
    },
    "expect": {
        "all_events_recorded": _Key(_boolean),
        "max_false_clips": _Key(_integer(0, 10_000)),
        "max_trigger_latency_frames": _Key(_integer(0, 100_000)),
        "min_preroll_s": _Key(_number(0.0, 60.0)),
        "max_clips": _Key(_integer(0, 10_000)),
        "presses_recorded": _Key(_boolean),
    },
    "privacy": {"zones": _Key(_polygons)},
    "motion": {"masks": _Key(_polygons), "sensitivity": _Key(_number(0.0, 1.0, lo_open=True))},
}
_ARRAYS = ("actor", "fault", "light", "press")
_REQUIRED_FOR_KIND = {
    "fault": {
        "jump_s": ("clock_jump",),
        "duration_s": ("corrupt_packets", "disconnect", "drop_frames", "slow_disk", "stall"),
    }
}


def _label(table: str) -> str:
    if table == "":
        return "top level"
    return f"[[{table}]]" if table in _ARRAYS else f"[{table}]"


class _Parser:
    def __init__(self, name: str, lines: LineIndex) -> None:
        self.name = name
        self.lines = lines

    def error(self, table: str, occurrence: int, key: str | None, message: str) -> ScenarioError:
        line = self.lines.line_of(table, occurrence, key)
        where = f"{self.name} line {line}" if line is not None else self.name
        return ScenarioError(f"{where}: {message}")

    def scenario(self, data: Mapping[str, Any]) -> Scenario:
        for key, value in data.items():
            if key in _SCHEMA and key != "":
                self.check_form(key, value)
            elif key in self.lines.header_forms:
                line = self.lines.header_forms.get(key, (False, None))[1]
                where = f"{self.name} line {line}" if line else self.name
                known = ", ".join(sorted(k for k in _SCHEMA if k))
                raise ScenarioError(f"{where}: table [{key}] is not known (known tables: {known})")
        top = self.table("", 0, {k: v for k, v in data.items() if k not in _SCHEMA})
        if "camera" not in data:
            raise ScenarioError(
                f"{self.name}: the [camera] table is missing (it needs width, "
                "height, fps and seconds)"
            )
        camera = CameraSpec(**self.table("camera", 0, data["camera"]))
        actors = self.actors(data.get("actor", []), camera)
        lights = tuple(self.light(i, raw, camera) for i, raw in enumerate(data.get("light", [])))
        presses = tuple(
            self.timed(Press, "press", i, raw, camera)
            for i, raw in enumerate(data.get("press", []))
        )
        faults = tuple(
            self.timed(Fault, "fault", i, raw, camera)
            for i, raw in enumerate(data.get("fault", []))
        )
        expect = Expect(**self.table("expect", 0, data.get("expect", {})))
        privacy = self.table("privacy", 0, data.get("privacy", {}))
        motion = self.table("motion", 0, data.get("motion", {}))
        return Scenario(
            name=self.name,
            camera=camera,
            actors=actors,
            lights=lights,
            presses=presses,
            faults=faults,
            expect=expect,
            privacy_zones=privacy.get("zones", ()),
            motion_masks=motion.get("masks", ()),
            motion_sensitivity=motion.get("sensitivity"),
            description=top.get("description", ""),
        )

    def check_form(self, table: str, value: Any) -> None:
        is_array = table in _ARRAYS
        if is_array and not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
            line = self.lines.header_forms.get(table, (False, None))[1]
            where = f"{self.name} line {line}" if line else self.name
            raise ScenarioError(
                f"{where}: {table} must be written [[{table}]] (an array of tables), not [{table}]"
            )
        if not is_array and not isinstance(value, dict):
            line = self.lines.header_forms.get(table, (False, None))[1]
            where = f"{self.name} line {line}" if line else self.name
            raise ScenarioError(f"{where}: {table} must be written [{table}] (one table)")

    def table(
        self, table: str, occurrence: int, raw: Mapping[str, Any], kind: str | None = None
    ) -> dict[str, Any]:
        schema = _SCHEMA[table]
        label = _label(table)
        out: dict[str, Any] = {}
        for key, value in raw.items():
            spec = schema.get(key)
            if spec is None:
                known = ", ".join(sorted(schema))
                raise self.error(
                    table,
                    occurrence,
                    key,
                    f"{label} key '{key}' is not known (known keys: {known})",
                )
            if kind is not None and spec.kinds is not None and kind not in spec.kinds:
                raise self.error(
                    table,
                    occurrence,
                    key,
                    f"{label} key '{key}' does not apply to kind '{kind}' "
                    f"(it applies to: {', '.join(spec.kinds)})",
                )
            try:
                out[key] = spec.check(value)
            except _Bad as bad:
                raise self.error(
                    table, occurrence, key, f"{label} {key} {bad.must}, got {_show(value)}"
                ) from None
        required = [k for k, spec in schema.items() if spec.required]
        if kind is not None:
            required += [
                k for k, kinds in _REQUIRED_FOR_KIND.get(table, {}).items() if kind in kinds
            ]
        for key in required:
            if key not in out:
                suffix = f" for kind '{kind}'" if kind is not None and key != "kind" else ""
                raise self.error(
                    table,
                    occurrence,
                    None,
                    f"{label} is missing the required key '{key}'{suffix}",
                )
        return out

    def kind_of(self, table: str, occurrence: int, raw: Mapping[str, Any]) -> str:
        if "kind" not in raw:
            raise self.error(
                table, occurrence, None, f"{_label(table)} is missing the required key 'kind'"
            )
        try:
            return str(_SCHEMA[table]["kind"].check(raw["kind"]))
        except _Bad as bad:
            raise self.error(
                table,
                occurrence,
                "kind",
                f"{_label(table)} kind {bad.must}, got {_show(raw['kind'])}",
            ) from None

    def within_run(self, table: str, i: int, key: str, value: float, camera: CameraSpec) -> None:
        if value > camera.seconds:
            raise self.error(
                table,
                i,
                key,
                f"{_label(table)} {key} must be at most the run length {camera.seconds:g} "
                f"([camera] seconds), got {value:g}",
            )

    def actors(self, raws: list[dict[str, Any]], camera: CameraSpec) -> tuple[Actor, ...]:
        actors: list[Actor] = []
        seen: dict[str, int] = {}
        per_kind: dict[str, int] = {}
        for i, raw in enumerate(raws):
            kind = self.kind_of("actor", i, raw)
            values = self.table("actor", i, raw, kind)
            per_kind[kind] = per_kind.get(kind, 0) + 1
            actor_id = values.get("id", f"{kind}-{per_kind[kind]}")
            if actor_id in seen:
                raise self.error(
                    "actor",
                    i,
                    "id" if "id" in values else None,
                    f"[[actor]] id '{actor_id}' is used twice (first on line {seen[actor_id]})",
                )
            seen[actor_id] = self.lines.line_of("actor", i, "id") or 0
            enter_s = values["enter_s"]
            self.within_run("actor", i, "enter_s", enter_s, camera)
            leave_s = values.get("leave_s", camera.seconds)
            if leave_s <= enter_s:
                raise self.error(
                    "actor",
                    i,
                    "leave_s",
                    f"[[actor]] leave_s must be greater than enter_s ({enter_s:g}), got {leave_s:g}",
                )
            times = values.get("times")
            if times is not None:
                self.check_times(i, times, values["path"], enter_s, leave_s)
            actors.append(
                Actor(
                    id=actor_id,
                    kind=kind,
                    enter_s=enter_s,
                    leave_s=leave_s,
                    path=values["path"],
                    size=values.get("size", DEFAULT_SIZE[kind]),
                    times=times,
                )
            )
        return tuple(actors)

    def check_times(
        self,
        i: int,
        times: tuple[float, ...],
        path: tuple[Point, ...],
        enter_s: float,
        leave_s: float,
    ) -> None:
        if len(times) != len(path):
            raise self.error(
                "actor",
                i,
                "times",
                f"[[actor]] times must have one entry per path point ({len(path)}), "
                f"got {len(times)}",
            )
        if times[0] < enter_s or times[-1] > leave_s:
            raise self.error(
                "actor",
                i,
                "times",
                f"[[actor]] times must lie between enter_s ({enter_s:g}) and leave_s "
                f"({leave_s:g}), got {times[0]:g} to {times[-1]:g}",
            )

    def light(self, i: int, raw: dict[str, Any], camera: CameraSpec) -> Light:
        kind = self.kind_of("light", i, raw)
        values = self.table("light", i, raw, kind)
        self.within_run("light", i, "at_s", values["at_s"], camera)
        values.setdefault("strength", DEFAULT_STRENGTH[kind])
        return Light(**values)

    def timed(self, cls: Any, table: str, i: int, raw: dict[str, Any], camera: CameraSpec) -> Any:
        kind = self.kind_of(table, i, raw) if table == "fault" else None
        values = self.table(table, i, raw, kind)
        self.within_run(table, i, "at_s", values["at_s"], camera)
        return cls(**values)


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
    if isinstance(value, list):
        return "a list" if len(repr(value)) > 40 else repr(value)
    if isinstance(value, dict):
        return "a table"
    return str(value)


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def _syntax_error(name: str, exc: tomllib.TOMLDecodeError) -> ScenarioError:
    text = str(exc)
    match = _TOML_POSITION.search(text)
    if match is None:
        return ScenarioError(f"{name}: not valid TOML: {text}")
    reason = text[: match.start()]
    return ScenarioError(
        f"{name} line {match.group(1)}: not valid TOML: {reason} (column {match.group(2)})"
    )
