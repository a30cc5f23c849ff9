"""Convert decoded frames, once, into the size and colour the models need.

Conversion writes straight into the ring slot (``out``) so the hot path allocates no frame-sized
arrays of its own: for greyscale the luma plane of a YUV frame is viewed without a copy and
resized into the slot in one OpenCV call.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

# Planar formats whose first plane is full-resolution luma (what "grey" means for the models).
_LUMA_FIRST = frozenset(
    {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"}
)


def luma_view(frame: Any) -> np.ndarray | None:
    """The Y plane of a PyAV frame as a (height, width) view, or None for packed formats."""
    if frame.format.name not in _LUMA_FIRST:
        return None
    plane = frame.planes[0]
    flat = np.frombuffer(plane, np.uint8)
    return flat.reshape(-1, plane.line_size)[: plane.height, : plane.width]


def resize_into(image: np.ndarray, out: np.ndarray) -> None:
    """Resize ``image`` to ``out``'s shape, writing into ``out``."""
    height, width = out.shape[:2]
    if image.shape[:2] == (height, width):
        np.copyto(out, image)
    else:
        cv2.resize(image, (width, height), dst=out, interpolation=cv2.INTER_LINEAR)


def av_frame_into(frame: Any, out: np.ndarray) -> None:
    """Convert a PyAV ``VideoFrame`` into ``out`` (grey if 2-D, BGR if 3-D)."""
    height, width = out.shape[:2]
    if out.ndim == 2:
        luma = luma_view(frame)
        if luma is not None:
            resize_into(luma, out)
            return
        small = frame.reformat(width=width, height=height, format="gray")
    else:
        small = frame.reformat(width=width, height=height, format="bgr24")
    np.copyto(out, small.to_ndarray())


def bgr_into(image: np.ndarray, out: np.ndarray, scratch: np.ndarray | None = None) -> None:
    """Convert a BGR uint8 image into ``out``; ``scratch`` is a reusable grey buffer."""
    if out.ndim == 3:
        resize_into(image, out)
        return
    if image.shape[:2] == out.shape:
        cv2.cvtColor(image, cv2.COLOR_BGR2GRAY, dst=out)
        return
    if scratch is None:
        scratch = np.empty(image.shape[:2], np.uint8)
    cv2.cvtColor(image, cv2.COLOR_BGR2GRAY, dst=scratch)
    resize_into(scratch, out)
