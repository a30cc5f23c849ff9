"""Where a camera's view is against a reference image: a tile of the reference looked for in a
frame by normalised cross-correlation (OpenCV), at half size. Camera health places the whole
view with it (``streamdet.learning.health.Meter``: turned or knocked), and the objects model
keeps its learned background registered with it (``streamdet.models.objects.register``)."""

from __future__ import annotations

import cv2
import numpy as np


def half(image: np.ndarray) -> np.ndarray:
    """``image`` (h, w) at half size (area-averaged), in its own dtype."""
    h, w = image.shape
    return cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA)


def find_tile(
    image: np.ndarray,
    tile: np.ndarray,
    area: tuple[int, int, int, int],
    at: tuple[int, int],
    subpixel: bool = False,
) -> tuple[float, float, float]:
    """Where ``tile`` is in ``area`` (x0, y0, x1, y1) of ``image`` (same dtype): (dx, dy, match),
    its offset from ``at`` (its top-left corner in the area where the view has not moved) and
    the correlation there. With ``subpixel``, the offset to a fraction of a pixel, from a
    parabola through the best match and its neighbours along each axis."""
    x0, y0, x1, y1 = area
    scores = cv2.matchTemplate(image[y0:y1, x0:x1], tile, cv2.TM_CCOEFF_NORMED)
    _, best, _, (x, y) = cv2.minMaxLoc(scores)
    dx, dy = float(x - at[0]), float(y - at[1])
    if subpixel:
        dx += _vertex(scores[y, :], x)
        dy += _vertex(scores[:, x], y)
    return dx, dy, float(best)


def _vertex(values: np.ndarray, at: int) -> float:
    """Sub-pixel offset of a peak at ``at`` from the parabola through it and its neighbours."""
    if at <= 0 or at >= len(values) - 1:
        return 0.0
    left, mid, right = (float(v) for v in values[at - 1 : at + 2])
    bend = left - 2 * mid + right
    return 0.0 if bend >= 0 else float(np.clip(0.5 * (left - right) / bend, -0.5, 0.5))
