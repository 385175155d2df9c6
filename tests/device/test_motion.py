"""The motion detector's pure core, driven with synthetic luma frames."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator

import numpy as np
import numpy.typing as npt
import pytest

from device import Box, MotionConfig, MotionDetector, MotionResult
from device._motion_grid import _components, _Median3

W, H, FPS = 320, 240, 15
U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]
Light = Callable[[int, F64], F64]
Blob = Callable[[int], tuple[float, float, float] | None]  # centre x, y and radius in pixels

_YY, _XX = np.mgrid[0:H, 0:W].astype(np.float64)


def _background(seed: int) -> F64:
    """A textured wall: coarse blotches, a dark door with hard edges, fine grain."""
    rng = np.random.default_rng(seed)
    coarse = np.kron(rng.uniform(70, 170, (H // 16 + 1, W // 16 + 1)), np.ones((16, 16)))[:H, :W]
    picture = coarse + rng.uniform(-12, 12, (H, W))
    door = (_XX > 200) & (_XX < 250) & (_YY > 60) & (_YY < 220)
    picture[door] *= 0.5
    return picture


def _frames(
    n: int,
    *,
    seed: int = 1,
    noise: float = 2.0,
    blob: Blob | None = None,
    light: Light | None = None,
) -> Iterator[U8]:
    rng = np.random.default_rng(seed + 1000)
    base = _background(seed)
    for i in range(n):
        picture = base.copy()
        where = blob(i) if blob else None
        if where is not None:
            cx, cy, r = where
            inside = (_XX - cx) ** 2 + (_YY - cy) ** 2 < r * r
            picture[inside] = 215 + 15 * np.sign(np.sin(_YY[inside] / 3))
        if light:
            picture = light(i, picture)
        picture += rng.normal(0, noise, (H, W))
        yield np.clip(picture, 0, 255).astype(np.uint8)


def _run(frames: Iterator[U8], config: MotionConfig | None = None) -> list[MotionResult]:
    detector = MotionDetector(config or MotionConfig(), W, H)
    return [detector.process(y, i / FPS) for i, y in enumerate(frames)]


def _walker(start: int, *, y: float = 150, r: float = 18, speed: float = 5) -> Blob:
    """A blob entering from the left edge at frame ``start`` and walking right."""

    def where(i: int) -> tuple[float, float, float] | None:
        return (-r + (i - start) * speed, y, r) if i >= start else None

    return where


def test_static_scene_never_triggers() -> None:
    results = _run(_frames(60))
    assert not any(r.motion for r in results)
    assert max(r.score for r in results) < 0.001


def test_quiet_frames_take_the_quick_check_and_a_late_entry_still_triggers() -> None:
    results = _run(_frames(110, blob=_walker(80)))
    # Quiet frames mostly skip the full pass, which reports them as exactly nothing.
    quick = sum(r == MotionResult(0.0, False) for r in results[10:80])
    assert quick >= 50
    assert not any(r.motion for r in results[:80])
    # After a long quiet stretch the first change is still looked at in full (same latency
    # as a blob entering early, in the test below).
    first = next(i for i, r in enumerate(results) if r.motion)
    assert 80 <= first <= 88
    assert all(r.motion for r in results[first:])


def test_a_parked_object_fades_into_the_background() -> None:
    def parcel(i: int) -> tuple[float, float, float] | None:
        return (150.0, 160.0, 22.0) if i >= 10 else None

    def parcel_then_walker(i: int) -> tuple[float, float, float] | None:
        return _walker(170, y=80)(i) or parcel(i)

    results = _run(_frames(200, blob=parcel_then_walker))
    assert results[14].motion
    # The background (updated on quick frames as well as full ones) takes the parcel in:
    # motion ends and the picture is quiet again, ...
    assert not any(r.motion for r in results[120:170])
    assert sum(r == MotionResult(0.0, False) for r in results[120:170]) >= 35
    # ... and someone walking past later is still seen.
    first = next(i for i, r in enumerate(results) if i >= 170 and r.motion)
    assert first <= 178


def test_heavy_sensor_noise_never_triggers() -> None:
    results = _run(_frames(60, noise=20.0))
    assert not any(r.motion for r in results)


def test_moving_blob_triggers_within_a_few_frames_of_entering() -> None:
    results = _run(_frames(70, blob=_walker(20)))
    assert not any(r.motion for r in results[:20])
    first = next(i for i, r in enumerate(results) if r.motion)
    # The blob is fully inside after ~7 frames; confirmation takes 2 frames.
    assert 20 <= first <= 28
    assert all(r.motion for r in results[first:])


def test_moving_blob_in_heavy_noise_still_triggers() -> None:
    results = _run(_frames(70, noise=20.0, blob=_walker(20)))
    first = next(i for i, r in enumerate(results) if r.motion)
    assert 20 <= first <= 30


def test_region_box_surrounds_the_blob() -> None:
    def parcel(i: int) -> tuple[float, float, float] | None:
        return (130.0, 170.0, 20.0) if i >= 10 else None

    results = _run(_frames(14, blob=parcel))
    assert results[11].motion
    box = results[11].regions[0]
    # The box's edges are within four samples (8 px) of the disc's: the 3x3 mean spreads it.
    assert box.x == pytest.approx(110 / W, abs=8 / W)
    assert box.y == pytest.approx(150 / H, abs=8 / H)
    assert box.w == pytest.approx(40 / W, abs=16 / W)
    assert box.h == pytest.approx(40 / H, abs=16 / H)


def test_region_box_follows_a_moving_blob() -> None:
    blob = _walker(10, y=120, r=20, speed=4)
    results = _run(_frames(50, blob=blob))
    cx, cy, r = blob(45) or (0.0, 0.0, 0.0)
    box = results[45].regions[0]
    # It holds the blob now (and the fading trail the background still remembers behind it).
    assert box.x <= (cx - r + 4) / W
    assert box.x + box.w >= (cx + r - 4) / W
    assert box.y == pytest.approx((cy - r) / H, abs=8 / H)


def test_two_separate_blobs_give_two_regions() -> None:
    detector = MotionDetector(MotionConfig(), W, H)
    base = list(_frames(2))
    detector.process(base[0], 0.0)
    picture = base[1].astype(np.float64)
    for cx in (60, 260):
        inside = (_XX - cx) ** 2 + (_YY - 60) ** 2 < 15**2
        picture[inside] = 240
    result = detector.process(picture.astype(np.uint8), 1 / FPS)
    assert len(result.regions) == 2
    centres = sorted(b.x + b.w / 2 for b in result.regions)
    assert centres[0] == pytest.approx(60 / W, abs=0.03)
    assert centres[1] == pytest.approx(260 / W, abs=0.03)


@pytest.mark.parametrize(
    ("name", "light"),
    [
        ("step darker", lambda i, p: p * (0.5 if i >= 30 else 1.0)),
        ("step brighter", lambda i, p: p * (1.5 if i >= 30 else 1.0)),
        ("slow ramp", lambda i, p: p * (1.0 - 0.5 * min(1.0, max(0.0, (i - 20) / 30)))),
        ("flicker", lambda i, p: p * (1.0 + 0.2 * math.sin(i * 2.1))),
        ("added flicker", lambda i, p: p + 25.0 * (i % 2)),
        ("ir switch", lambda i, p: (p - 128) * 0.4 + 128 + 20 if i >= 30 else p),
        (
            "headlights sweep",
            lambda i, p: (
                p * (1 + 0.6 * np.exp(-(((_XX - (i * 12 - 150)) / 90) ** 2)))
                + 25 * np.exp(-(((_XX - (i * 12 - 150)) / 90) ** 2))
            ),
        ),
    ],
)
def test_light_changes_never_trigger(name: str, light: Light) -> None:
    results = _run(_frames(60, light=light))
    assert not any(r.motion for r in results), name


def test_blob_during_a_light_ramp_still_triggers() -> None:
    def dusk(i: int, p: F64) -> F64:
        return p * (1.0 - 0.4 * min(1.0, i / 60))

    results = _run(_frames(60, blob=_walker(20), light=dusk))
    assert any(r.motion for r in results[20:35])


def test_mask_excludes_its_region() -> None:
    blob = _walker(10, y=60, r=15)
    top_band = ((0.0, 0.0), (1.0, 0.0), (1.0, 0.5), (0.0, 0.5))
    masked = _run(_frames(60, blob=blob), MotionConfig(masks=(top_band,)))
    assert not any(r.motion for r in masked)
    unmasked = _run(_frames(60, blob=blob))
    assert any(r.motion for r in unmasked)


def test_mask_leaves_the_rest_watched() -> None:
    left_half = ((0.0, 0.0), (0.5, 0.0), (0.5, 1.0), (0.0, 1.0))
    results = _run(_frames(70, blob=_walker(20)), MotionConfig(masks=(left_half,)))
    first = next(i for i, r in enumerate(results) if r.motion)
    # Hidden until its leading edge crosses the middle (x = 160): (160 + 18) / 5 frames in.
    assert first >= 20 + 30
    assert all(r.x >= 0.5 - 0.02 for r in results[first].regions)


def test_single_frame_glitch_is_not_confirmed() -> None:
    def glitch(i: int) -> tuple[float, float, float] | None:
        return (100.0, 100.0, 25.0) if i == 30 else None

    results = _run(_frames(50, blob=glitch))
    assert results[30].regions  # seen, ...
    assert not any(r.motion for r in results)  # ... but not confirmed


def test_motion_holds_then_ends_after_the_blob_leaves() -> None:
    def visit(i: int) -> tuple[float, float, float] | None:
        return (-20 + (i - 10) * 8, 150.0, 18.0) if 10 <= i < 45 else None

    results = _run(_frames(100, blob=visit))
    assert results[44].motion
    assert not results[-1].motion
    last = max(i for i, r in enumerate(results) if r.motion)
    # On for hold_s (1 s = 15 frames) after the last frame that still showed a change.
    last_seen = max(i for i, r in enumerate(results) if r.regions)
    assert last == last_seen + 15


def test_sensitivity_scales_what_counts() -> None:
    def small(i: int) -> tuple[float, float, float] | None:
        return (100.0 + 2 * i, 100.0, 7.0) if i >= 10 else None

    low = _run(_frames(40, blob=small), MotionConfig(sensitivity=0.0))
    high = _run(_frames(40, blob=small), MotionConfig(sensitivity=1.0))
    assert not any(r.motion for r in low)
    assert any(r.motion for r in high)


def test_reset_forgets_the_background() -> None:
    detector = MotionDetector(MotionConfig(), W, H)
    frames = list(_frames(2, seed=1)) + list(_frames(3, seed=7))
    for i, y in enumerate(frames[:2]):
        detector.process(y, i / FPS)
    detector.reset()
    assert [detector.process(y, (i + 2) / FPS) for i, y in enumerate(frames[2:])] == [
        MotionResult(0.0, False)
    ] + [MotionResult(0.0, False)] * 2


def test_wrong_plane_size_is_refused() -> None:
    detector = MotionDetector(MotionConfig(), W, H)
    with pytest.raises(ValueError, match=r"^y_plane must be 240x320, got 120x160$"):
        detector.process(np.zeros((120, 160), np.uint8), 0.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_rows": 8}, "target_rows must be in [16, 1080], got 8"),
        ({"min_area": 0.0}, "min_area must be in (0, 1), got 0.0"),
        ({"sensitivity": 1.5}, "sensitivity must be in [0, 1], got 1.5"),
        ({"alpha": 0.0}, "alpha must be in (0, 1], got 0.0"),
        ({"confirm_frames": 0}, "confirm_frames must be >= 1, got 0"),
        ({"masks": (((0.0, 0.0), (1.0, 1.0)),)}, "masks[0] must have at least 3 points, got 2"),
        (
            {"masks": (((0.0, 0.0), (1.5, 0.0), (0.0, 1.0)),)},
            "masks[0] points must be in [0, 1], got (1.5, 0.0)",
        ),
    ],
)
def test_bad_config_is_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        MotionConfig(**kwargs)  # type: ignore[arg-type]


def test_box_area() -> None:
    assert Box(0.1, 0.2, 0.5, 0.25).area == pytest.approx(0.125)


def _median3_by_definition(grid: F64) -> F64:
    """Median of 3 along each row, then along each column, the border value repeated."""

    def along_rows(a: F64) -> F64:
        padded = np.concatenate((a[:, :1], a, a[:, -1:]), axis=1)
        return np.median(np.stack((padded[:, :-2], padded[:, 1:-1], padded[:, 2:])), axis=0)

    return along_rows(along_rows(grid).T).T


@pytest.mark.parametrize("shape", [(7, 9), (3, 3), (2, 5), (1, 4)])
def test_cell_median_matches_its_definition(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(5)
    grid = np.empty(shape, dtype=np.float32)
    median = _Median3(grid)
    for _ in range(3):  # the buffers are reused from call to call
        grid[:] = rng.uniform(0.5, 2.0, shape)
        expected = _median3_by_definition(grid.astype(np.float64))
        median()
        assert np.array_equal(grid, expected.astype(np.float32))


def test_detectors_keep_their_own_state() -> None:
    """Two detectors fed in turns give what each gives alone (their buffers are not shared)."""
    walker = list(_frames(40, blob=_walker(10)))
    parcel = list(_frames(40, seed=3, blob=lambda i: (200.0, 80.0, 20.0) if i >= 20 else None))
    alone = [_run(iter(walker)), _run(iter(parcel))]
    a, b = MotionDetector(MotionConfig(), W, H), MotionDetector(MotionConfig(), W, H)
    in_turns: list[list[MotionResult]] = [[], []]
    for i, (ya, yb) in enumerate(zip(walker, parcel, strict=True)):
        in_turns[0].append(a.process(ya, i / FPS))
        in_turns[1].append(b.process(yb, i / FPS))
    assert in_turns == alone
    assert any(r.motion for r in alone[0])
    assert any(r.motion for r in alone[1])


def _groups_by_definition(on: npt.NDArray[np.bool_]) -> list[set[tuple[int, int]]]:
    """8-connected groups of the true squares, by a plain search, ordered by first square."""
    rows, cols = on.shape
    left = {(r, c) for r in range(rows) for c in range(cols) if on[r, c]}
    groups = []
    for start in sorted(left):
        if start not in left:
            continue
        group, stack = set(), [start]
        left.discard(start)
        while stack:
            r, c = stack.pop()
            group.add((r, c))
            for near in [(r + dr, c + dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]:
                if near in left:
                    left.discard(near)
                    stack.append(near)
        groups.append(group)
    return groups


@pytest.mark.parametrize("shape", [(6, 11), (1, 1), (4, 1), (1, 7), (9, 20)])
def test_block_groups_match_a_plain_search(shape: tuple[int, int]) -> None:
    """The bit-mask flood fill finds the same 8-connected groups, in the same order; a group
    ending at the right edge does not run on into the next row's first square."""
    rng = np.random.default_rng(11)
    rows, cols = shape
    stride = cols + 1  # the clear column
    for density in (0.2, 0.45, 0.7, 1.0):
        on = rng.random(shape) < density
        on[rows // 2, -1] = True  # a square at the right edge ...
        if rows > rows // 2 + 1:
            on[rows // 2 + 1, 0] = True  # ... and the first of the next row: not neighbours
        active = sum(1 << int(r * stride + c) for r, c in zip(*on.nonzero(), strict=True))
        found = [
            {(bit // stride, bit % stride) for bit in range(rows * stride) if group >> bit & 1}
            for group in _components(active, stride)
        ]
        assert found == _groups_by_definition(on)
