"""Scenario parsing: the shipped files, every field, and every error with its exact message."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hardware import ScenarioError
from hardware.sim import load_scenario, parse_scenario
from hardware.sim._scenario_schema import SCHEMA
from hardware.sim.scenario import Actor, Expect, Fault, Light, Press
from tests.hardware.kit import camera_toml

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"

FULL = """\
description = "everything"

[camera]
width = 320
height = 240
fps = 15
seconds = 20
seed = 9
realtime = true
noise = 4.5
ambient = 0.5
h264 = true
start = 2026-06-01T18:30:00Z

[[actor]]
kind = "person"
enter_s = 1
leave_s = 9
path = [[0.0, 0.9], [0.5, 0.9], [1.0, 0.9]]
times = [1, 5, 9]

[[actor]]
id = "box"
kind = "parcel"
enter_s = 4
path = [[0.5, 0.9]]
size = 0.2

[[actor]]
kind = "person"
enter_s = 2
path = [
  [0.1, 0.9],
  [0.2, 0.9],
]

[[light]]
kind = "flicker"
at_s = 3
duration_s = 2
period_s = 0.25

[[light]]
kind = "headlights"
at_s = 6
duration_s = 1
direction = "left"
strength = 0.9

[[press]]
at_s = 5

[[press]]
at_s = 6
hold_s = 3

[[fault]]
kind = "drop_frames"
at_s = 2
duration_s = 1
every = 3

[[fault]]
kind = "clock_jump"
at_s = 7
jump_s = -3600

[[fault]]
kind = "disk_full"
at_s = 8

[expect]
all_events_recorded = false
max_false_clips = 2
max_trigger_latency_frames = 7
min_preroll_s = 4.5
max_clips = 3
presses_recorded = false

[privacy]
zones = [[[0, 0], [0.5, 0], [0.5, 0.5]]]

[motion]
masks = [[[0.5, 0.5], [1, 0.5], [1, 1], [0.5, 1]]]
sensitivity = 0.7
"""


def test_every_shipped_scenario_loads() -> None:
    names = sorted(p.stem for p in SCENARIOS.glob("*.toml"))
    assert {
        "visitor",
        "passing_car",
        "parcel_drop",
        "night_headlights",
        "heavy_noise",
        "disconnect",
    } <= set(names)
    for path in SCENARIOS.glob("*.toml"):
        scenario = load_scenario(path)
        assert scenario.name == str(path)
        assert scenario.description
        assert 20 <= scenario.camera.seconds <= 40
        # Every actor appears after a full 5 s pre-roll can exist.
        assert all(actor.enter_s >= 5 for actor in scenario.actors)


def test_every_field_parses() -> None:
    s = parse_scenario(FULL, "full.toml")
    cam = s.camera
    assert (cam.width, cam.height, cam.fps, cam.seconds, cam.seed) == (320, 240, 15, 20.0, 9)
    assert (cam.realtime, cam.noise, cam.ambient, cam.h264) == (True, 4.5, 0.5, True)
    assert cam.start == dt.datetime(2026, 6, 1, 18, 30, tzinfo=dt.UTC)
    assert cam.frame_count == 300
    assert s.description == "everything"
    assert s.actors == (
        Actor(
            "person-1",
            "person",
            1.0,
            9.0,
            ((0.0, 0.9), (0.5, 0.9), (1.0, 0.9)),
            0.5,
            (1.0, 5.0, 9.0),
        ),
        Actor("box", "parcel", 4.0, 20.0, ((0.5, 0.9),), 0.2),
        Actor("person-2", "person", 2.0, 20.0, ((0.1, 0.9), (0.2, 0.9)), 0.5),
    )
    assert s.lights == (
        Light("flicker", 3.0, 2.0, 0.12, period_s=0.25),
        Light("headlights", 6.0, 1.0, 0.9, direction="left"),
    )
    assert s.presses == (Press(5.0), Press(6.0, 3.0))
    assert s.faults == (
        Fault("drop_frames", 2.0, 1.0, every=3),
        Fault("clock_jump", 7.0, jump_s=-3600.0),
        Fault("disk_full", 8.0),
    )
    assert s.faults_of("disk_full")[0].end_s == float("inf")
    assert s.expect == Expect(False, 2, 7, 4.5, 3, False)
    assert s.privacy_zones == (((0.0, 0.0), (0.5, 0.0), (0.5, 0.5)),)
    assert s.motion_masks == (((0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)),)
    assert s.motion_sensitivity == 0.7


def test_defaults() -> None:
    s = parse_scenario(camera_toml(), "min.toml")
    assert s.camera.seed == 0
    assert s.camera.noise == 2.0
    assert not s.camera.realtime
    assert not s.camera.h264
    assert s.actors == ()
    assert s.lights == ()
    assert s.presses == ()
    assert s.faults == ()
    assert s.expect == Expect()
    assert s.expect.max_false_clips == 0
    assert s.expect.all_events_recorded


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError) as err:
        load_scenario(tmp_path / "nope.toml")
    assert (
        str(err.value)
        == f"{tmp_path / 'nope.toml'}: cannot read the scenario file: No such file or directory"
    )


CAM = camera_toml(seconds=10)  # lines 1-5
ACTOR = '[[actor]]\nkind = "dog"\nenter_s = 1\npath = [[0.5, 0.9]]\n'  # lines 6-9 after CAM

ERRORS = [
    # (text, message after "x.toml")
    (
        "[camera\n",
        " line 1: not valid TOML: Expected ']' at the end of a table declaration (column 8)",
    ),
    ("", ": the [camera] table is missing (it needs width, height, fps and seconds)"),
    (
        CAM + "[cam]\nx = 1\n",
        " line 6: table [cam] is not known (known tables: actor, camera, expect, fault, light, motion, press, privacy)",
    ),
    ("name = 'x'\n" + CAM, " line 1: top level key 'name' is not known (known keys: description)"),
    (
        CAM + "[actor]\nkind = 'dog'\n",
        " line 6: actor must be written [[actor]] (an array of tables), not [actor]",
    ),
    ("[[camera]]\nwidth = 160\n", " line 1: camera must be written [camera] (one table)"),
    (
        CAM + "colour = true\n",
        " line 6: [camera] key 'colour' is not known (known keys: ambient, audio, detect_fps, detect_height, detect_width, fps, h264, height, noise, realtime, seconds, seed, start, tone_hz, width)",
    ),
    (
        "[camera]\nwidth = 160\nheight = 96\nfps = 10\n",
        " line 1: [camera] is missing the required key 'seconds'",
    ),
    (
        camera_toml(width=161),
        " line 2: [camera] width must be an even integer from 160 to 3840, got 161",
    ),
    (
        camera_toml(height=8000),
        " line 3: [camera] height must be an even integer from 96 to 2160, got 8000",
    ),
    (camera_toml(fps=0), " line 4: [camera] fps must be an integer from 1 to 120, got 0"),
    (camera_toml(fps=12.5), " line 4: [camera] fps must be an integer from 1 to 120, got 12.5"),
    (
        camera_toml(seconds=0),
        " line 5: [camera] seconds must be a number greater than 0 and at most 3600, got 0",
    ),
    (
        camera_toml(seconds='"10"'),
        " line 5: [camera] seconds must be a number greater than 0 and at most 3600, got '10'",
    ),
    (
        camera_toml(seed=-1),
        " line 6: [camera] seed must be an integer from 0 to 9223372036854775807, got -1",
    ),
    (camera_toml(realtime=1), " line 6: [camera] realtime must be true or false, got 1"),
    (camera_toml(noise=True), " line 6: [camera] noise must be a number from 0 to 50, got true"),
    (
        camera_toml(start='"noon"'),
        " line 6: [camera] start must be a TOML date-time with a UTC offset, like 2026-06-01T18:30:00Z, got 'noon'",
    ),
    (
        camera_toml(start="2026-06-01T18:30:00"),
        " line 6: [camera] start must be a TOML date-time with a UTC offset, like 2026-06-01T18:30:00Z, got 2026-06-01 18:30:00",
    ),
    (CAM + "[[actor]]\nenter_s = 1\n", " line 6: [[actor]] is missing the required key 'kind'"),
    (
        CAM + "[[actor]]\nkind = 'cat'\n",
        " line 7: [[actor]] kind must be one of car, dog, parcel, person, got 'cat'",
    ),
    (
        CAM + ACTOR + "sped = 3\n",
        " line 10: [[actor]] key 'sped' is not known (known keys: enter_s, id, kind, leave_s, path, size, times)",
    ),
    (
        CAM + '[[actor]]\nkind = "dog"\npath = [[0.5, 0.9]]\n',
        " line 6: [[actor]] is missing the required key 'enter_s' for kind 'dog'",
    ),
    (
        CAM + ACTOR.replace("enter_s = 1", "enter_s = 11"),
        " line 8: [[actor]] enter_s must be at most the run length 10 ([camera] seconds), got 11",
    ),
    (
        CAM + ACTOR + "leave_s = 1\n",
        " line 10: [[actor]] leave_s must be greater than enter_s (1), got 1",
    ),
    (
        CAM + ACTOR.replace("[[0.5, 0.9]]", "[]"),
        " line 9: [[actor]] path must be a list of 1 to 64 [x, y] points, each coordinate from -1 to 2, got []",
    ),
    (
        CAM + ACTOR.replace("[[0.5, 0.9]]", "[[0.5, 3]]"),
        " line 9: [[actor]] path must be a list of 1 to 64 [x, y] points, each coordinate from -1 to 2, got [[0.5, 3]]",
    ),
    (
        CAM + ACTOR.replace("[[0.5, 0.9]]", "[0.5, 0.9]"),
        " line 9: [[actor]] path must be a list of 1 to 64 [x, y] points, each coordinate from -1 to 2, got [0.5, 0.9]",
    ),
    (
        CAM + ACTOR + "size = 0\n",
        " line 10: [[actor]] size must be a number greater than 0 and at most 1, got 0",
    ),
    (
        CAM + ACTOR + "id = 'a b'\n",
        " line 10: [[actor]] id must be 1 to 64 letters, digits, '_', '.' or '-', starting with a letter or digit, got 'a b'",
    ),
    (
        CAM + ACTOR + "id = 'rex'\n" + ACTOR + "id = 'rex'\n",
        " line 15: [[actor]] id 'rex' is used twice (first on line 10)",
    ),
    (
        CAM + ACTOR + "times = [1, 2]\n",
        " line 10: [[actor]] times must have one entry per path point (1), got 2",
    ),
    (
        CAM + ACTOR + "times = [0.5]\n",
        " line 10: [[actor]] times must lie between enter_s (1) and leave_s (10), got 0.5 to 0.5",
    ),
    (
        CAM + ACTOR.replace("[[0.5, 0.9]]", "[[0.5, 0.9], [0.6, 0.9]]") + "times = [3, 2]\n",
        " line 10: [[actor]] times must be a list of times in seconds, one per waypoint, never decreasing, got [3, 2]",
    ),
    (
        CAM + "[[light]]\nkind = 'sun'\nat_s = 1\nduration_s = 1\n",
        " line 7: [[light]] kind must be one of cloud, flicker, headlights, ir_switch, got 'sun'",
    ),
    (
        CAM + "[[light]]\nkind = 'cloud'\nat_s = 1\n",
        " line 6: [[light]] is missing the required key 'duration_s' for kind 'cloud'",
    ),
    (
        CAM + "[[light]]\nkind = 'cloud'\nat_s = 1\nduration_s = 2\nperiod_s = 1\n",
        " line 10: [[light]] key 'period_s' does not apply to kind 'cloud' (it applies to: flicker)",
    ),
    (
        CAM + "[[light]]\nkind = 'headlights'\nat_s = 1\nduration_s = 2\ndirection = 'up'\n",
        " line 10: [[light]] direction must be one of left, right, got 'up'",
    ),
    (
        CAM + "[[light]]\nkind = 'flicker'\nat_s = 1\nduration_s = 0\n",
        " line 9: [[light]] duration_s must be a number greater than 0 and at most 86400, got 0",
    ),
    (
        CAM + "[[light]]\nkind = 'cloud'\nat_s = 12\nduration_s = 1\n",
        " line 8: [[light]] at_s must be at most the run length 10 ([camera] seconds), got 12",
    ),
    (
        CAM + "[[press]]\nat_s = -1\n",
        " line 7: [[press]] at_s must be a number from 0 to 86400, got -1",
    ),
    (CAM + "[[press]]\nhold_s = 1\n", " line 6: [[press]] is missing the required key 'at_s'"),
    (
        CAM + "[[press]]\nat_s = 1\nkind = 'hold'\n",
        " line 8: [[press]] key 'kind' is not known (known keys: at_s, hold_s)",
    ),
    (
        CAM + "[[fault]]\nkind = 'fire'\nat_s = 1\n",
        " line 7: [[fault]] kind must be one of clock_jump, corrupt_packets, detect_resize, detect_stop, disconnect, disk_full, drop_frames, hang, slow_disk, stall, got 'fire'",
    ),
    (
        CAM + "[[fault]]\nkind = 'clock_jump'\nat_s = 1\n",
        " line 6: [[fault]] is missing the required key 'jump_s' for kind 'clock_jump'",
    ),
    (
        CAM + "[[fault]]\nkind = 'clock_jump'\nat_s = 1\njump_s = 5\nduration_s = 1\n",
        " line 10: [[fault]] key 'duration_s' does not apply to kind 'clock_jump' (it applies to: corrupt_packets, detect_resize, detect_stop, disconnect, disk_full, drop_frames, hang, slow_disk, stall)",
    ),
    (
        CAM + "[[fault]]\nkind = 'stall'\nat_s = 1\n",
        " line 6: [[fault]] is missing the required key 'duration_s' for kind 'stall'",
    ),
    (
        CAM + "[[fault]]\nkind = 'drop_frames'\nat_s = 1\nduration_s = 1\nevery = 0\n",
        " line 10: [[fault]] every must be an integer from 1 to 1000, got 0",
    ),
    (
        CAM + "[[fault]]\nkind = 'stall'\nat_s = 1\nduration_s = 1\nevery = 2\n",
        " line 10: [[fault]] key 'every' does not apply to kind 'stall' (it applies to: drop_frames)",
    ),
    (
        CAM + "[expect]\nmax_false_clips = -1\n",
        " line 7: [expect] max_false_clips must be an integer from 0 to 10000, got -1",
    ),
    (
        CAM + "[expect]\nall_events = true\n",
        " line 7: [expect] key 'all_events' is not known (known keys: all_events_recorded, max_clips, max_false_clips, max_trigger_latency_frames, min_preroll_s, presses_recorded)",
    ),
    (
        CAM + "[privacy]\nzones = [[[0, 0], [1, 1]]]\n",
        " line 7: [privacy] zones must be a list of polygons, each a list of 3 to 64 [x, y] points from 0 to 1, got [[[0, 0], [1, 1]]]",
    ),
    (
        CAM + "[motion]\nsensitivity = 2\n",
        " line 7: [motion] sensitivity must be a number greater than 0 and at most 1, got 2",
    ),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_errors_name_file_line_and_key(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, "x.toml")
    assert str(err.value) == "x.toml" + message


def test_error_after_multiline_value_names_the_right_line() -> None:
    text = (
        CAM
        + '[[actor]]\nkind = "dog"\nenter_s = 1\npath = [\n  [0.5, 0.9],\n  [0.6, 0.9],\n]\nspeed = 2\n'
    )
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, "scenarios/x.toml")
    assert str(err.value).startswith("scenarios/x.toml line 13: [[actor]] key 'speed' is not known")


def test_error_in_second_actor_names_its_line() -> None:
    text = CAM + ACTOR + ACTOR.replace("enter_s = 1", "enter_s = true")
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, "x.toml")
    assert str(err.value) == (
        "x.toml line 12: [[actor]] enter_s must be a number from 0 to 86400, got true"
    )


def test_docs_cover_every_key_and_their_example_parses() -> None:
    docs = (SCENARIOS.parent / "docs" / "scenarios.md").read_text(encoding="utf-8")
    for table, keys in SCHEMA.items():
        if table:
            assert f"[{table}]" in docs
        for key in keys:
            assert f"`{key}`" in docs, key
    example = docs.split("```toml\n", 1)[1].split("```", 1)[0]
    scenario = parse_scenario(example, "example.toml")
    assert [a.id for a in scenario.actors] == ["visitor"]
    assert scenario.faults[0].kind == "drop_frames"


_LITERALS = [
    "0",
    "-1",
    "7",
    "0.5",
    "1e9",
    "nan",
    "inf",
    '"x"',
    '"person"',
    "true",
    "[]",
    "[1, 2]",
    "[[0.5, 0.5]]",
    "[[[0, 0], [1, 0], [1, 1]]]",
    "2026-01-01T00:00:00Z",
    "2026-01-01",
    "{a = 1}",
]
_VALUE_LINES = [i for i, line in enumerate(FULL.splitlines()) if " = " in line]


@settings(max_examples=80, deadline=None)
@given(line=st.sampled_from(_VALUE_LINES), literal=st.sampled_from(_LITERALS))
def test_any_bad_value_is_a_scenario_error_naming_a_line(line: int, literal: str) -> None:
    lines = FULL.splitlines()
    key = lines[line].split(" = ", 1)[0]
    lines[line] = f"{key} = {literal}"
    message = ""
    try:
        parse_scenario("\n".join(lines), "x.toml")
    except ScenarioError as err:
        message = str(err)
    assert message == "" or re.match(r"^x\.toml line \d+: ", message), message


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            "h264 = true\ndetect_width = 320\n",
            "line 1: camera needs detect_height too: a detect stream has both sizes",
        ),
        (
            "detect_width = 320\ndetect_height = 180\n",
            "line 6: camera with a detect stream must set h264 = true",
        ),
        ("h264 = true\ndetect_fps = 5\n", "line 7: camera detect_fps needs detect_width"),
    ],
)
def test_a_detect_stream_is_checked(extra: str, message: str) -> None:
    text = "[camera]\nwidth = 640\nheight = 360\nfps = 15\nseconds = 4\n" + extra
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(text, "two.toml")


def test_detect_faults_need_a_detect_stream() -> None:
    text = (
        "[camera]\nwidth = 640\nheight = 360\nfps = 15\nseconds = 4\n\n"
        '[[fault]]\nkind = "detect_stop"\nat_s = 1\nduration_s = 1\n'
    )
    with pytest.raises(ScenarioError, match="fault kind 'detect_stop' needs a detect stream"):
        parse_scenario(text, "two.toml")
