"""Rendering of a scenario's picture: textured background, actors, lighting, sensor noise.

Everything that can be computed once (background, sprites, the noise pool) is computed in the
constructor from the scenario's seed; a frame is then a few vectorised numpy passes. Frame ``i``
depends only on the scenario and ``i``, never on which frames were rendered before.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from hardware.sim.scenario import Actor, Light, Scenario
from hardware.sim.strip import draw_strip, strip_rows

__all__ = ["SceneRenderer"]

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]

_NOISE_PAD = 64  # the noise pool is this much larger than the picture; frames pick an offset
_ASPECT = {"person": 0.4, "car": 2.4, "dog": 1.5, "parcel": 1.3}  # sprite width / height
_VISIBLE_FRACTION = 0.25  # an actor counts as visible when this much of its box is in the picture


@dataclass(frozen=True, slots=True)
class _Sprite:
    luma: F32
    mask: npt.NDArray[np.bool_]
    u: float
    v: float


class SceneRenderer:
    """Draws frame ``i`` of a scenario: ``render(i) -> (y, u, v, truth)``."""

    def __init__(self, scenario: Scenario) -> None:
        cam = scenario.camera
        self.scenario = scenario
        self.width, self.height, self.fps = cam.width, cam.height, cam.fps
        rng = np.random.default_rng([cam.seed, 0x5CE7E])
        self._bg_y, self._bg_u, self._bg_v = _background(rng, cam.width, cam.height)
        self._sprites = {a.id: _sprite(rng, a, cam.width, cam.height) for a in scenario.actors}
        self._drift_phase = float(rng.uniform(0, 2 * math.pi))
        self._noise: F32 | None = None
        if cam.noise > 0:
            shape = (cam.height + _NOISE_PAD, cam.width + _NOISE_PAD)
            self._noise = rng.normal(0.0, cam.noise, size=shape).astype(np.float32)
        self._strip_rows = strip_rows(cam.width)

    def truth(self, t_s: float) -> frozenset[str]:
        """Ids of the actors visible at time ``t_s``."""
        return frozenset(a.id for a in self.scenario.actors if self._placement(a, t_s) is not None)

    def render(self, index: int) -> tuple[U8, U8, U8, frozenset[str]]:
        t = index / self.fps
        y = self._bg_y.copy()
        u = self._bg_u.copy()
        v = self._bg_v.copy()
        visible = []
        placed = [(a, self._placement(a, t)) for a in self.scenario.actors]
        for actor, where in sorted(
            ((a, p) for a, p in placed if p is not None), key=lambda item: item[1][1]
        ):
            visible.append(actor.id)
            self._paste(self._sprites[actor.id], where, y, u, v)
        gain, offset, saturation = self._lighting(t)
        y *= gain
        y += offset
        if self._noise is not None:
            rng = np.random.default_rng([self.scenario.camera.seed, index])
            dy, dx = rng.integers(0, _NOISE_PAD, size=2)
            y += self._noise[dy : dy + self.height, dx : dx + self.width]
        np.clip(y, 0, 255, out=y)
        y8 = y.astype(np.uint8)
        draw_strip(y8, index, round(t * 1000))
        if saturation != 1.0:
            u = (u - 128.0) * saturation + 128.0
            v = (v - 128.0) * saturation + 128.0
        u8, v8 = u.astype(np.uint8), v.astype(np.uint8)
        u8[: self._strip_rows // 2] = 128
        v8[: self._strip_rows // 2] = 128
        return y8, u8, v8, frozenset(visible)

    def _placement(self, actor: Actor, t: float) -> tuple[int, int] | None:
        """Top-left pixel of the actor's sprite at ``t``, or None when it is not visible."""
        if not actor.enter_s <= t < actor.leave_s:
            return None
        x, y = _position(actor, t)
        sprite = self._sprites[actor.id]
        h, w = sprite.luma.shape
        left = round(x * self.width - w / 2)
        top = round(y * self.height - h)
        inside_w = max(0, min(left + w, self.width) - max(left, 0))
        inside_h = max(0, min(top + h, self.height) - max(top, 0))
        if inside_w * inside_h < _VISIBLE_FRACTION * w * h:
            return None
        return left, top

    def _paste(self, sprite: _Sprite, where: tuple[int, int], y: F32, u: F32, v: F32) -> None:
        left, top = where
        h, w = sprite.luma.shape
        x0, y0 = max(left, 0), max(top, 0)
        x1, y1 = min(left + w, self.width), min(top + h, self.height)
        src = (slice(y0 - top, y1 - top), slice(x0 - left, x1 - left))
        mask = sprite.mask[src]
        y[y0:y1, x0:x1][mask] = sprite.luma[src][mask]
        # Chroma samples sit on even luma coordinates.
        cy0, cy1, cx0, cx1 = (y0 + 1) // 2, (y1 + 1) // 2, (x0 + 1) // 2, (x1 + 1) // 2
        cmask = mask[2 * cy0 - y0 :: 2, 2 * cx0 - x0 :: 2]
        u[cy0:cy1, cx0:cx1][cmask] = sprite.u
        v[cy0:cy1, cx0:cx1][cmask] = sprite.v

    def _lighting(self, t: float) -> tuple[float | F32, float | F32, float]:
        """Luma gain and offset (scalars or per-column rows) and chroma saturation at ``t``."""
        drift = 1.0 + 0.03 * math.sin(2 * math.pi * t / 40.0 + self._drift_phase)
        gain: float | F32 = self.scenario.camera.ambient * drift
        offset: float | F32 = 0.0
        saturation = 1.0
        for light in self.scenario.lights:
            if not light.at_s - 1e-9 <= t < light.at_s + light.duration_s - 1e-9:
                continue
            phase = (t - light.at_s) / light.duration_s
            g, o = _light_transform(light, phase, t, self.width)
            gain = gain * g
            offset = offset * g + o
            if light.kind == "ir_switch":
                saturation = 0.0
        return gain, offset, saturation


def _light_transform(
    light: Light, phase: float, t: float, width: int
) -> tuple[float | F32, float | F32]:
    """One light's gain and offset: ``luma' = luma * gain + offset``."""
    s = light.strength
    if light.kind == "headlights":
        # A broad bright band sweeping across the whole picture.
        centre = -0.4 + 1.8 * phase
        if light.direction == "left":
            centre = 1.0 - centre
        x = np.linspace(0.0, 1.0, width, dtype=np.float32)
        beam = np.exp(-(((x - centre) / 0.3) ** 2)).astype(np.float32)[None, :]
        return 1.0 + s * beam, 40.0 * s * beam
    if light.kind == "cloud":
        ramp = min(1.0, phase / 0.3, (1.0 - phase) / 0.3)
        eased = ramp * ramp * (3 - 2 * ramp)
        return 1.0 - s * eased, 0.0
    if light.kind == "ir_switch":
        contrast = 1.0 - 0.6 * s
        return contrast, (1.0 - contrast) * 128.0 + 20.0 * s
    # flicker
    return 1.0 + s * math.sin(2 * math.pi * (t - light.at_s) / light.period_s), 0.0


def _position(actor: Actor, t: float) -> tuple[float, float]:
    """Where the actor's bottom-centre is at ``t``: by its waypoint times, else at constant speed."""
    if actor.times is None:
        return _along_path(actor.path, (t - actor.enter_s) / (actor.leave_s - actor.enter_s))
    if t <= actor.times[0]:
        return actor.path[0]
    for (a, b), (ta, tb) in zip(
        itertools.pairwise(actor.path), itertools.pairwise(actor.times), strict=True
    ):
        if t <= tb:
            k = (t - ta) / (tb - ta) if tb > ta else 1.0
            return a[0] + (b[0] - a[0]) * k, a[1] + (b[1] - a[1]) * k
    return actor.path[-1]


def _along_path(path: tuple[tuple[float, float], ...], fraction: float) -> tuple[float, float]:
    """The point ``fraction`` of the way along a polyline, by length."""
    if len(path) == 1:
        return path[0]
    lengths = [math.dist(a, b) for a, b in itertools.pairwise(path)]
    total = sum(lengths)
    if total == 0:
        return path[0]
    target = min(max(fraction, 0.0), 1.0) * total
    for (a, b), length in zip(itertools.pairwise(path), lengths, strict=True):
        if target <= length and length > 0:
            k = target / length
            return a[0] + (b[0] - a[0]) * k, a[1] + (b[1] - a[1]) * k
        target -= length
    return path[-1]


def _upsample(small: F32, height: int, width: int) -> F32:
    """Bilinear upscaling of a small random field to the picture size."""
    sh, sw = small.shape
    ys = np.linspace(0, sh - 1, height, dtype=np.float32)
    xs = np.linspace(0, sw - 1, width, dtype=np.float32)
    rows = np.stack([np.interp(xs, np.arange(sw), small[r]) for r in range(sh)])
    cols = np.stack([np.interp(ys, np.arange(sh), rows[:, c]) for c in range(width)], axis=1)
    return cols.astype(np.float32)


def _background(rng: np.random.Generator, width: int, height: int) -> tuple[F32, F32, F32]:
    """A doorstep-like textured background: wall, door, ground, blotches and fine grain."""
    yy = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xx = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    luma = 150.0 - 40.0 * yy + np.zeros((1, width), np.float32)
    luma += _upsample(rng.uniform(-25, 25, (6, 10)).astype(np.float32), height, width)
    luma += _upsample(rng.uniform(-10, 10, (24, 40)).astype(np.float32), height, width)
    door = (xx > 0.58) & (xx < 0.74) & (yy > 0.25) & (yy < 0.82)
    luma = np.where(door, luma * 0.55, luma)
    ground = yy >= 0.82
    luma = np.where(ground, 95.0 + 12.0 * np.sin(xx * 90.0) * np.sin(yy * 70.0), luma)
    luma += rng.uniform(-6, 6, (height, width)).astype(np.float32)
    u = 128.0 + _upsample(rng.uniform(-12, 12, (4, 6)).astype(np.float32), height // 2, width // 2)
    v = 128.0 + _upsample(rng.uniform(-12, 12, (4, 6)).astype(np.float32), height // 2, width // 2)
    return np.clip(luma, 20, 235).astype(np.float32), u, v


def _sprite(rng: np.random.Generator, actor: Actor, width: int, height: int) -> _Sprite:
    """A textured silhouette for the actor's kind, at its size in pixels."""
    h = max(4, round(actor.size * height))
    w = max(4, round(h * _ASPECT[actor.kind]))
    sy = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h
    sx = (np.arange(w, dtype=np.float32)[None, :] + 0.5) / w
    ax = _ASPECT[actor.kind]  # x distances in height units: multiply by the aspect

    def disc(cx: float, cy: float, r: float) -> npt.NDArray[np.bool_]:
        return np.asarray(((sx - cx) * ax) ** 2 + (sy - cy) ** 2 <= r * r)

    def box(x0: float, x1: float, y0: float, y1: float) -> npt.NDArray[np.bool_]:
        return np.asarray((sx >= x0) & (sx <= x1) & (sy >= y0) & (sy <= y1))

    dark = np.zeros((h, w), dtype=bool)
    if actor.kind == "person":
        mask = disc(0.5, 0.1, 0.1) | box(0.12, 0.88, 0.2, 0.62)
        mask |= box(0.2, 0.46, 0.62, 1.0) | box(0.54, 0.8, 0.62, 1.0)
    elif actor.kind == "car":
        mask = box(0.0, 1.0, 0.35, 0.82) | box(0.22, 0.72, 0.0, 0.4)
        dark = disc(0.2, 0.82, 0.18) | disc(0.8, 0.82, 0.18)
        mask |= dark
    elif actor.kind == "dog":
        mask = (((sx - 0.45) / 0.38) ** 2 + ((sy - 0.5) / 0.22) ** 2 <= 1.0) | disc(0.85, 0.3, 0.2)
        mask |= box(0.15, 0.25, 0.55, 1.0) | box(0.62, 0.72, 0.55, 1.0)
    else:  # parcel
        mask = box(0.0, 1.0, 0.0, 1.0)
    tone = float(rng.choice([rng.uniform(30, 80), rng.uniform(180, 230)]))
    stripes = 18.0 * np.sign(np.sin(sy * 2 * math.pi * 6 + sx * 3))
    grain = rng.uniform(-10, 10, (h, w)).astype(np.float32)
    luma = np.clip(tone + stripes + grain, 0, 255).astype(np.float32)
    luma[dark] = 25.0
    u, v = (float(c) for c in rng.uniform(70, 190, size=2))
    return _Sprite(luma=luma, mask=np.asarray(mask), u=u, v=v)
