"""Capture: sources, the per-camera frame ring, capture threads and their supervision."""

from streamdet.capture.ring import FrameRing
from streamdet.capture.stage import CameraStatus, CaptureStage

__all__ = ["CameraStatus", "CaptureStage", "FrameRing"]
