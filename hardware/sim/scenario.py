"""Scenario files: a TOML description of one simulated camera run and what it must produce.

``load_scenario(path)`` and ``parse_scenario(text, name)`` turn the file into frozen records.
Every unknown key or bad value is refused with one message naming the file, the line and the
key, and saying what is allowed. The format is documented in ``docs/scenarios.md``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hardware.errors import ScenarioError
from hardware.sim._scenario_schema import (
    ACTOR_KINDS,
    ARRAYS,
    FAULT_KINDS,
    LIGHT_KINDS,
    REQUIRED_FOR_KIND,
    SCHEMA,
    Bad,
    Point,
    Polygon,
)
from hardware.sim._toml_lines import LineIndex

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
    audio: bool = False  # has a microphone that hears a tone (and a chime while pressed)
    tone_hz: float = 440.0  # the tone the microphone hears
    start: dt.datetime = DEFAULT_START  # wall-clock time of the first frame
    # A second, smaller stream for motion (a two-stream camera); None: one stream only.
    detect_width: int | None = None
    detect_height: int | None = None
    detect_fps: int | None = None  # None: the main stream's rate

    @property
    def two_streams(self) -> bool:
        """Whether the camera delivers a detect substream beside its (H.264) main stream."""
        return self.detect_width is not None

    @property
    def frame_count(self) -> int:
        """Frames in the run: ``ceil(seconds * fps)``, with 1e-9 slack for float error."""
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
    width: int = 0  # detect_resize: the detect stream's size while the fault lasts
    height: int = 0

    @property
    def end_s(self) -> float:
        """When the fault ends, in run seconds; ``inf`` when ``duration_s`` is None."""
        return math.inf if self.duration_s is None else self.at_s + self.duration_s

    def active(self, t_s: float) -> bool:
        """Whether the fault is on at run time ``t_s``: ``at_s <= t_s < end_s`` (1 ns slack)."""
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
        """The faults of ``kind`` (e.g. ``"disconnect"``), in scenario order."""
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
    except RecursionError:  # tomllib recurses once per level of nested arrays and tables
        raise ScenarioError(f"{name}: not valid TOML: a value is nested too deeply") from None
    return _Parser(name, LineIndex.scan(text)).scenario(data)


def _label(table: str) -> str:
    if table == "":
        return "top level"
    return f"[[{table}]]" if table in ARRAYS else f"[{table}]"


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
            if key in SCHEMA and key != "":
                self.check_form(key, value)
            elif key in self.lines.header_forms:
                line = self.lines.header_forms.get(key, (False, None))[1]
                where = f"{self.name} line {line}" if line else self.name
                known = ", ".join(sorted(k for k in SCHEMA if k))
                raise ScenarioError(f"{where}: table [{key}] is not known (known tables: {known})")
        top = self.table("", 0, {k: v for k, v in data.items() if k not in SCHEMA})
        if "camera" not in data:
            raise ScenarioError(
                f"{self.name}: the [camera] table is missing (it needs width, "
                "height, fps and seconds)"
            )
        camera = CameraSpec(**self.table("camera", 0, data["camera"]))
        self.check_streams(camera, data.get("fault", []))
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

    def check_streams(self, camera: CameraSpec, faults: Any) -> None:
        """A detect substream needs both sizes and an H.264 main stream; its faults need it."""
        if (camera.detect_width is None) != (camera.detect_height is None):
            key = "detect_height" if camera.detect_height is None else "detect_width"
            raise self.error(
                "camera", 0, None, f"camera needs {key} too: a detect stream has both sizes"
            )
        if camera.detect_fps is not None and not camera.two_streams:
            raise self.error(
                "camera", 0, "detect_fps", "camera detect_fps needs detect_width and detect_height"
            )
        if camera.two_streams and not camera.h264:
            raise self.error(
                "camera",
                0,
                "detect_width",
                "camera with a detect stream must set h264 = true: its main stream is recorded "
                "as the camera encodes it",
            )
        for i, raw in enumerate(faults if isinstance(faults, list) else []):
            kind = raw.get("kind") if isinstance(raw, dict) else None
            if kind in ("detect_stop", "detect_resize") and not camera.two_streams:
                raise self.error(
                    "fault",
                    i,
                    "kind",
                    f"fault kind '{kind}' needs a detect stream: set detect_width and "
                    "detect_height in [camera]",
                )

    def check_form(self, table: str, value: Any) -> None:
        is_array = table in ARRAYS
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
        schema = SCHEMA[table]
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
            except Bad as bad:
                raise self.error(
                    table, occurrence, key, f"{label} {key} {bad.must}, got {_show(value)}"
                ) from None
        required = [k for k, spec in schema.items() if spec.required]
        if kind is not None:
            required += [
                k for k, kinds in REQUIRED_FOR_KIND.get(table, {}).items() if kind in kinds
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
            return str(SCHEMA[table]["kind"].check(raw["kind"]))
        except Bad as bad:
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
