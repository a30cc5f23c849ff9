"""Evaluation on labelled datasets (frame-level AUC, streaming and per-video)."""
