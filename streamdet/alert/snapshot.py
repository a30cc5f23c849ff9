"""Snapshots: the frame at an event's peak with its anomaly heatmap blended over it (JPEG).

The frame is the camera's own (full resolution, colour) when its footage has it, else the
model-size frame of the ring; boxes, lines and labels are sized for whichever it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from streamdet.frames import DetectedObject


def render_snapshot(
    frame: np.ndarray,
    anomaly_map: np.ndarray,
    threshold: float,
    region: tuple[float, float, float, float],
    objects: Sequence[DetectedObject] = (),
) -> np.ndarray:
    """BGR image: the frame, a heatmap of the map cells near and above the threshold, and the
    region outlined; with an object-level model, each unusual object boxed and labelled with
    its reason instead of the region."""
    image = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame.copy()
    height, width = image.shape[:2]
    # 0 at half the threshold, full colour at the threshold and above.
    level = np.clip((anomaly_map - threshold / 2) / max(threshold / 2, 1e-6), 0, 1)
    heat = cv2.resize(level.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
    alpha = (heat * 0.6)[..., None]
    blended = (image * (1 - alpha) + colour * alpha).astype(np.uint8)
    boxes = [(o.box, o.reason) for o in objects] or [(region, "")]
    # Lines and text grow with the image: as legible on a 4K frame as on the model's 320x240.
    size = max(height, 120) / 240
    thick = max(1, round(size))
    for (x0, y0, x1, y1), label in boxes:
        top_left = (int(x0 * width), int(y0 * height))
        cv2.rectangle(
            blended, top_left, (int(x1 * width) - 1, int(y1 * height) - 1), (0, 0, 255), 2 * thick
        )
        if label:
            scale = 0.4 * size
            (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
            x, y = top_left[0], max(top_left[1] - 3, th + 3)
            cv2.rectangle(blended, (x, y - th - 3), (x + tw + 2, y + 2), (0, 0, 255), -1)
            cv2.putText(
                blended, label, (x + 1, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thick
            )
    return blended


def write_jpeg(path: Path, image: np.ndarray, quality: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise OSError(f"could not encode {path}")
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data.tobytes())
    tmp.replace(path)
    return path
