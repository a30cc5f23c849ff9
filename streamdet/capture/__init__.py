"""Capture: sources, the per-camera frame ring, capture threads and their supervision.

Nothing is imported here: a module of capture is imported by its own name (``from
streamdet.capture.stage import CaptureStage``), so that reading one of them (the offline
evaluation's ``convert``) does not load capture's threads and PyAV's network code too.
"""
