"""A deterministic procedural camera: a pedestrian walkway with people and scheduled anomalies.

The scene imitates the UCSD pedestrian datasets: a paved walkway band crosses the frame between two
textured grass areas (trees and lamp posts above, benches below). People (a dark body ellipse and
a head circle) walk along the walkway from left to right at normal speeds. Scheduled anomalies
add one object each: a bicycle ~5x as fast (``fast``), a person walking right to left
(``wrong_way``), a person strolling on the grass (``forbidden_area``) or a person standing still
on the walkway (``loiter``) or a bag left on the walkway (``left_object``). Scheduled faults
spoil the camera itself rather than add an object (see ``SceneFault``): a covered lens, a view
shifted sideways, a picture out of focus or frozen. Without faults nothing changes.

Frame ``n`` is a pure function of the constructor arguments and ``n`` (seekable, any order, any
instance). The background and the sensor noise depend only on (width, height, seed), and the
normal walkers on (width, height, fps, seed, people_per_minute): a scene with
``people_per_minute=0`` and no anomalies is a pixel-exact clean plate of the same camera.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

import cv2
import numpy as np

AnomalyKind = Literal["fast", "wrong_way", "forbidden_area", "loiter", "left_object"]
FaultKind = Literal["cover", "shift", "blur", "freeze"]
Box = tuple[int, int, int, int]
Color = tuple[int, int, int]

_KINDS = frozenset(get_args(AnomalyKind))
_FAULTS = frozenset(get_args(FaultKind))
_COVERED = 12  # grey level of a covered lens (then sensor noise on top)
_SHIFT = 4  # cv2 fixed-point bits: sub-pixel positions keep 1-2 px/frame walkers moving smoothly
_ONE = 1 << _SHIFT
_WALK = 1.5  # nominal walking speed in person heights per second: ~8 s to cross a 4:3 frame
_PERSON_H = 0.11  # nominal person height as a fraction of the frame height
_HMAX = _PERSON_H * 1.1 * 1.15  # largest size variation x largest perspective scale
_BOB = 0.05  # walking bob amplitude as a fraction of the person's height
_NOISE_PAD, _NOISE_OFFSETS = 8, 64  # one noise field, 64 shifted windows of it = 64 noise frames
_CACHE_MAX = 4096
_HEADS: tuple[Color, ...] = ((35, 45, 60), (60, 80, 110), (90, 120, 160))  # hair / skin tones


@dataclass(frozen=True)
class ScheduledAnomaly:
    """One anomalous object, visible in frames ``start_s*fps <= n < (start_s+duration_s)*fps``.

    Validated on construction: ``kind`` in ``AnomalyKind``, ``start_s >= 0``, ``duration_s > 0``.
    """

    kind: AnomalyKind
    start_s: float
    duration_s: float

    def __post_init__(self) -> None:
        _check_window("anomaly", self.kind, _KINDS, self.start_s, self.duration_s)


def _check_window(
    what: str, kind: str, kinds: frozenset[str], start_s: float, duration_s: float
) -> None:
    """The checks an anomaly and a fault share: a known kind, a finite start and duration."""
    if kind not in kinds:
        raise ValueError(f"{what} kind must be one of {sorted(kinds)}, got {kind!r}")
    if not (math.isfinite(start_s) and start_s >= 0):
        raise ValueError(f"{what} start_s must be finite and >= 0, got {start_s}")
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ValueError(f"{what} duration_s must be finite and > 0, got {duration_s}")


@dataclass(frozen=True)
class SceneFault:
    """A camera fault in frames ``start_s*fps <= n < (start_s+duration_s)*fps``.

    ``cover``: the lens is covered (a dark flat picture, sensor noise on top); ``shift``: the
    view is moved ``amount`` px sideways (the camera was turned); ``blur``: the picture is out
    of focus (Gaussian blur of sigma ``amount`` px, before the sensor noise); ``freeze``: every
    frame repeats the one before the fault, noise and all. Validated on construction.
    """

    kind: FaultKind
    start_s: float
    duration_s: float
    amount: float = 0.0  # shift: px (default 10 % of the width); blur: sigma (default 4)

    def __post_init__(self) -> None:
        _check_window("fault", self.kind, _FAULTS, self.start_s, self.duration_s)
        if not (math.isfinite(self.amount) and self.amount >= 0):
            raise ValueError(f"fault amount must be finite and >= 0, got {self.amount}")


class _Figure(NamedTuple):
    """One object to draw: centre x and ground (feet) y in pixels, height, lift off the ground."""

    bike: bool
    cx: float
    feet: float
    h: float
    bob: float
    body: Color
    head: Color
    bag: bool = False  # a bag on the ground instead of a person


class _Walker(NamedTuple):
    """A normal walker: enters at the left edge at frame ``spawn``, leaves after ``travel``."""

    spawn: float
    travel: float
    feet: float
    speed: float  # px per frame, always > 0: normal people only walk left to right
    h: float
    phase: float
    body: Color
    head: Color


class _Plan(NamedTuple):
    """A scheduled anomaly resolved to frames and a path (see ``SyntheticScene._anomaly``)."""

    kind: AnomalyKind
    n0: int
    n1: int  # exclusive
    cx0: float
    feet: float
    speed: float
    h: float
    phase: float
    body: Color
    head: Color


def _frame_bound(t_s: float, fps: float) -> int:
    """First frame n >= t_s*fps, forgiving float error (2.2 s at 25 fps: 55, not 55.000...01)."""
    x = t_s * fps
    return round(x) if abs(x - round(x)) < 1e-6 else math.ceil(x)


def _pt(x: float, y: float) -> tuple[int, int]:
    return round(x * _ONE), round(y * _ONE)


def _draw(out: np.ndarray, f: _Figure) -> None:
    """Draw a person, a bicycle with its rider or a bag, anti-aliased at sub-pixel positions."""
    h, top = f.h, f.feet - f.bob
    aa = cv2.LINE_AA
    if f.bag:
        corners = (_pt(f.cx - 0.18 * h, f.feet - 0.28 * h), _pt(f.cx + 0.18 * h, f.feet))
        cv2.rectangle(out, *corners, f.body, -1, aa, _SHIFT)
        return
    if f.bike:
        r = 0.18 * h
        back, front = _pt(f.cx - 0.32 * h, f.feet - r), _pt(f.cx + 0.32 * h, f.feet - r)
        saddle = _pt(f.cx, f.feet - 0.45 * h)
        thick = max(1, round(0.06 * h))
        for wheel in (back, front):
            cv2.circle(out, wheel, round(r * _ONE), (25, 25, 25), thick, aa, _SHIFT)
        cv2.line(out, back, saddle, (30, 30, 150), thick, aa, _SHIFT)
        cv2.line(out, saddle, front, (30, 30, 150), thick, aa, _SHIFT)
        body, axes = _pt(f.cx, f.feet - 0.62 * h), _pt(0.13 * h, 0.25 * h)
        cv2.ellipse(out, body, axes, 20, 0, 360, f.body, -1, aa, _SHIFT)
        cv2.circle(
            out,
            _pt(f.cx + 0.1 * h, f.feet - 0.88 * h),
            round(0.12 * h * _ONE),
            f.head,
            -1,
            aa,
            _SHIFT,
        )
        return
    cv2.ellipse(
        out, _pt(f.cx, top - 0.4 * h), _pt(0.2 * h, 0.4 * h), 0, 0, 360, f.body, -1, aa, _SHIFT
    )
    cv2.circle(out, _pt(f.cx, top - 0.85 * h), round(0.14 * h * _ONE), f.head, -1, aa, _SHIFT)


def _box(f: _Figure, width: int, height: int) -> Box | None:
    """(x0, y0, x1, y1), end-exclusive and clipped to the frame, 1 px larger for anti-aliasing."""
    half = 0.5 * f.h if f.bike else 0.18 * f.h if f.bag else 0.2 * f.h
    x0, x1 = max(0, math.floor(f.cx - half) - 1), min(width, math.ceil(f.cx + half) + 2)
    y0 = max(0, math.floor(f.feet - f.bob - (0.28 * f.h if f.bag else f.h)) - 1)
    y1 = min(height, math.ceil(f.feet) + 2)
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def _background(w: int, h: int, y0: int, y1: int, rng: np.random.Generator) -> np.ndarray:
    """Textured grass, paved walkway with joints and curbs, trees, lamp posts and benches."""
    low = cv2.resize(
        rng.normal(0, 1, (h // 16 + 2, w // 16 + 2)).astype(np.float32),
        (w, h),
        interpolation=cv2.INTER_CUBIC,
    )
    fine = rng.normal(0, 1, (h, w)).astype(np.float32)
    grass = np.array([60, 120, 75], np.float32) + (14 * low + 9 * fine)[..., None]
    pave = np.array([150, 152, 150], np.float32) + (5 * low + 4 * fine)[..., None]
    rows = np.arange(h)[:, None, None]
    bg: np.ndarray = np.where((rows >= y0) & (rows < y1), pave, grass).clip(0, 255).astype(np.uint8)
    step = max(8, w // 20)
    for x in range(int(rng.integers(0, step)), w, step):  # slanted joints: seen at an angle
        cv2.line(bg, (x, y0), (x - (y1 - y0) // 4, y1 - 1), (120, 122, 120), 1, cv2.LINE_AA)
    cv2.line(bg, (0, (y0 + y1) // 2), (w - 1, (y0 + y1) // 2), (128, 130, 128), 1)
    for y in (y0, y1 - 1):
        cv2.line(bg, (0, y), (w - 1, y), (190, 192, 190), max(1, h // 120))
    for fx in (0.1, 0.45, 0.8):  # trees: dark canopy with a lighter crown, upper grass
        c = (round(fx * w + rng.integers(-w // 20, w // 20 + 1)), round(0.12 * h))
        cv2.circle(bg, c, round(0.09 * h), (30, 75, 40), -1, cv2.LINE_AA)
        cv2.circle(
            bg, (c[0] - h // 60, c[1] - h // 60), round(0.05 * h), (45, 100, 55), -1, cv2.LINE_AA
        )
    for fx in (0.28, 0.63, 0.95):  # lamp posts standing just above the walkway
        x = round(fx * w)
        cv2.line(bg, (x, y0 - 2), (x, round(y0 - 0.3 * h)), (55, 55, 60), max(1, h // 100))
        cv2.circle(bg, (x, round(y0 - 0.3 * h)), max(2, h // 60), (200, 225, 235), -1)
    for fx in (0.2, 0.72):  # benches just below the walkway
        x0, yb = round(fx * w), round(y1 + 0.06 * h)
        cv2.rectangle(bg, (x0, yb), (x0 + w // 9, yb + max(2, h // 40)), (40, 75, 115), -1)
        cv2.rectangle(bg, (x0, yb - max(2, h // 50)), (x0 + w // 9, yb - 1), (30, 60, 95), -1)
    return bg


def _colors(rng: np.random.Generator) -> tuple[Color, Color]:
    """Dark clothes of any hue and a hair/skin head, shared by walkers and anomalous people."""
    b, g, r = (int(v) for v in rng.integers(20, 95, 3))
    return (b, g, r), _HEADS[int(rng.integers(0, len(_HEADS)))]


def _validate(
    width: int,
    height: int,
    fps: float,
    seed: int,
    ppm: float,
    anomalies: Sequence[ScheduledAnomaly],
    faults: Sequence[SceneFault] = (),
) -> None:
    if width < 64 or height < 64:
        raise ValueError(f"width and height must be >= 64, got {width}x{height}")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be finite and > 0, got {fps}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not (math.isfinite(ppm) and ppm >= 0):
        raise ValueError(f"people_per_minute must be finite and >= 0, got {ppm}")
    for a in anomalies:
        if not isinstance(a, ScheduledAnomaly):
            raise ValueError(f"anomalies must be ScheduledAnomaly instances, got {a!r}")
        a.__post_init__()  # re-check: frozen dataclasses can still be forged via object.__setattr__
    for f in faults:
        if not isinstance(f, SceneFault):
            raise ValueError(f"faults must be SceneFault instances, got {f!r}")
        f.__post_init__()


class SyntheticScene:
    """A seekable synthetic walkway camera; ``render(n, out)`` draws frame ``n`` in place.

    Normal walkers spawn about every ``60 / people_per_minute`` s (+-40 % jitter), at the left
    edge, and walk to the right at 0.8-1.2x ``normal_speed`` px/frame (crossing 4:3 in ~8 s),
    always wholly inside the walkway band. Each scheduled anomaly adds one object while active:

    - ``fast``: a bicycle at 4.5-5.5x ``normal_speed``, entering at the left edge (half visible),
    - ``wrong_way``: a person at normal speed entering at the right edge, walking leftwards,
    - ``forbidden_area``: a person strolling rightwards (0.4-1x normal speed) on the grass above or
      below the walkway, appearing at a random x; its box never overlaps the walkway rows,
    - ``loiter``: a person standing (swaying slightly) at a random x on the walkway,
    - ``left_object``: a bag appearing on the walkway at a random x and staying there.

    Moving anomalies that reach the far edge wrap around to the entry edge, so every active
    anomaly keeps at least half of its body in view for its whole duration, and none is drawn
    outside it (the object appears and vanishes at the window's frame boundaries).
    """

    def __init__(
        self,
        width: int = 320,
        height: int = 240,
        fps: float = 25.0,
        seed: int = 0,
        people_per_minute: float = 40.0,
        anomalies: Sequence[ScheduledAnomaly] = (),
        faults: Sequence[SceneFault] = (),
    ) -> None:
        _validate(width, height, fps, seed, people_per_minute, anomalies, faults)
        self.width, self.height, self.fps, self.seed = width, height, float(fps), seed
        self.people_per_minute = float(people_per_minute)
        self.anomalies: tuple[ScheduledAnomaly, ...] = tuple(anomalies)
        self._y0, self._y1 = round(0.38 * height), round(0.78 * height)
        self._speed = _WALK * _PERSON_H * height / self.fps  # tied to size, not frame width
        hmax = _HMAX * height  # tallest figure; lanes leave room for it, its bob and 3 px of AA
        self._lane = (self._y0 + 1.06 * hmax + 3, self._y1 - 3.0)
        self._grass = [
            r
            for r in ((1.06 * hmax + 3, self._y0 - 3.0), (self._y1 + 1.06 * hmax + 3, height - 3.0))
            if r[0] < r[1]
        ]
        self._bg = _background(
            width, height, self._y0, self._y1, np.random.default_rng([seed, 7, 0xB6])
        )
        self._noise = self._noise_bank(np.random.default_rng([seed, 7, 0x4E]))
        self._walkers: dict[int, _Walker] = {}
        ppm = self.people_per_minute
        self._interval = 60.0 * self.fps / ppm if ppm > 0 else math.inf
        self._max_travel = (width + 0.6 * hmax) / (0.8 * self._speed)
        # Walker k spawns near (k - warm) * interval: index 0 starts before frame 0 so the
        # walkway is already populated at frame 0 and indices stay >= 0 (rng seeds must be).
        self._warm = math.ceil(self._max_travel / self._interval) + 1 if ppm > 0 else 0
        self._plans = [self._plan(i, a) for i, a in enumerate(self.anomalies)]
        self.faults: tuple[SceneFault, ...] = tuple(faults)

    @property
    def walkway(self) -> tuple[int, int]:
        """Rows ``y0 <= y < y1`` of the walkway band; normal walkers stay wholly inside it."""
        return self._y0, self._y1

    @property
    def normal_speed(self) -> float:
        """Nominal walking speed in px/frame (walkers draw theirs from 0.8-1.2x this)."""
        return self._speed

    def render(self, n: int, out: np.ndarray) -> None:
        """Write frame ``n`` (BGR uint8, shape (height, width, 3), C-contiguous) into ``out``."""
        if n < 0:
            raise ValueError(f"frame index must be >= 0, got {n}")
        if out.shape != self._bg.shape or out.dtype != np.uint8 or not out.flags.c_contiguous:
            raise ValueError(f"out must be a C-contiguous uint8 array of shape {self._bg.shape}")
        fault = self.fault_at(n)
        if fault is not None and fault.kind == "freeze":  # the picture of the frame before
            n = max(_frame_bound(fault.start_s, self.fps) - 1, 0)
            fault = self.fault_at(n)
        np.copyto(out, self._bg)
        figs = self._walker_figures(n)
        figs += [self._anomaly(p, n) for p in self._plans if p.n0 <= n < p.n1]
        figs.sort(key=lambda f: f.feet)  # nearer (lower) figures occlude farther ones
        for f in figs:
            _draw(out, f)
        if fault is not None:
            self._spoil(out, fault)
        pos, neg = self._noise[n % _NOISE_OFFSETS]  # signed noise as two saturating passes
        cv2.add(out, pos, dst=out)
        cv2.subtract(out, neg, dst=out)

    def is_anomalous(self, n: int) -> bool:
        """Ground truth: a scheduled anomaly is active (and visible) in frame ``n``."""
        return any(p.n0 <= n < p.n1 for p in self._plans)

    def anomaly_boxes(self, n: int) -> list[Box]:
        """End-exclusive ``(x0, y0, x1, y1)`` boxes, clipped to the frame, of anomalies in ``n``."""
        boxes = (
            _box(self._anomaly(p, n), self.width, self.height)
            for p in self._plans
            if p.n0 <= n < p.n1
        )
        return [b for b in boxes if b is not None]

    def fault_at(self, n: int) -> SceneFault | None:
        """Ground truth: the scheduled fault in frame ``n`` (the first, if several)."""
        for f in self.faults:
            if (
                _frame_bound(f.start_s, self.fps)
                <= n
                < _frame_bound(f.start_s + f.duration_s, self.fps)
            ):
                return f
        return None

    # ------------------------------------------------------------------ internals
    def _spoil(self, out: np.ndarray, fault: SceneFault) -> None:
        """Apply a cover, shift or blur to the drawn scene (before the sensor noise)."""
        if fault.kind == "cover":
            out.fill(_COVERED)
        elif fault.kind == "blur":
            cv2.GaussianBlur(out, (0, 0), fault.amount or 4.0, dst=out)
        elif fault.kind == "shift":
            dx = fault.amount or 0.1 * self.width
            move = np.array([[1.0, 0.0, dx], [0.0, 1.0, 0.0]], np.float32)
            shifted = cv2.warpAffine(
                out, move, (self.width, self.height), borderMode=cv2.BORDER_REFLECT_101
            )
            np.copyto(out, shifted)

    def _noise_bank(self, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
        """64 noise frames as shifted windows (views) of one padded field: ~1 frame of memory."""
        h, w = self.height, self.width
        field = np.rint(rng.normal(0.0, 2.0, (h + _NOISE_PAD, w + _NOISE_PAD, 3)))
        pos = np.clip(field, 0, 255).astype(np.uint8)
        neg = np.clip(-field, 0, 255).astype(np.uint8)
        offsets = rng.integers(0, _NOISE_PAD + 1, (_NOISE_OFFSETS, 2))
        return [
            (pos[dy : dy + h, dx : dx + w], neg[dy : dy + h, dx : dx + w]) for dy, dx in offsets
        ]

    def _height_at(self, feet: float) -> float:
        return _PERSON_H * self.height * (0.85 + 0.3 * feet / self.height)  # farther = smaller

    def _bob(self, h: float, phase: float, t: float) -> float:
        return _BOB * h * abs(math.sin(phase + 2 * math.pi * t / self.fps))  # two steps a second

    def _walker(self, k: int) -> _Walker:
        w = self._walkers.get(k)
        if w is None:
            if len(self._walkers) >= _CACHE_MAX:  # bound memory on endless streams
                self._walkers.clear()
            rng = np.random.default_rng([self.seed, k])
            spawn = (k - self._warm + rng.uniform(-0.4, 0.4)) * self._interval
            feet = rng.uniform(*self._lane)
            h = self._height_at(feet) * rng.uniform(0.9, 1.1)
            speed = self._speed * rng.uniform(0.8, 1.2)
            body, head = _colors(rng)
            w = _Walker(
                spawn,
                (self.width + 0.6 * h) / speed,
                feet,
                speed,
                h,
                rng.uniform(0, 2 * math.pi),
                body,
                head,
            )
            self._walkers[k] = w
        return w

    def _walker_figures(self, n: int) -> list[_Figure]:
        """Walkers in view: only indices whose jittered spawn lies within max_travel before n."""
        if self._interval == math.inf:
            return []
        lo = max(0, math.floor((n - self._max_travel) / self._interval + self._warm - 0.5))
        hi = math.floor(n / self._interval + self._warm + 0.5)
        figs = []
        for k in range(lo, hi + 1):
            w = self._walker(k)
            t = n - w.spawn
            if 0 <= t < w.travel:
                figs.append(
                    _Figure(
                        False,
                        w.speed * t - 0.3 * w.h,
                        w.feet,
                        w.h,
                        self._bob(w.h, w.phase, t),
                        w.body,
                        w.head,
                    )
                )
        return figs

    def _plan(self, i: int, a: ScheduledAnomaly) -> _Plan:
        rng = np.random.default_rng([self.seed, i, 0xA0])
        n0, n1 = _frame_bound(a.start_s, self.fps), _frame_bound(a.start_s + a.duration_s, self.fps)
        lane, cx0, speed = self._lane, 0.0, self._speed * rng.uniform(0.8, 1.2)
        if a.kind == "fast":
            speed = self._speed * rng.uniform(4.5, 5.5)
        elif a.kind == "forbidden_area":
            lane = self._grass[int(rng.integers(0, len(self._grass)))]
            cx0, speed = rng.uniform(0.15, 0.85) * self.width, speed * rng.uniform(0.5, 0.8)
        elif a.kind in ("loiter", "left_object"):
            cx0, speed = rng.uniform(0.2, 0.8) * self.width, 0.0
        feet = rng.uniform(*lane)
        body, head = _colors(rng)
        h = self._height_at(feet) * rng.uniform(0.9, 1.1)
        return _Plan(a.kind, n0, n1, cx0, feet, speed, h, rng.uniform(0, 2 * math.pi), body, head)

    def _anomaly(self, p: _Plan, n: int) -> _Figure:
        """The anomaly's figure at frame n; moving ones wrap at the far edge (see class doc)."""
        t = n - p.n0
        if p.kind == "loiter":  # shifting weight from foot to foot, not walking
            cx = p.cx0 + 0.03 * p.h * math.sin(2 * math.pi * 0.25 * t / self.fps)
        elif p.kind == "left_object":
            cx = p.cx0
        elif p.kind == "wrong_way":  # enters at the right edge: cx = width at t = 0
            cx = self.width - (p.speed * t) % self.width
        else:
            cx = (p.cx0 + p.speed * t) % self.width
        walking = p.kind in ("wrong_way", "forbidden_area")
        bob = self._bob(p.h, p.phase, t) if walking else 0.0
        return _Figure(
            p.kind == "fast", cx, p.feet, p.h, bob, p.body, p.head, p.kind == "left_object"
        )
