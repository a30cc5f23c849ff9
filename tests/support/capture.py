"""Building capture stages for tests from plain dicts, the way a config file would, and reading
what their rings hold."""

from __future__ import annotations

from typing import Any

import numpy as np

from streamdet.capture.ring import FrameRing
from streamdet.capture.stage import CaptureStage
from streamdet.config import Config, parse_config
from tests.support.media import read_frame_index


def make_config(cameras: list[dict[str, Any]], **capture: Any) -> Config:
    return parse_config({"cameras": cameras, "capture": capture}, check_paths=False)


def rtsp_camera(name: str, url: str, **source: object) -> dict[str, object]:
    return {
        "name": name,
        "source": {"kind": "rtsp", "url": url, "open_timeout_s": 2, "read_timeout_s": 2, **source},
        "frame": {"width": 256, "height": 144},
    }


def stage_for(cameras: list[dict[str, Any]], **capture: Any) -> CaptureStage:
    config = make_config(cameras, **capture)
    return CaptureStage(config.cameras, config.capture, watchdog_interval_s=0.1)


def indices_in_ring(ring: FrameRing) -> list[int]:
    """Frame indices (from the pixels' code) of every frame still in the ring, oldest first."""
    count = min(ring.frames_written, ring.size - 1)
    if count == 0:
        return []
    _, frames = ring.window(count)
    return [read_frame_index(frame) for frame in frames]


def steps(indices: list[int], period: int) -> set[int]:
    """The set of differences between consecutive indices, modulo the clip length (loops)."""
    return {int(d) for d in np.mod(np.diff(indices), period)}
