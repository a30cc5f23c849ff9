"""Scoring: causal smoothing of frame scores and calibration of thresholds."""
