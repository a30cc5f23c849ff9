"""Zones and masks: which cells of a camera's anomaly map may raise an event."""

from __future__ import annotations

import numpy as np
from matplotlib.path import Path as Polygon

Points = list[tuple[float, float]]


def cell_mask(grid: tuple[int, int], zones: list[Points], masks: list[Points]) -> np.ndarray | None:
    """Boolean (gh, gw): True where anomalies count. None when every cell counts.

    A cell counts when its centre lies inside any zone (or there are no zones) and inside no
    mask. Coordinates are fractions of the frame, so the same polygons fit any map size.
    """
    if not zones and not masks:
        return None
    rows, cols = grid
    ys, xs = np.mgrid[0:rows, 0:cols]
    centres = np.column_stack([((xs + 0.5) / cols).ravel(), ((ys + 0.5) / rows).ravel()])
    keep = np.ones(len(centres), bool)
    if zones:
        keep &= np.any([Polygon(z).contains_points(centres) for z in zones], axis=0)
    for mask in masks:
        keep &= ~Polygon(mask).contains_points(centres)
    return keep.reshape(rows, cols)


def apply(anomaly_map: np.ndarray, mask: np.ndarray | None) -> tuple[float, np.ndarray]:
    """The frame score over the counted cells only, and the map with the rest at its floor."""
    if mask is None:
        return float(anomaly_map.max()), anomaly_map
    if mask.shape != anomaly_map.shape:
        raise ValueError(f"zone mask {mask.shape} does not fit the map {anomaly_map.shape}")
    floor = float(anomaly_map.min())
    masked = np.where(mask, anomaly_map, floor).astype(anomaly_map.dtype)
    return (float(masked[mask].max()) if mask.any() else floor), masked
