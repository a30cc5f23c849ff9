"""Camera health: a camera's learned normal look, and what a frame says against it.

``learn_baseline`` reads the same normal footage the model learns from (grey clips at the
model's size) and keeps, per measure, a low percentile of normal: brightness (mean), contrast
(standard deviation), sharpness (variance of the Laplacian), frame-to-frame change (mean
absolute difference of neighbouring frames), and a median image of the view at half size (people
passing by are not in it): the reference for where the view is. Its centre (1/8 margins) is
searched for in each frame by normalised cross-correlation: the offset of the best match is the
shift, its correlation the match. (Phase correlation was tried first: its whitened spectrum lets
sensor noise drown the static view, normal frames "shifted" by tens of pixels.)

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
  even the sensor noise stopped. Off when normal footage itself hardly changes (< 0.5 grey
  levels: a noise-free static view), since then a frozen picture looks like normal.

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

CONDITIONS = ("covered", "blurred", "moved", "frozen")

FORMAT = 1
LOW_PERCENTILE = 2.0  # "normal low": 2 % of normal frames are below it
SAMPLE_FRAMES = 200  # frames of the footage the baseline is learned from, evenly spread
COVERED_CONTRAST, COVERED_BRIGHTNESS = 0.3, 0.25
BLURRED_SHARPNESS = 0.3
MOVED_SHIFT_SHARE, MOVED_MISMATCH = 0.03, 2.0
_MARGIN = 8  # the template is the reference without 1/8 of it at each side
FROZEN_CHANGE, FROZEN_MIN_NORMAL = 0.2, 0.5


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


def _half(grey: np.ndarray) -> np.ndarray:
    h, w = grey.shape
    return cv2.resize(grey, (w // 2, h // 2), interpolation=cv2.INTER_AREA)


class Meter:
    """Measures frames against one reference image (keeps its template ready)."""

    def __init__(self, reference: np.ndarray) -> None:
        h, w = reference.shape
        self._margin = (w // _MARGIN, h // _MARGIN)
        mx, my = self._margin
        self._template = np.ascontiguousarray(reference[my : h - my, mx : w - mx], np.float32)

    def measure(self, grey: np.ndarray, before: np.ndarray | None) -> Measures:
        """``grey`` and ``before`` (the frame just before it, or None): uint8 at the size."""
        image = grey.astype(np.float32)
        change = None
        if before is not None:
            change = float(cv2.absdiff(image, before.astype(np.float32)).mean())
        scores = cv2.matchTemplate(_half(image), self._template, cv2.TM_CCOEFF_NORMED)
        _, match, _, (x, y) = cv2.minMaxLoc(scores)
        return Measures(
            brightness=float(image.mean()),
            contrast=float(image.std()),
            sharpness=float(cv2.Laplacian(image, cv2.CV_32F).var()),
            change=change,
            shift=math.hypot(x - self._margin[0], y - self._margin[1]),
            match=float(match),
        )


def learn_baseline(clips: list[np.ndarray]) -> HealthBaseline:
    """Learn the normal look from grey clips (each (n, h, w) uint8). Raises ModelError if
    there are fewer than 2 frames."""
    frames = [(c, i) for c in clips for i in range(len(c))]
    if len(frames) < 2:
        raise ModelError("health baseline: fewer than 2 frames of footage")
    picks = np.unique(np.linspace(0, len(frames) - 1, min(SAMPLE_FRAMES, len(frames))).astype(int))
    sample = np.stack([frames[k][0][frames[k][1]] for k in picks])
    height, width = sample.shape[1:]
    reference = np.median(np.stack([_half(f) for f in sample]), axis=0).round().astype(np.uint8)
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
    if m.change is not None and frozen_check_possible(baseline):
        frozen = _beyond(baseline.change, m.change, FROZEN_CHANGE)
    return {"covered": covered, "blurred": blurred, "moved": moved, "frozen": frozen}


def frozen_check_possible(baseline: HealthBaseline) -> bool:
    """Whether normal footage changes enough between frames for a frozen one to stand out."""
    return baseline.change >= FROZEN_MIN_NORMAL


def to_size(frame: np.ndarray, baseline: HealthBaseline) -> np.ndarray:
    """A ring frame (grey or BGR, any size) as the baseline measures it: grey at its size,
    resized as training footage was (INTER_AREA)."""
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    if grey.shape == (baseline.height, baseline.width):
        return grey
    return cv2.resize(grey, (baseline.width, baseline.height), interpolation=cv2.INTER_AREA)
