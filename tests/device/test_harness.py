"""The harness: shipped scenarios through the real pipeline, its report, and its command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import device.harness
from device.harness import (
    ClipCheck,
    FrameSample,
    PlotUnavailable,
    clip_gaps,
    judge,
    plot_run,
    run_scenario,
    truth_events,
)
from hardware.sim import parse_scenario
from hub.cli.main import main

SCENARIOS = sorted((Path(__file__).resolve().parents[2] / "scenarios").glob("*.toml"))

SMALL = """
[camera]
width = 320
height = 240
fps = 15
seconds = 9
seed = 11

[[actor]]
id = "walker"
kind = "person"
enter_s = 3
leave_s = 7
path = [[-0.1, 0.95], [1.1, 0.95]]
"""


def test_six_or_more_scenarios_ship() -> None:
    names = {p.stem for p in SCENARIOS}
    assert {"visitor", "passing_car", "parcel_drop", "night_headlights", "heavy_noise"} <= names
    assert "disconnect" in names


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
@pytest.mark.slow
def test_shipped_scenario_meets_its_expectations(path: Path) -> None:
    report = run_scenario(path)
    assert report.failures == ()
    assert report.passed
    scenario = parse_scenario(path.read_text(), str(path))
    # Every ground-truth event recorded with its full pre-roll ...
    assert report.events_recorded == len(report.events)
    expect = scenario.expect
    for event in report.events:
        assert event.recorded, event.name
        if expect.min_preroll_s is not None and event.required_preroll_s is not None:
            assert event.trigger_preroll_s is not None
            assert event.trigger_preroll_s >= event.required_preroll_s - 0.001, event.name
    # ... no clip from light changes alone, and the decoded frames run without gaps.
    assert report.false_clips == 0
    if not scenario.actors and not scenario.presses:
        assert report.clips == ()
    assert report.frame_gaps == 0
    assert report.unreadable_frames == 0
    # A camera with its own H.264 encoder is remuxed, never re-encoded.
    if scenario.camera.h264 and not scenario.privacy_zones:
        assert report.encoded_frames == 0
        assert report.remuxed_packets == report.frames
    else:
        assert report.encoded_frames == report.frames
        assert report.remuxed_packets == 0
    # Source-side drops (a disconnect) are accounted for, not counted as gaps.
    outage = sum(f.duration_s or 0.0 for f in scenario.faults_of("disconnect"))
    assert report.dropped_frames == round(outage * scenario.camera.fps)


def test_json_report_is_the_last_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenario = tmp_path / "small.toml"
    scenario.write_text(SMALL + "\n[expect]\nmax_false_clips = 0\nmin_preroll_s = 3.0\n")
    assert main(["harness", "run", str(scenario), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    doc = json.loads(out[-1])
    for key, kind in {
        "events": int,
        "events_recorded": int,
        "false_clips": int,
        "max_trigger_latency_frames": int,
        "min_preroll_s": float,
        "frames": int,
        "frame_gaps": int,
        "cpu_s": float,
        "peak_rss_MB": float,
        "passed": bool,
        "failures": list,
    }.items():
        assert isinstance(doc[key], kind), key
    assert doc["events"] == doc["events_recorded"] == 1
    assert doc["frames"] == 9 * 15
    assert doc["passed"] is True
    assert doc["failures"] == []
    assert doc["frame_gaps"] == 0
    assert doc["cpu_s"] > 0
    assert doc["peak_rss_MB"] > 10
    assert doc["event_details"][0]["name"] == "walker (person)"
    # Enter at 3 s: the camera had 3 s of video to offer as pre-roll, and the clip has it all.
    assert doc["min_preroll_s"] >= 3.0 - 0.07


def test_failed_expectations_exit_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "impossible.toml"
    scenario.write_text(SMALL + "\n[expect]\nmax_clips = 0\nmax_trigger_latency_frames = 0\n")
    assert main(["harness", "run", str(scenario), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["passed"] is False
    latency = doc["max_trigger_latency_frames"]
    assert latency >= 1  # confirmation takes two frames, so zero cannot hold
    assert doc["failures"] == [
        f"event walker (person): trigger latency {latency} frames, at most 0 frames allowed",
        "1 clip recorded, at most 0 allowed",
    ]


def test_bad_scenario_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text("[camera]\nwidth = 320\nheight = 240\nfps = 15\nseconds = 5\nzoom = 2\n")
    assert main(["harness", "run", str(scenario)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"doorward: error: {scenario} line 6: [camera] key 'zoom' is not known (known keys: "
        "ambient, audio, detect_fps, detect_height, detect_width, fps, h264, height, noise, realtime, seconds, seed, start, tone_hz, width)\n"
    )


def test_missing_scenario_file_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.toml"
    assert main(["harness", "run", str(missing)]) == 2
    assert capsys.readouterr().err == (
        f"doorward: error: {missing}: cannot read the scenario file: No such file or directory\n"
    )


@pytest.mark.slow
def test_report_dir_gets_a_plot_and_a_text_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "small.toml"
    scenario.write_text(SMALL)
    assert main(["harness", "run", str(scenario), "--report", str(tmp_path / "out")]) == 0
    png = tmp_path / "out" / "small.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (tmp_path / "out" / "small.txt").read_text()
    assert text.startswith("scenario small: PASSED\n")
    assert "event walker (person)" in text
    assert capsys.readouterr().out.startswith("scenario small: PASSED\n")


def test_disk_full_degrades_and_the_run_completes(tmp_path: Path) -> None:
    scenario = tmp_path / "full.toml"
    scenario.write_text(
        SMALL
        + '\n[[fault]]\nkind = "disk_full"\nat_s = 0\n\n[expect]\nall_events_recorded = false\n'
    )
    report = run_scenario(scenario)
    assert report.clips == ()
    assert report.errors  # the pipeline reported the refused clip instead of crashing
    assert "disk full" in report.errors[0]
    assert report.events_recorded == 0
    assert report.passed  # nothing was expected to be recorded


# -- the pure judgement ----------------------------------------------------------------------


def _samples(n: int, recording_from: int, truth_from: int) -> list[FrameSample]:
    return [
        FrameSample(
            i,
            i / 10,
            0.0,
            i >= recording_from,
            i >= recording_from,
            frozenset({"a"}) if i >= truth_from else frozenset(),
        )
        for i in range(n)
    ]


def test_clip_gaps_count_only_frames_the_pipeline_received() -> None:
    delivered = set(range(20)) - {5, 6}
    assert clip_gaps([1, 2, 3, 4, 7, 8], delivered) == (0, 0)  # 5 and 6 were never delivered
    assert clip_gaps([1, 2, 4, 7, None, 9], delivered) == (2, 1)  # 3 and 8 lost, one unreadable
    assert clip_gaps([1, 2, 2, 3], delivered) == (1, 0)  # a repeat is out of order


def test_judge_marks_false_clips_and_measures_latency_and_preroll() -> None:
    scenario = parse_scenario(
        '[camera]\nwidth = 320\nheight = 240\nfps = 10\nseconds = 10\n\n[[actor]]\nid = "a"\n'
        'kind = "dog"\nenter_s = 5\nleave_s = 8\npath = [[0.5, 0.9]]\n\n[expect]\n'
        "min_preroll_s = 3.0\nmax_trigger_latency_frames = 1\n",
        "s.toml",
    )
    samples = _samples(100, recording_from=53, truth_from=50)
    truths = truth_events(scenario, samples)
    clips = [
        ClipCheck("real", 2.5, 9.9, 75, 4, 1000, 0, 0),
        ClipCheck("ghost", 0.2, 1.0, 9, 1, 100, 0, 0),
    ]
    events, marked, failures = judge(scenario, truths, clips, samples)
    assert [c.false for c in marked] == [False, True]
    (event,) = events
    assert event.latency_frames == 3
    assert event.preroll_s == pytest.approx(2.5)
    assert event.trigger_preroll_s == pytest.approx(2.8)
    assert failures == [
        "event a (dog): trigger latency 3 frames, at most 1 frames allowed",
        "event a (dog): pre-roll before the trigger 2.80 s, at least 3.00 s required",
        "1 false clip (0.2-1.0 s), at most 0 allowed",
    ]


def test_press_is_ground_truth() -> None:
    scenario = parse_scenario(
        "[camera]\nwidth = 320\nheight = 240\nfps = 10\nseconds = 10\n\n[[press]]\nat_s = 4.05\n",
        "p.toml",
    )
    truths = truth_events(scenario, _samples(100, 100, 100))
    assert [(t.name, t.kind, t.start_index, t.start_s) for t in truths] == [
        ("press at 4.05 s", "press", 41, 4.1)
    ]
    _, _, failures = judge(scenario, truths, [], _samples(100, 100, 100))
    assert failures == ["event press at 4.05 s was not recorded"]


def test_unwritable_report_dir_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "small.toml"
    scenario.write_text(SMALL)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert main(["harness", "run", str(scenario), "--report", str(blocker / "out")]) == 2
    assert capsys.readouterr().err == (
        f"doorward: error: cannot write the report into {blocker / 'out'}: Not a directory\n"
    )


def test_a_report_without_matplotlib_says_how_to_install_it_before_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = tmp_path / "small.toml"
    scenario.write_text(SMALL)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now fails
    assert main(["harness", "run", str(scenario), "--report", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # refused up front: no run, no report
    assert captured.err == (
        "doorward: error: the harness report's plot needs matplotlib, which is not installed: "
        "pip install 'doorward[harness]' (or run without --report)\n"
    )
    assert not (tmp_path / "out").exists()


def test_the_plot_itself_refuses_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(PlotUnavailable) as info:
        plot_run(tmp_path / "x.png", "x", [], [], [], 0.01)
    assert str(info.value) == (
        "the harness report's plot needs matplotlib, which cannot be imported: "
        "pip install 'doorward[harness]'"
    )


def test_harness_all_is_pinned() -> None:
    assert sorted(device.harness.__all__) == [
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
    for name in device.harness.__all__:
        assert getattr(device.harness, name) is not None
