"""Motion detection on the luma plane: a pure core, frame in, score and regions out.

The detector works on a strided sample of the Y plane (``target_rows`` rows, no colour conversion)
and keeps a running-average background. Light changes are the main source of false triggers on a
doorbell, so each frame is first brought to the background's lighting. Per cell (6x6 samples) the
brightness ratio of background to frame is measured, median-filtered over 3x3 cells (light fields
are smooth, a person covers only a few cells) and interpolated smoothly across the picture; that
cancels clouds, flicker and slow drift while anything that moved keeps its full contrast. When
the light moves in more than a fifth of the cells (headlights, an IR switch) the detector fits an
affine change per cell instead (gain from the spreads, offset from the means), which follows a
beam that both multiplies and adds and an IR switch that flattens contrast, and it keeps doing so
for ``settle_s`` while the background catches up faster. The residual is smoothed with a
[1 2 1] x [1 2 1] kernel (sensor noise averages down) and thresholded at
``max(threshold, noise_factor * noise)``, ``noise`` being the quiet cells' residual. Cells where
at least 15 % of the samples changed are grouped into 8-connected regions (on 2x2-cell blocks).
If a frame still differs widely after the affine fit, the background restarts from it. A region
must cover ``min_area`` of the watched picture for ``confirm_frames`` frames in a row before
``motion`` turns on; it stays on until ``hold_s`` passes without one (the cooldown).

The quick check. Most doorbell frames show nothing new, so before the full pass each frame
gets a cheap test: per cell, the sum of the plain difference from the background and of its
magnitude (one subtraction, one absolute value and one pair of pooling products). The frame is
quiet when every cell's magnitude is within its learned quiet level plus half the detection
limit (in luma per sample) and no cell's mean moved by as much as would count it relit; then
nothing is detected, the background and its cell means are updated from that difference, and
the full pass is skipped. A cell's quiet level is the running average of its magnitude on
frames the full pass found quiet (until there is one, every frame gets the full pass). The
full pass still runs on every ``_FULL_EVERY``-th frame (so the noise estimate and the quiet
levels stay current) and while a detection streak is open. What a quiet frame skips, honestly:
the light correction, the median, the smoothing and the noise measurement (so the noise
estimate is refreshed less often: only on full passes); its ``score`` is reported as 0.0
rather than the handful of noisy samples the full pass would count; and during light-change
handling (``settle_s``) the background then moves at the calm rate, not the fast one. On the
shipped scenarios about 60 % of frames end at the quick check.
The test is a heuristic, not a bound: a change that raises no cell's mean magnitude by half
the limit (under half a cell at the limit's contrast) is not looked at until it grows or a
full pass comes round, which can delay, never cause, a detection.

Speed. The picture is small (about 10,000 samples), so the cost is the number of numpy calls and
of passes over it rather than arithmetic: every per-frame array is a buffer made once (a few
shared ones, so the working set stays cached), the sampled rows are copied whole (a frame
fresh from the camera is not in cache, and whole rows stream in faster than scattered bytes)
and their strided bytes gathered as bytes before one contiguous conversion to float32, the
quick check ends most quiet frames early, and the median filter is skipped when no cell's brightness
moved (then neither did its median). ``target_rows`` defaults to 72 (every 5th row and column
of 360p, every 15th of 1080p): a third fewer samples than 90 rows for about a sixth less time in
``bench/motion.py``. The cost is resolution: boxes are a sample coarser (5 px at 360p instead
of 4) and ``min_area`` spans 28 samples of an unmasked 360p picture instead of 43, so very small
or distant changes are noisier to measure; every shipped scenario is still recorded with no
false clip. Pass ``target_rows=90`` for the finer grid.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from device._config import Polygon
from device._motion_config import (
    _ADAPT_FAST,
    _AFFINE_RELIT,
    _BRIGHT_MARGIN,
    _CELL,
    _CELL_ACTIVE,
    _FULL_EVERY,
    _GAIN_OFFSET,
    _GAIN_SAFE,
    _MAX_REGIONS,
    _NOISE_ALPHA,
    _NOISE_EVERY,
    _QUICK_ALPHA,
    _QUICK_MARGIN,
    _QUICK_STEADY,
    _QUIET,
    _RELIT_GAIN,
    _RELIT_RESIDUAL,
    _RESET_REST_S,
    _RESIDUAL_TO_SIGMA,
    _SATURATED,
    _SPREAD_FLOOR,
    _STEADY,
    Box,
    MotionConfig,
    MotionResult,
)
from device._motion_grid import (
    _F32,
    _clip_gain,
    _components,
    _lerp_matrix,
    _Median3,
    _pool_matrix,
)
from device._polygons import rasterise

__all__ = ["Box", "MotionConfig", "MotionDetector", "MotionResult", "Polygon"]


class MotionDetector:
    """Feed it every frame's Y plane in order; it returns a MotionResult per frame."""

    def __init__(self, config: MotionConfig, width: int, height: int) -> None:
        if width < 16 or height < 16:
            raise ValueError(f"picture must be at least 16x16, got {width}x{height}")
        self.config = config
        self.width = width
        self.height = height
        self._step = max(1, height // config.target_rows)
        step = self._step
        self._rows = height // step
        self._cols = width // step
        # The sampled pixels: every step-th row and column, from the middle of the first step.
        self._pick = (
            slice(step // 2, step // 2 + step * (height // step), step),
            slice(step // 2, step // 2 + step * (width // step), step),
        )
        rows, cols = self._rows, self._cols
        self._cell_rows = math.ceil(rows / _CELL)
        self._cell_cols = math.ceil(cols / _CELL)
        # Contiguous copies: BLAS is noticeably faster on them than on transposed views.
        self._pool_y = np.ascontiguousarray(_pool_matrix(rows, _CELL).T)
        self._pool_x = _pool_matrix(cols, _CELL)
        self._lerp_y = _lerp_matrix(rows, _CELL)
        self._lerp_x = np.ascontiguousarray(_lerp_matrix(cols, _CELL).T)
        # Sample (r, c) stands for the step x step block from (c * step, r * step): its centre.
        sample_xs = (np.arange(cols, dtype=np.float64) + 0.5) * (step / width)
        sample_ys = (np.arange(rows, dtype=np.float64) + 0.5) * (step / height)
        self._keep = ~rasterise(config.masks, sample_xs, sample_ys)
        self._keep_f = self._keep.astype(np.float32)
        self._keep_u8 = np.where(self._keep, np.uint8(255), np.uint8(0))  # a mask for bitwise and
        # Watched pixels per cell (at least 1, so a fully masked cell divides safely).
        self._cell_px = np.maximum(self._pool_y @ self._keep_f @ self._pool_x, 1.0)
        self._watched = max(1, int(self._keep.sum()))
        self._masked = not bool(self._keep.all())
        factor = 2.0 ** (1.0 - 2.0 * config.sensitivity)  # 0 -> x2, 0.5 -> x1, 1 -> x0.5
        self._threshold = config.threshold * factor
        self._min_px = max(1.0, config.min_area * factor * self._watched)
        self._active_px = _CELL_ACTIVE * self._cell_px  # changed pixels for a cell to count
        self._cell_px16 = 16.0 * self._cell_px  # the smoothed residual is 16 times a mean
        block_rows, block_cols = math.ceil(self._cell_rows / 2), math.ceil(self._cell_cols / 2)
        self._ones = np.ones(max(rows, cols), dtype=np.float32)
        self._block_y = np.ascontiguousarray(_pool_matrix(self._cell_rows, 2).T)
        self._block_x = _pool_matrix(self._cell_cols, 2)
        # Block sums with one spare column that stays zero: as bits, rows block_cols + 1 apart,
        # so a shift by one never carries a block into the next row (see _components).
        self._blocks = np.zeros((block_rows, block_cols + 1), dtype=np.float32)
        self._blocks_view = self._blocks[:, :block_cols]
        self._block_on = np.zeros(self._blocks.shape, dtype=np.bool_)
        # Every per-frame array lives in a few buffers made here: at this picture size numpy's
        # cost is mostly per call (allocating is one more), and a small working set stays cached.
        self._row_copy = np.empty((rows, width), dtype=np.uint8)  # the sampled rows, whole
        self._picked = np.empty((rows, cols), dtype=np.uint8)
        self._sample = np.empty((rows, cols), dtype=np.float32)
        self._pair = np.empty((2 * rows, cols), dtype=np.float32)  # diff, then |diff|
        self._diff = self._pair[:rows]
        self._work = np.empty((rows, cols), dtype=np.float32)  # light field, smoothing, counting
        self._blurred = np.zeros((rows, cols), dtype=np.float32)  # its outer ring stays zero
        self._blurred_sides = self._blurred[:, :: max(1, cols - 1)]  # first and last columns
        self._field_rows = np.empty((rows, self._cell_cols), dtype=np.float32)
        self._changed_px = np.empty((rows, cols), dtype=np.bool_)  # also the unclipped pixels
        # The smoothing's four separable sums, as (a, b, out) views of the flattened buffers, in
        # which the sample below is ``cols`` further on; they alternate between work and diff.
        n, c = rows * cols, cols
        d, w = self._diff.reshape(-1), self._work.reshape(-1)
        self._smooth_steps = (
            (d[:-c], d[c:], w[: n - c]),
            (w[: n - 2 * c], w[c : n - c], d[: n - 2 * c]),
            (d[: n - 2 * c - 1], d[1 : n - 2 * c], w[: n - 2 * c - 1]),
            (
                w[: n - 2 * c - 2],
                w[1 : n - 2 * c - 1],
                self._blurred.reshape(-1)[c + 1 : n - c - 1],
            ),
        )
        self._ratio = np.empty((self._cell_rows, self._cell_cols), dtype=np.float32)
        self._median = _Median3(self._ratio)
        self._deviation = np.empty_like(self._ratio)
        # The quick check: the plain difference and its magnitude side by side, so one pair of
        # products pools both per cell (signed sums on the left, absolute sums on the right).
        self._pair_abs = self._pair[rows:]
        cell_rows = self._cell_rows
        self._pair_stack = self._pair.reshape(2, rows, cols)
        self._pair_rows = np.empty((2, cell_rows, cols), dtype=np.float32)
        self._pair_flat_rows = self._pair_rows.reshape(2 * cell_rows, cols)
        self._pair_cells = np.empty((2 * cell_rows, self._cell_cols), dtype=np.float32)
        self._quick_over = np.empty(self._pair_cells.shape, dtype=np.bool_)
        self._quick_over_f = np.empty_like(self._pair_cells)
        self._quick_alpha = (
            min(1.0, 2.0 * config.alpha) / self._cell_px
        )  # cell sums to mean updates
        # Per-cell bounds on those sums for a frame to count as quiet (None until learned), and
        # each cell's absolute sum on quiet full frames (an average).
        self._quick_limit: _F32 | None = None
        self._quiet_abs: _F32 | None = None
        self._background: _F32 | None = None
        self._mean_bg: _F32 | None = None  # per-cell mean of the background, kept in step
        self._noise = 0.0  # mean residual of a quiet cell
        self._frames = 0
        self._affine_until_s = -math.inf
        self._streak = 0
        self._last_seen_s = -math.inf
        self._settle_until_s = -math.inf
        self._on = False

    def reset(self) -> None:
        """Forget the background (after a camera reconnect, say); the next frame becomes it."""
        self._background = None
        self._mean_bg = None
        self._quick_limit = None
        self._streak = 0
        self._on = False
        self._last_seen_s = -math.inf

    def process(self, y_plane: npt.NDArray[np.uint8], pts_s: float) -> MotionResult:
        """Run one frame (the full-resolution Y plane) captured at ``pts_s`` seconds."""
        if y_plane.shape != (self.height, self.width):
            raise ValueError(
                f"y_plane must be {self.height}x{self.width}, got "
                f"{y_plane.shape[0]}x{y_plane.shape[1] if y_plane.ndim > 1 else 0}"
            )
        sample = self._sample
        # Sampled rows whole, then their strided bytes, then masking and conversion on
        # contiguous buffers: the cheapest order measured (see the module docstring).
        np.copyto(self._row_copy, y_plane[self._pick[0]])
        picked = self._picked
        np.copyto(picked, self._row_copy[:, self._pick[1]])
        if self._masked:
            # Masked pixels read as black: they never differ. (In place: on contiguous bytes
            # this is cheaper than while gathering.)
            np.bitwise_and(picked, self._keep_u8, out=picked)
        np.copyto(sample, picked)
        background = self._background
        if background is None or self._mean_bg is None:
            self._background = sample.copy()
            self._mean_bg = (self._pool_y @ sample @ self._pool_x) / self._cell_px
            return MotionResult(0.0, False)
        self._frames += 1
        config = self.config
        # The quick check, unless a detection streak is open (the previous frame showed
        # something) or a full pass is due: if no cell differs from the background by more
        # than it does on quiet frames, nor moved much in brightness, nothing is detected here.
        cells = None
        if not self._streak:
            cells = self._quick(sample, background)
            if self._frames % _FULL_EVERY and self._quiet(cells):
                if self._frames % 2 == 0:
                    diff = self._diff  # sample - background
                    diff *= min(1.0, 2.0 * config.alpha)
                    background += diff
                    self._mean_bg += cells[: self._cell_rows] * self._quick_alpha
                return self._result(0.0, False, (), pts_s) if self._on else _QUIET
        if cells is None:
            mean_now = (self._pool_y @ sample @ self._pool_x) / self._cell_px
        else:  # the cell means follow from the quick check's sums, no pooling
            mean_now = cells[: self._cell_rows] / self._cell_px
            mean_now += self._mean_bg
        changed, relit, affine = self._changed(
            sample, background, mean_now, pts_s, cells is not None
        )
        count = float(np.count_nonzero(changed))
        score = count / self._watched
        regions: tuple[Box, ...] = ()
        if relit > config.global_change_fraction and score > _RELIT_RESIDUAL:
            # The light moved in most of the picture and even the affine correction could not
            # follow it: start again from this frame and rest briefly.
            self._background, self._mean_bg = sample.copy(), mean_now
            self._settle_until_s = pts_s + _RESET_REST_S
            self._streak = 0
            self._quick_limit = None
            return self._result(score, False, (), pts_s)
        if count >= self._min_px:
            regions = self._regions(changed)
        elif cells is not None and not affine:
            self._learn_quiet(cells)
        seen = bool(regions) and pts_s >= self._settle_until_s
        # While the light is changing, follow it faster so the calm mode finds a fitting background.
        # In calm light the background moves every other frame by twice the weight: the same
        # time constant for half the work.
        if affine or self._frames % 2 == 0:
            alpha = min(1.0, config.alpha * (_ADAPT_FAST if affine else 2.0))
            sample -= background
            sample *= alpha
            background += sample
            # The cell means are linear in the picture: update them the same way, no pooling.
            self._mean_bg += alpha * (mean_now - self._mean_bg)
        return self._result(score, seen, regions, pts_s)

    # -- internals ---------------------------------------------------------------------------

    def _quick(self, sample: _F32, background: _F32) -> _F32:
        """Per cell: the sum of sample - background (top half) and of its magnitude (bottom).

        The difference stays in the diff buffer, where the full pass can take it up.
        """
        diff = np.subtract(sample, background, out=self._diff)
        np.abs(diff, out=self._pair_abs)
        np.matmul(self._pool_y, self._pair_stack, out=self._pair_rows)  # both halves at once
        return np.matmul(self._pair_flat_rows, self._pool_x, out=self._pair_cells)

    def _quiet(self, cells: _F32) -> bool:
        """Whether every cell's sums are within the learned quiet bounds."""
        limit = self._quick_limit
        if limit is None:
            return False
        over = np.abs(cells, out=self._quick_over_f)
        np.greater(over, limit, out=self._quick_over)
        return not np.count_nonzero(self._quick_over)  # cheaper than .any() at this size

    def _learn_quiet(self, cells: _F32) -> None:
        """Fold a frame the full pass found quiet into the per-cell quiet bounds."""
        mean_bg = self._mean_bg
        assert mean_bg is not None
        abs_sums = cells[self._cell_rows :]
        if self._quiet_abs is None:
            self._quiet_abs = abs_sums.copy()
        else:
            self._quiet_abs += _QUICK_ALPHA * (abs_sums - self._quiet_abs)
        limit = max(self._threshold, self.config.noise_factor * self._noise)
        bounds = np.empty_like(cells)
        # Steady brightness: |mean_now - mean_bg| within _QUICK_STEADY of mean_bg + offset.
        bounds[: self._cell_rows] = _QUICK_STEADY * (mean_bg + _GAIN_OFFSET) * self._cell_px
        bounds[self._cell_rows :] = self._quiet_abs + _QUICK_MARGIN * limit * self._cell_px
        self._quick_limit = bounds

    # -- internals ---------------------------------------------------------------------------

    def _changed(
        self, sample: _F32, background: _F32, mean_now: _F32, pts_s: float, have_diff: bool
    ) -> tuple[npt.NDArray[np.bool_], float, bool]:
        """Changed pixels after lighting correction, the fraction of cells relit, and whether
        the contrast-correcting (affine) mode was on.

        A pixel changed when its lighting-corrected, 3x3-averaged difference from the background
        exceeds the threshold.
        """
        pool_y, pool_x, px = self._pool_y, self._pool_x, self._cell_px
        mean_bg = self._mean_bg
        assert mean_bg is not None
        ratio = np.add(mean_now, _GAIN_OFFSET, out=self._ratio)
        np.divide(mean_bg + _GAIN_OFFSET, ratio, out=ratio)
        if 1.0 - float(ratio.min()) <= _STEADY and float(ratio.max()) - 1.0 <= _STEADY:
            # Every cell is steady, so their medians are too (a median is one of its values):
            # the usual case, and it needs no filtering.
            brightness, relit, steady, moved = ratio, 0.0, True, 0.0
        else:
            # Light fields are smooth and objects are local: the median over each cell's 3x3
            # neighbourhood follows the light but not a person covering a few cells.
            self._median()  # of ratio, in place
            brightness = ratio
            deviation = np.subtract(brightness, 1.0, out=self._deviation)
            np.abs(deviation, out=deviation)
            moved = float(deviation.max())
            relit = 0.0
            if moved > _RELIT_GAIN:
                relit = float(np.count_nonzero(deviation > _RELIT_GAIN)) / deviation.size
            steady = moved <= _STEADY
        if relit > _AFFINE_RELIT:
            self._affine_until_s = pts_s + self.config.settle_s
        affine = pts_s < self._affine_until_s
        diff = self._diff
        if not affine and steady:
            # Steady light: the background already matches it (the quick check may have taken
            # the difference already).
            if not have_diff:
                np.subtract(sample, background, out=diff)
        elif not affine:
            # Calm light: scale each cell to the background's brightness, which cancels flicker
            # and slow drift and leaves anything that moved at full contrast.
            if moved > _GAIN_SAFE:
                _clip_gain(brightness)
            np.multiply(sample, self._interpolate(brightness), out=diff)
            diff -= background
        else:
            # The light is changing across much of the picture (and for settle_s after): undo
            # its affine change per cell from the means and spreads, as a beam both multiplies
            # and adds and an IR switch flattens contrast. This also flattens the inside of large
            # objects, but their outlines remain.
            var_now = (pool_y @ (sample * sample) @ pool_x) / px - mean_now * mean_now
            var_bg = (pool_y @ (background * background) @ pool_x) / px - mean_bg * mean_bg
            # Sensor noise inflates the spread of a single frame, not of the averaged background.
            floor = _SPREAD_FLOOR**2 + (_RESIDUAL_TO_SIGMA * self._noise) ** 2
            gain = np.sqrt((np.maximum(var_bg, 0.0) + floor) / (np.maximum(var_now, 0.0) + floor))
            _clip_gain(gain)
            np.multiply(sample, self._interpolate(gain), out=diff)
            diff += self._interpolate(mean_bg - mean_now * gain)
            diff -= background
        if float(mean_now.max()) > _SATURATED - _BRIGHT_MARGIN:
            # A clipped pixel says nothing about what is there (a headlight beam saturates the
            # wall). Only cells this bright on average can hold many of them.
            diff *= np.less(sample, _SATURATED, out=self._changed_px)
        if affine and self._masked:
            diff *= self._keep_f  # the shift moved masked pixels off zero; put them back
        blurred = self._smooth()  # 16 times the weighted mean of diff: noise averages down
        np.abs(blurred, out=blurred)
        if self._noise == 0.0 or (not affine and self._frames % _NOISE_EVERY == 0):
            # The median cell's mean residual is this camera's noise (and texture) level: moving
            # things cover a minority of cells, so they do not raise it. It changes slowly, so
            # it is sampled every few frames.
            cells = ((pool_y @ blurred @ pool_x) / self._cell_px16).ravel()
            middle = cells.size // 2
            residual = float(np.partition(cells, middle)[middle])
            if self._noise == 0.0:
                self._noise = residual
            else:
                self._noise += _NOISE_ALPHA * (residual - self._noise)
        limit = max(self._threshold, self.config.noise_factor * self._noise)
        changed = np.greater(blurred, 16.0 * limit, out=self._changed_px)
        return changed, relit, affine

    def _interpolate(self, cells: _F32) -> _F32:
        """Per-cell values spread smoothly over the sampled picture (into the work buffer)."""
        np.matmul(self._lerp_y, cells, out=self._field_rows)
        return np.matmul(self._field_rows, self._lerp_x, out=self._work)

    def _smooth(self) -> _F32:
        """Sum over each diff pixel's 3x3 neighbourhood weighted [1 2 1] x [1 2 1] (16 in all).

        Separable sums over the flattened picture; the outermost ring of samples is left at
        zero. It overwrites diff on the way.
        """
        for a, b, out in self._smooth_steps:
            np.add(a, b, out=out)
        self._blurred_sides.fill(0.0)  # these sums wrapped around from the neighbouring row
        return self._blurred

    def _regions(self, changed: npt.NDArray[np.bool_]) -> tuple[Box, ...]:
        """Connected groups of active cells that cover at least min_area, as tight boxes.

        Cells are grouped 2x2 into blocks for the flood fill, which keeps it to a few dozen
        steps; the boxes are then tightened to the changed pixels inside.
        """
        np.copyto(self._work, changed)
        counts = self._pool_y @ self._work @ self._pool_x
        counts *= counts >= self._active_px
        np.matmul(self._block_y @ counts, self._block_x, out=self._blocks_view)  # 2x2-cell sums
        areas = self._blocks.ravel().tolist()
        np.greater(self._blocks, 0.0, out=self._block_on)
        active = int.from_bytes(np.packbits(self._block_on, bitorder="little").tobytes(), "little")
        stride = self._blocks.shape[1]  # bits from one block row to the next
        side = 2 * _CELL
        sx, sy = self._step / self.width, self._step / self.height
        boxes: list[tuple[float, Box]] = []
        for group in _components(active, stride):
            area, rest = 0.0, group
            while rest:
                low = rest & -rest
                area += areas[low.bit_length() - 1]
                rest ^= low
            if area < self._min_px:
                continue
            first_row = ((group & -group).bit_length() - 1) // stride
            last_row = (group.bit_length() - 1) // stride
            columns, rest = 0, group >> (first_row * stride)
            while rest:  # the union of the group's rows
                columns |= rest
                rest >>= stride
            columns &= (1 << stride) - 1
            r0, r1 = first_row * side, (last_row + 1) * side
            c0, c1 = ((columns & -columns).bit_length() - 1) * side, columns.bit_length() * side
            # Changed pixels per row and per column of the group's patch (work holds changed
            # as 0/1): two small products, cheaper here than any() along each axis.
            patch = self._work[r0:r1, c0:c1]
            height, width = patch.shape  # the last blocks may overhang the picture
            ys = (patch @ self._ones[:width]).nonzero()[0]
            xs = (self._ones[:height] @ patch).nonzero()[0]
            box = Box(
                x=(c0 + int(xs[0])) * sx,
                y=(r0 + int(ys[0])) * sy,
                w=(int(xs[-1]) - int(xs[0]) + 1) * sx,
                h=(int(ys[-1]) - int(ys[0]) + 1) * sy,
            )
            boxes.append((area, box))
        boxes.sort(key=lambda item: -item[0])
        return tuple(box for _, box in boxes[:_MAX_REGIONS])

    def _result(
        self, score: float, seen: bool, regions: tuple[Box, ...], pts_s: float
    ) -> MotionResult:
        """Apply confirmation (frames in a row) and hold (seconds) to the raw detection."""
        self._streak = self._streak + 1 if seen else 0
        if self._streak >= self.config.confirm_frames:
            self._on = True
            self._last_seen_s = pts_s
        elif self._on and seen:
            self._last_seen_s = pts_s
        elif self._on and pts_s - self._last_seen_s > self.config.hold_s + 1e-9:
            self._on = False
        return MotionResult(score, self._on, regions if seen else ())
