"""Keeping the learned background registered against a camera that drifts (OpenCV, NumPy).

A mount that sags or a pole that bends in the wind moves the whole view by a few pixels over
minutes. Against a background learned before, every edge of the scene then differs from the
background where it used to be, and each is found as an object that stands still where no
normal object stood: on a real parking-lane clip whose view drifts by 3 pixels, lane lines
scored as high as any car in every frame. ``shift_tolerance`` absorbs a pixel of jitter;
this finds a larger shift and moves the background by it.

At half the model's size, the background's most textured tiles (``TILE`` pixels, the best of
each cell of a 3 x 3 grid) are looked for in the frame within ``register_px`` pixels of where
they were (normalised cross-correlation, ``cv2.matchTemplate``, to a tenth of a pixel by a
parabola through the best match and its neighbours). A tile counts when it is found clearly
(correlation ``MATCH`` or more: an object passing over it hides it); the shift is the median
of the tiles that agree with it within a pixel, and only when ``AGREE`` tiles or more do (the
scene moved as a whole, not a car across two tiles). It is rounded to whole pixels: what is
left is below the tolerance's pixel.

It costs ~0.3 ms a frame at 360 x 240 (at full size, 0.8), and is only looked for when a frame
has an object that does not move (``still_objects``): a drifted edge does not move from one
frame to the next, a walker does.
"""

from __future__ import annotations

import cv2
import numpy as np

from streamdet.views import find_tile, half

TILE = 16  # pixels at half size: side of a background tile looked for in the frame
GRID = (3, 3)  # one tile per cell: spread over the view
MATCH = 0.7  # least normalised cross-correlation for a tile to count as found
AGREE = 3  # tiles that must agree on the shift


class Anchors:
    """The background's tiles to look for, chosen once per background (``tiles`` on first
    use: most frames never need them)."""

    def __init__(self, background: np.ndarray, reach: int) -> None:
        self.background = background  # at the model's size
        self.reach = reach  # pixels at the model's size
        self._tiles: list[tuple[int, int, np.ndarray]] | None = None

    def tiles(self) -> list[tuple[int, int, np.ndarray]]:
        """(top, left, tile uint8) at half size: each cell's most textured tile that can move
        by ``reach`` pixels and stay in the frame."""
        if self._tiles is None:
            self._tiles = _choose(half(_grey8(self.background)), _half_reach(self.reach))
        return self._tiles

    def shift(self, frame: np.ndarray) -> tuple[int, int]:
        """(dx, dy): how far the view moved since the background was learned, in whole pixels
        at the model's size; (0, 0) when the tiles do not agree (or reach is 0)."""
        if self.reach <= 0:
            return 0, 0
        r = _half_reach(self.reach)
        small = half(_grey8(frame))
        found = []
        for top, left, tile in self.tiles():
            area = (left - r, top - r, left + TILE + r, top + TILE + r)
            dx, dy, best = find_tile(small, tile, area, (r, r), subpixel=True)
            if best >= MATCH:
                found.append((dx, dy))
        if len(found) < AGREE:
            return 0, 0
        moves = 2.0 * np.array(found, np.float64)  # at the model's size
        agree = (np.abs(moves - np.median(moves, axis=0)) <= 1).all(axis=1)
        if agree.sum() < AGREE:
            return 0, 0
        dx, dy = np.median(moves[agree], axis=0)
        return int(np.rint(dx)), int(np.rint(dy))


def _grey8(image: np.ndarray) -> np.ndarray:
    """A background (int16, float) as the frames are: uint8."""
    return image if image.dtype == np.uint8 else np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _half_reach(reach: int) -> int:
    return -(-reach // 2)


def _choose(background: np.ndarray, reach: int) -> list[tuple[int, int, np.ndarray]]:
    grey = background.astype(np.float32)
    edges = np.abs(cv2.Sobel(grey, cv2.CV_32F, 1, 0)) + np.abs(cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    texture = cv2.boxFilter(edges, -1, (TILE, TILE), normalize=False)  # centred sums
    h, w = background.shape
    half = TILE // 2
    out = []
    for gy in range(GRID[0]):
        for gx in range(GRID[1]):
            y0 = max(gy * h // GRID[0], half + reach)
            y1 = min((gy + 1) * h // GRID[0], h - half - reach)
            x0 = max(gx * w // GRID[1], half + reach)
            x1 = min((gx + 1) * w // GRID[1], w - half - reach)
            if y1 <= y0 or x1 <= x0:
                continue
            cell = texture[y0:y1, x0:x1]
            cy, cx = np.unravel_index(int(np.argmax(cell)), cell.shape)
            if cell[cy, cx] <= 0:  # a flat cell: nothing to find
                continue
            top, left = int(cy) + y0 - half, int(cx) + x0 - half
            out.append((top, left, background[top : top + TILE, left : left + TILE].copy()))
    return out


def moved(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``image`` (..., h, w) moved by (dx, dy) pixels: out[y, x] = image[y - dy, x - dx], the
    edges repeated where nothing came in."""
    if dx == 0 and dy == 0:
        return image
    h, w = image.shape[-2:]
    r = max(abs(dx), abs(dy))
    pad = [(0, 0)] * (image.ndim - 2) + [(r, r), (r, r)]
    padded = np.pad(image, pad, mode="edge")
    return padded[..., r - dy : r - dy + h, r - dx : r - dx + w]


def still_objects(found: np.ndarray, moving: np.ndarray, share: float = 0.1) -> bool:
    """Whether any region of ``found`` (rows x, y, w, h, ...) has less than ``share`` of its
    box's pixels changing since the frame before (``moving``: bool (h, w))."""
    for x, y, bw, bh in found[:, :4].astype(np.int64):
        if moving[y : y + bh, x : x + bw].mean() < share:
            return True
    return False
