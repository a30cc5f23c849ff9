"""Synthetic clips whose frame index can be read back from the pixels (shared with the
benchmarks, in ``benchmarks/media.py``), and the synthetic scene as training sees it."""

from __future__ import annotations

import cv2
import numpy as np

from benchmarks.media import BAND_FRACTION, CODE_BITS, make_clip, make_scene_clip, read_frame_index
from streamdet.capture.synthetic import SyntheticScene

__all__ = [
    "BAND_FRACTION",
    "CLIP_FRAMES",
    "CODE_BITS",
    "MODEL_SIZE",
    "footage",
    "make_clip",
    "make_scene_clip",
    "read_frame_index",
]

CLIP_FRAMES = 250  # the session's test clip (the ``clip`` fixture): 10 s at 25 fps
MODEL_SIZE = (240, 160)  # the default model input: footage is learned at this size


def footage(
    scene: SyntheticScene, seconds: float, size: tuple[int, int] = MODEL_SIZE
) -> np.ndarray:
    """The scene's first ``seconds`` as training sees them: grey at the model's size."""
    out = np.empty((scene.height, scene.width, 3), np.uint8)
    frames = []
    for n in range(round(seconds * scene.fps)):
        scene.render(n, out)
        grey = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
        frames.append(cv2.resize(grey, size, interpolation=cv2.INTER_AREA))
    return np.stack(frames)
