"""Camera health: a camera's learned normal look, and what a frame says against it.

``learn_baseline`` reads the same normal footage the model learns from (grey clips at the
model's size) and keeps, per measure, a low percentile of normal: brightness (mean), contrast
(standard deviation), sharpness (variance of the Laplacian), frame-to-frame change (mean
absolute difference of neighbouring frames), and a median image of the view at half size (people
passing by are not in it): the reference for where the view is. Tiles of it are searched for
in each frame by normalised cross-correlation (see ``Meter``): the median offset of the best
matches is the shift, their median correlation the match. (Phase correlation was tried first:
its whitened spectrum lets sensor noise drown the static view, normal frames "shifted" by tens
of pixels; one large template was tried next: on real footage people and cars in front of it
"shifted" 2 % of normal frames by 9-18 px.)

``findings`` measures one live frame (and the frame before it) against a baseline and returns
how far beyond normal each condition is: a *strength* > 1 means the frame shows it.

- ``covered``: the image is flat (contrast < 0.3 x normal low) or dark (brightness < 0.25 x):
  a covered or painted lens, a black picture;
- ``blurred``: sharpness < 0.3 x normal low while not covered: out of focus, a fogged lens;
- ``moved``: the view shifted by more than 3 % of its width against the reference (and by more
  than twice the shift normal footage shows), or its mismatch (1 - match) is over twice normal
  (the 2 % worst), while neither covered nor blurred (those spoil the match too): turned or
  knocked;
- ``frozen``: neighbouring frames differ < 0.2 x normal low (the 2 % least change), that is,
  even the sensor noise stopped. Where normal footage itself hardly changes (< 0.5 grey levels:
  compressed footage of a still scene), only bit-identical neighbours are frozen, and that only
  when normal footage (almost) never repeats a frame (<= 1 %); else the check is off.

Pure code (numpy, OpenCV); persistence and hysteresis are ``streamdet.alert.health``'s.
"""

from __future__ import annotations

import base64
import math
from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from streamdet.errors import ModelError
from streamdet.views import find_tile, half

CONDITIONS = ("covered", "blurred", "moved", "frozen")

FORMAT = 1
LOW_PERCENTILE = 2.0  # "normal low": 2 % of normal frames are below it
SAMPLE_FRAMES = 200  # frames of the footage the baseline is learned from, evenly spread
COVERED_CONTRAST, COVERED_BRIGHTNESS = 0.3, 0.25
BLURRED_SHARPNESS = 0.3
MOVED_SHIFT_SHARE, MOVED_MISMATCH = 0.03, 2.0
_MARGIN = 8  # each tile of the reference is searched for within 1/8 of the size around it
_FLAT = 2.0  # grey levels of standard deviation: a tile flatter than this places nothing
FROZEN_CHANGE, FROZEN_MIN_NORMAL = 0.2, 0.5
# Compressed footage of a still scene hardly changes: there, frozen means bit-identical
# neighbours (mean difference under this), unless normal footage repeats frames too (over 1 %).
IDENTICAL, MAX_NORMAL_REPEATS = 1e-3, 0.01


@dataclass(frozen=True)
class Measures:
    """What one frame shows, at the baseline's size."""

    brightness: float
    contrast: float
    sharpness: float
    change: float | None  # None without a neighbouring frame before it
    shift: float  # px at half size, against the reference
    match: float  # normalised cross-correlation of the view with the reference, -1..1


@dataclass(frozen=True)
class HealthBaseline:
    """A camera's normal look, learned with its model and saved in its checkpoint."""

    width: int  # frames are measured at this size (the model's)
    height: int
    brightness: float  # low percentile of normal frames
    contrast: float
    sharpness: float
    change: float
    shift: float  # high percentile of the shift against the reference
    match: float  # low percentile of the match against the reference
    repeats: float  # share of normal neighbouring frames that are identical
    reference: str  # base64 of the uint8 median image at half size

    def reference_image(self) -> np.ndarray:
        raw = np.frombuffer(base64.b64decode(self.reference), np.uint8)
        return raw.reshape(self.height // 2, self.width // 2).astype(np.float32)

    def as_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, **asdict(self)}

    @staticmethod
    def from_dict(meta: dict[str, Any]) -> HealthBaseline:
        """The baseline of a checkpoint's ``health`` metadata. Raises ModelError if damaged."""
        try:
            if meta.get("format") != FORMAT:
                raise ValueError(f"format {meta.get('format')!r}, expected {FORMAT}")
            fields = {k: v for k, v in meta.items() if k != "format"}
            baseline = HealthBaseline(**fields)
            numbers = [v for k, v in fields.items() if k != "reference"]
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers):
                raise ValueError("a measure is not a finite number")
            if baseline.width < 16 or baseline.height < 16:
                raise ValueError(f"size {baseline.width}x{baseline.height}")
            baseline.reference_image()
        except (TypeError, ValueError, AttributeError) as exc:
            raise ModelError(f"damaged health baseline in the checkpoint: {exc}") from None
        return baseline


class Meter:
    """Measures frames against one reference image (keeps its tiles ready).

    Where the view is comes from 9 tiles of the reference (a 3 x 3 grid, each a quarter of its
    size), each searched for within 1/8 of the size around its place: the view's shift is the
    lower third of the tiles' offsets (what two thirds of them agree on) and its match the
    median of their correlations, so that people or cars in front of a few tiles do not move
    the view. Flat tiles (a clear sky, a bare wall) match anything and are left out.
    """

    def __init__(self, reference: np.ndarray) -> None:
        h, w = reference.shape
        self._tiles: list[tuple[np.ndarray, tuple[int, int, int, int], tuple[int, int]]] = []
        tw, th, mx, my = w // 8, h // 8, w // _MARGIN, h // _MARGIN  # tile half-sizes, search
        if tw < 2 or th < 2:  # a view too small to place (under 32 px at half size)
            return
        for cy in (h // 4, h // 2, 3 * h // 4):
            for cx in (w // 4, w // 2, 3 * w // 4):
                tile = reference[cy - th : cy + th, cx - tw : cx + tw].astype(np.float32)
                if float(tile.std()) < _FLAT:
                    continue
                area = (max(cx - tw - mx, 0), max(cy - th - my, 0), cx + tw + mx, cy + th + my)
                self._tiles.append((tile, area, (cx - tw - area[0], cy - th - area[1])))

    def measure(self, grey: np.ndarray, before: np.ndarray | None) -> Measures:
        """``grey`` and ``before`` (the frame just before it, or None): uint8 at the size."""
        image = grey.astype(np.float32)
        change = None
        if before is not None:
            change = float(cv2.absdiff(image, before.astype(np.float32)).mean())
        shift, match = self._where(half(image))
        return Measures(
            brightness=float(image.mean()),
            contrast=float(image.std()),
            sharpness=float(cv2.Laplacian(image, cv2.CV_32F).var()),
            change=change,
            shift=shift,
            match=match,
        )

    def _where(self, image: np.ndarray) -> tuple[float, float]:
        """The view's shift (px at half size) and match against the reference's tiles."""
        if not self._tiles:  # a flat reference: nothing to place the view by
            return 0.0, 1.0
        dxs, dys, matches = [], [], []
        for tile, area, at in self._tiles:
            dx, dy, best = find_tile(image, tile, area, at)
            dxs.append(dx)
            dys.append(dy)
            matches.append(best)
        # a turned camera moves every tile; an object standing in front of a few (a parked car,
        # a left bag) moves only theirs: the shift is what two thirds of the tiles agree on
        moved = np.hypot(np.asarray(dxs, np.float64), np.asarray(dys, np.float64))
        return float(np.quantile(moved, 1 / 3)), float(np.median(matches))


def learn_baseline(clips: list[np.ndarray]) -> HealthBaseline:
    """Learn the normal look from grey clips (each (n, h, w) uint8). Raises ModelError if
    there are fewer than 2 frames."""
    frames = [(c, i) for c in clips for i in range(len(c))]
    if len(frames) < 2:
        raise ModelError("health baseline: fewer than 2 frames of footage")
    picks = np.unique(np.linspace(0, len(frames) - 1, min(SAMPLE_FRAMES, len(frames))).astype(int))
    sample = np.stack([frames[k][0][frames[k][1]] for k in picks])
    height, width = sample.shape[1:]
    reference = np.median(np.stack([half(f) for f in sample]), axis=0).round().astype(np.uint8)
    meter = Meter(reference)
    measures = []
    for k in picks:
        clip, i = frames[k]
        measures.append(meter.measure(clip[i], clip[i - 1] if i > 0 else None))
    changes = [m.change for m in measures if m.change is not None]
    if not changes:  # one-frame clips only: take neighbours of the sample
        changes = [float(np.abs(sample[1:].astype(np.float32) - sample[:-1]).mean())]

    def low(values: list[float]) -> float:
        return float(np.percentile(values, LOW_PERCENTILE))

    return HealthBaseline(
        repeats=float(np.mean(np.array(changes) < IDENTICAL)),
        width=int(width),
        height=int(height),
        brightness=low([m.brightness for m in measures]),
        contrast=low([m.contrast for m in measures]),
        sharpness=low([m.sharpness for m in measures]),
        change=low(changes),
        shift=float(np.percentile([m.shift for m in measures], 100 - LOW_PERCENTILE)),
        match=low([m.match for m in measures]),
        reference=base64.b64encode(reference.tobytes()).decode("ascii"),
    )


def _beyond(normal: float, measured: float, factor: float) -> float:
    """Strength of "``measured`` below ``factor`` x ``normal``": > 1 when it is."""
    return factor * normal / max(measured, 1e-6)


def findings(baseline: HealthBaseline, m: Measures) -> dict[str, float]:
    """Each condition's strength for one frame (> 1: the frame shows it). See the module doc."""
    covered = max(
        _beyond(baseline.contrast, m.contrast, COVERED_CONTRAST),
        _beyond(baseline.brightness, m.brightness, COVERED_BRIGHTNESS),
    )
    blurred = _beyond(baseline.sharpness, m.sharpness, BLURRED_SHARPNESS)
    allowed = max(MOVED_SHIFT_SHARE * baseline.width / 2, 2 * baseline.shift + 1)
    mismatch = (1 - m.match) / max(MOVED_MISMATCH * (1 - baseline.match), 1e-3)
    moved = max(m.shift / allowed, mismatch)
    if covered > 1:
        blurred = moved = 0.0
    elif blurred > 1:
        moved = 0.0
    frozen = 0.0
    if m.change is not None and baseline.change >= FROZEN_MIN_NORMAL:
        frozen = _beyond(baseline.change, m.change, FROZEN_CHANGE)
    elif m.change is not None and frozen_check_possible(baseline):
        frozen = 2.0 if m.change < IDENTICAL else 0.0
    return {"covered": covered, "blurred": blurred, "moved": moved, "frozen": frozen}


def frozen_check_possible(baseline: HealthBaseline) -> bool:
    """Whether a frozen picture stands out from normal footage: normal neighbouring frames
    change enough, or at least are (almost) never identical."""
    return baseline.change >= FROZEN_MIN_NORMAL or baseline.repeats <= MAX_NORMAL_REPEATS


def to_size(frame: np.ndarray, baseline: HealthBaseline) -> np.ndarray:
    """A ring frame (grey or BGR, any size) as the baseline measures it: grey at its size,
    resized as training footage was (INTER_AREA)."""
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    if grey.shape == (baseline.height, baseline.width):
        return grey
    return cv2.resize(grey, (baseline.width, baseline.height), interpolation=cv2.INTER_AREA)
