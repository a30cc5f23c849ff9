"""Pasted anomalies for footage without labels: recall on any camera's own scene.

``streamdet.eval.validation`` pastes Ped2-shaped walkers at Ped2's places and speeds. Ordinary
footage of other cameras (a room, a road, an escalator) needs anomalies in its own terms, so
here everything is measured on the clip itself:

* **sprites** are foreground regions of the clip's learning part (against its median), so they
  look like the scene's own objects (a person, a car);
* **rarely visited places** are where the learning part's foreground was least often seen;
* speeds are given in frame widths per second, sizes as multiples of the sprite's own.

Kinds: ``fast`` (crosses the frame in 0.8 s), ``place`` (drifts through the least visited band
at a walking pace), ``large`` (2.5x the sprite, at a normal pace), ``left`` (appears and stays
still at a rarely visited place), ``reverse`` (the sprite moving the other way along the row it
was cut from, at a normal pace, for scenes with one direction of travel). Labels are 1 while
the pasted object is visible.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from streamdet.eval.validation import Sprite, cutout, paste

PASTED_KINDS = ("fast", "place", "large", "left")


@dataclass(frozen=True)
class PastedClip:
    kind: str
    frames: np.ndarray  # (N, H, W) uint8
    labels: np.ndarray  # (N,) 0/1


def scene_sprites(learn: np.ndarray, count: int = 12, seed: int = 0) -> list[Sprite]:
    """Foreground regions of ``learn`` (N, H, W) against its median, of a plausible object's
    size (0.3-6 % of the frame), largest first among a random sample of frames."""
    rng = np.random.default_rng(seed)
    background = np.median(learn[:: max(len(learn) // 200, 1)], axis=0).astype(np.uint8)
    h, w = background.shape
    found: list[tuple[int, Sprite]] = []
    for i in rng.choice(len(learn), min(60, len(learn)), replace=False):
        fg = (cv2.absdiff(learn[i], background) > 25).astype(np.uint8)
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(fg)
        for j in range(1, n):
            x, y, bw, bh, area = stats[j]
            if 0.003 * h * w <= area <= 0.06 * h * w and area > 0.3 * bw * bh:
                found.append((int(area), cutout(learn[i], labels, j, (x, y, bw, bh))))
    found.sort(key=lambda a: -a[0])
    return [s for _, s in found[:count]]


def occupancy(learn: np.ndarray) -> np.ndarray:
    """(H, W) share of learning frames in which each pixel was foreground."""
    step = max(len(learn) // 200, 1)
    sample = learn[::step]
    background = np.median(sample, axis=0)
    moving: np.ndarray = (np.abs(sample.astype(np.float32) - background) > 25).mean(axis=0)
    return moving


def _scaled(sprite: Sprite, factor: float) -> Sprite:
    grey, mask = sprite
    size = (max(round(grey.shape[1] * factor), 2), max(round(grey.shape[0] * factor), 2))
    return cv2.resize(grey, size), cv2.resize(mask, size)


def _quiet_spot(occ: np.ndarray, sprite: Sprite) -> tuple[int, int]:
    """Top-left corner where the sprite covers the least visited pixels."""
    sh, sw = sprite[0].shape
    h, w = occ.shape
    integral = cv2.integral(occ.astype(np.float64))
    best, spot = float("inf"), (0, 0)
    for y in range(0, max(h - sh, 1), max(sh // 2, 1)):
        for x in range(0, max(w - sw, 1), max(sw // 2, 1)):
            y1, x1 = min(y + sh, h), min(x + sw, w)
            total = integral[y1, x1] - integral[y, x1] - integral[y1, x] + integral[y, x]
            if total < best:
                best, spot = total, (x, y)
    return spot


def paste_kind(
    watch: np.ndarray,
    kind: str,
    sprite: Sprite,
    occ: np.ndarray,
    fps: float,
    rng: np.random.Generator,
) -> PastedClip:
    """A copy of ``watch`` with one anomaly of ``kind`` from a random early frame."""
    out = watch.copy()
    labels = np.zeros(len(out), np.int8)
    h, w = out.shape[1:]
    start = int(rng.integers(min(5, len(out) // 4), max(len(out) // 3, 6)))
    direction = float(rng.choice([-1.0, 1.0]))
    walk = w / (6.0 * fps)  # a normal pace: across the frame in 6 s
    if kind == "large":
        sprite = _scaled(sprite, 2.5)
    sh, sw = sprite[0].shape
    if kind in ("left", "place"):
        x, y = (float(v) for v in _quiet_spot(occ, sprite))
        vx = 0.0 if kind == "left" else direction * walk * 0.5
    else:
        x = -sw + 1.0 if direction > 0 else w - 1.0
        y = float(rng.uniform(0.3 * h, max(0.3 * h, h - sh - 1)))
        vx = direction * (w / (0.8 * fps) if kind == "fast" else walk)
    end = len(out) if kind == "left" else min(len(out), start + int(6 * fps))
    for t in range(start, end):
        out[t], visible = paste(out[t], sprite, x, y)
        labels[t] = int(visible)
        x += vx
        if kind == "place" and (x < 0 or x > w - sw):
            vx, x = -vx, x - 2 * vx  # bounce: stay in the quiet place
        if x > w or x < -sw - 2:
            break
    return PastedClip(kind, out, labels)


def pasted_set(learn: np.ndarray, watch: np.ndarray, fps: float, seed: int = 0) -> list[PastedClip]:
    """One copy of ``watch`` per kind, each with one anomaly; sprites and quiet places from
    ``learn``. Empty when the learning part shows no object to cut out."""
    rng = np.random.default_rng(seed)
    sprites = scene_sprites(learn, seed=seed)
    if not sprites:
        return []
    occ = occupancy(learn)
    return [
        paste_kind(watch, kind, sprites[int(rng.integers(len(sprites)))], occ, fps, rng)
        for kind in PASTED_KINDS
    ]
