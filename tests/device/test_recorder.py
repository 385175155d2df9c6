"""The recorder state machine, the pre-roll buffer and the recording config, driven synchronously."""

from __future__ import annotations

import re
from fractions import Fraction

import pytest

from device import Recorder, RecorderAction, RecorderConfig, RecorderState
from device._preroll import PrerollBuffer, TimedPacket

A = RecorderAction
S = RecorderState
CONFIG = RecorderConfig(pre_roll_s=5, post_roll_s=2, max_clip_s=10)

# (motion, press, pts_s, keyframe) -> (action, state after)
CASES = {
    "idle stays idle": [((False, False, 0.0, True), (A.NONE, S.IDLE))],
    "motion starts a clip": [((True, False, 1.0, False), (A.START, S.RECORDING))],
    "a press starts a clip": [((False, True, 1.0, False), (A.START, S.RECORDING))],
    "post roll then stop": [
        ((True, False, 0.0, True), (A.START, S.RECORDING)),
        ((False, False, 1.0, False), (A.RECORD, S.POST_ROLL)),
        ((False, False, 2.9, False), (A.RECORD, S.POST_ROLL)),
        ((False, False, 3.0, False), (A.STOP, S.IDLE)),
        ((False, False, 3.1, False), (A.NONE, S.IDLE)),
    ],
    "motion during post roll resumes recording": [
        ((True, False, 0.0, True), (A.START, S.RECORDING)),
        ((False, False, 1.0, False), (A.RECORD, S.POST_ROLL)),
        ((True, False, 2.5, False), (A.RECORD, S.RECORDING)),
        ((False, False, 3.0, False), (A.RECORD, S.POST_ROLL)),
        ((False, False, 4.9, False), (A.RECORD, S.POST_ROLL)),
        ((False, False, 5.0, False), (A.STOP, S.IDLE)),
    ],
    "a press during post roll resumes recording": [
        ((True, False, 0.0, True), (A.START, S.RECORDING)),
        ((False, False, 1.0, False), (A.RECORD, S.POST_ROLL)),
        ((False, True, 2.0, False), (A.RECORD, S.RECORDING)),
    ],
    "max length splits only at a keyframe": [
        ((True, False, 0.0, True), (A.START, S.RECORDING)),
        ((True, False, 10.0, False), (A.RECORD, S.RECORDING)),
        ((True, False, 10.5, True), (A.SPLIT, S.RECORDING)),
        ((True, False, 20.0, True), (A.RECORD, S.RECORDING)),
        ((True, False, 20.5, True), (A.SPLIT, S.RECORDING)),
    ],
    "a new clip after the stop": [
        ((True, False, 0.0, True), (A.START, S.RECORDING)),
        ((False, False, 1.0, False), (A.RECORD, S.POST_ROLL)),
        ((False, False, 3.0, False), (A.STOP, S.IDLE)),
        ((True, False, 4.0, False), (A.START, S.RECORDING)),
    ],
}


@pytest.mark.parametrize("steps", CASES.values(), ids=CASES.keys())
def test_recorder_table(steps: list[tuple[tuple[bool, bool, float, bool], tuple[A, S]]]) -> None:
    recorder = Recorder(CONFIG, name="t")
    for (motion, press, pts_s, keyframe), (action, state) in steps:
        got = recorder.step(motion=motion, press=press, pts_s=pts_s, keyframe=keyframe)
        assert (got, recorder.state) == (action, state), f"at pts_s={pts_s}"


def test_recorder_logs_transitions(caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder(CONFIG, name="porch")
    with caplog.at_level("INFO", logger="device._recorder"):
        recorder.step(motion=True, press=False, pts_s=1.0, keyframe=True)
    assert caplog.messages == ["recorder.state name=porch from=idle to=recording pts_s=1.000"]


def packet(pts_s: float, keyframe: bool, size: int = 10) -> TimedPacket:
    return TimedPacket(
        b"\x00" * size,
        round(pts_s * 90000),
        round(pts_s * 90000),
        Fraction(1, 90000),
        keyframe,
        pts_s,
        1000.0 + pts_s,
    )


def feed(
    buffer: PrerollBuffer, seconds: float, fps: int = 10, gop_s: float = 2.0, size: int = 10
) -> None:
    gop = round(gop_s * fps)
    for i in range(round(seconds * fps)):
        buffer.push(packet(i / fps, i % gop == 0, size))


def test_preroll_drops_packets_before_the_first_keyframe() -> None:
    buffer = PrerollBuffer(5.0, 1 << 20)
    buffer.push(packet(0.0, False))
    buffer.push(packet(0.1, False))
    assert buffer.packets() == []
    buffer.push(packet(0.2, True))
    assert [p.pts_s for p in buffer.packets()] == [0.2]


@pytest.mark.parametrize("seconds", [3.0, 7.3, 10.0, 19.9, 30.0])
def test_preroll_starts_at_a_keyframe_and_covers_the_window(seconds: float) -> None:
    buffer = PrerollBuffer(5.0, 1 << 20)
    feed(buffer, seconds)
    packets = buffer.packets()
    newest = packets[-1].pts_s
    assert packets[0].keyframe
    assert newest - packets[0].pts_s >= min(5.0, newest)  # the full window when recorded
    assert newest - packets[0].pts_s < 5.0 + 2.0  # never more than one extra GOP


def test_preroll_byte_cap_keeps_the_newest_gop() -> None:
    buffer = PrerollBuffer(5.0, 500)
    feed(buffer, 9.0, size=20)  # 20 packets of 20 bytes per GOP: 400 bytes
    packets = buffer.packets()
    assert packets[0].keyframe
    assert buffer.size_bytes == sum(len(p.data) for p in packets) <= 500
    assert packets[0].pts_s == 8.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pre_roll_s": -1}, "pre_roll_s must be between 0 and 60 seconds, got -1"),
        ({"segment_s": 0}, "segment_s and keyframe_interval_s must be positive, got 0 and 2.0"),
        ({"max_clip_s": 5}, "max_clip_s must be between 10 and 3600 seconds, got 5"),
        (
            {"x264_preset": "slow"},
            "x264_preset must be one of ultrafast, superfast, veryfast, got 'slow'",
        ),
        ({"crf": 60}, "crf must be between 0 and 51, got 60"),
        (
            {"privacy_zones": (((0, 0), (1, 0)),)},
            "privacy_zones[0] must have at least 3 points, got 2",
        ),
        (
            {"privacy_zones": (((0, 0), (1.5, 0), (0, 1)),)},
            "privacy_zones[0] points must be normalised to 0..1, got (1.5, 0)",
        ),
    ],
)
def test_config_refuses_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        RecorderConfig(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == message
