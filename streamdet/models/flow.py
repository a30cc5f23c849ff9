"""Optical-flow model ("flow"): how fast, and which way, things move at each place vs normal.

Dense optical flow between the last two frames comes from OpenCV's DIS (Kroeger et al., ECCV
2016) at the model's input size (``preset="fast"``: ~800 pairs/s at 360x240 on one core). Per
pixel (after averaging the flow over 2x2 pixels), the flow's magnitude (pixels per frame) is kept
whole and also split by direction into ``directions`` sectors (right, left, down, up). Each is
averaged over ``window``-pixel squares at stride ``window / 2`` and max-pooled to the patch grid
(as in ``motion``), giving one *speed* channel and one channel per direction sector.

Each channel of each cell is divided by its own tail on normal footage (the ``quantile`` of that
cell over training frames): a cyclist is fast for where it rides, a walker against the crowd or
on the grass moves where, or the way, nobody normally does. A cell that normal footage rarely
visits would get a tiny scale and flag every passer-by, so a cell's scale is at least ``floor``
times its row's scale (rows, because in a fixed camera's perspective speed in pixels varies with
the row far more than along it). The cell score is the weighted mean of the speed ratio and the
largest direction-sector ratio; the frame score is the max over cells.

The flow is computed with OpenCV inside ``forward``, so this model cannot be exported to ONNX.
"""

from __future__ import annotations

from typing import Any, ClassVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from streamdet.errors import ModelError
from streamdet.models.base import (
    AnomalyModel,
    ModelSpec,
    Progress,
    TrainingData,
    TrainSettings,
)
from streamdet.models.motion import pool_to_grid, sample_windows

FLOW_DEFAULTS: dict[str, Any] = {
    "preset": "fast",  # DIS preset: "ultrafast", "fast" or "medium" (slower, ~150 pairs/s)
    "directions": 4,  # direction sectors: 0 or 4 (4 scored above 0, and above 8, on validation)
    "direction_weight": 1.0,  # weight of the direction channels against speed
    "window": 16,  # pixels: squares the flow is averaged over (about one walker's width)
    "quantile": 0.999,  # a cell's scale: this quantile of its values on normal frames
    "floor": 0.5,  # a cell's scale is at least this share of its row's scale
    "samples": 2000,  # training windows used for the statistics
}
PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


def default_spec() -> ModelSpec:
    """Full Ped2 size (360x240): flow at 240x160 loses the small far walkers' motion."""
    return ModelSpec(kind="flow", width=360, height=240, patch=16, params={})


def direction_channels(flow: Tensor, sectors: int) -> Tensor:
    """(B, 2, H, W) flow -> (B, 1 + sectors, H, W): speed, then speed per direction sector.

    ``sectors`` is 0 (speed only) or 4: right, left, down, up (image axes, x right, y down),
    each pixel's speed landing in the sector nearest its direction. Comparisons, not ``atan2``
    (and ``hypot``, not ``norm``): on this CPU those are several times faster in torch.
    """
    u, v = flow[:, :1], flow[:, 1:]
    speed = torch.hypot(u, v)
    if sectors == 0:
        return speed
    across = u.abs() >= v.abs()
    parts = [across & (u > 0), across & (u <= 0), ~across & (v > 0), ~across & (v <= 0)]
    return torch.cat([speed, *(speed * p for p in parts)], dim=1)


def cell_scales(features: Tensor, quantile: float, floor: float) -> Tensor:
    """(N, C, gh, gw) normal features -> (C, gh, gw) scales: each cell's tail quantile, but at
    least ``floor`` times the tail of its whole row (over frames and columns).
    """
    values = features.double().numpy()  # numpy: torch.quantile refuses > 16 M values
    per_cell = np.quantile(values, quantile, axis=0)
    per_row = np.quantile(values.transpose(1, 2, 0, 3), quantile, axis=(2, 3))[..., None]
    scale = np.maximum(per_cell, floor * per_row)
    return torch.from_numpy(np.maximum(scale, 1e-3)).float()


class FlowModel(AnomalyModel):
    """DIS optical flow per cell: speed and direction against that cell's normal footage."""

    kind = "flow"
    onnx_exportable: ClassVar[bool] = False
    cell_scale: Tensor

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.params = {**FLOW_DEFAULTS, **spec.params}
        if self.params["preset"] not in PRESETS:
            known = ", ".join(PRESETS)
            raise ModelError(f"flow: unknown preset {self.params['preset']!r}; known: {known}")
        if int(self.params["directions"]) not in (0, 4):
            raise ModelError(f"flow: directions must be 0 or 4, got {self.params['directions']}")
        self.context = 1
        channels = 1 + int(self.params["directions"])
        self.register_buffer("cell_scale", torch.ones(channels, *spec.grid))

    def flow(self, frames: Tensor) -> Tensor:
        """(B, T, H, W) uint8 -> (B, 2, h, w) DIS flow from the second newest to the newest frame,
        at the spec's size, in pixels per frame.
        """
        pairs = frames[:, -2:].cpu().numpy()
        size = (self.spec.width, self.spec.height)
        # one DIS object per call (~6 us): it keeps state between calls and is not thread-safe
        dis = cv2.DISOpticalFlow.create(PRESETS[self.params["preset"]])
        out = np.empty((len(pairs), 2, self.spec.height, self.spec.width), np.float32)
        for i, (prev, cur) in enumerate(pairs):
            if prev.shape != (self.spec.height, self.spec.width):
                prev = cv2.resize(prev, size, interpolation=cv2.INTER_AREA)
                cur = cv2.resize(cur, size, interpolation=cv2.INTER_AREA)
            # None: a fresh output (the stubs lack it; a given array would be an initial guess)
            out[i] = dis.calc(prev, cur, None).transpose(2, 0, 1)  # type: ignore[call-overload]
        return torch.from_numpy(out).to(frames.device)

    def features(self, frames: Tensor) -> Tensor:
        """(B, T, H, W) uint8 -> (B, 1 + directions, gh, gw): speed and speed per sector."""
        # flow averaged over 2x2 pixels first: the windows are 8x wider than that anyway, and
        # everything after costs a quarter
        flow = F.avg_pool2d(self.flow(frames), 2)
        channels = direction_channels(flow, int(self.params["directions"]))
        return pool_to_grid(channels, int(self.params["window"]) // 2, self.spec.grid)

    def raw_map(self, frames: Tensor) -> Tensor:
        return self.combine(self.features(frames))

    def combine(self, features: Tensor) -> Tensor:
        """(B, C, gh, gw) features -> (B, gh, gw) raw cell scores."""
        ratio = features / self.cell_scale.unsqueeze(0)
        if ratio.shape[1] == 1:
            return ratio[:, 0]
        w = float(self.params["direction_weight"])
        return (ratio[:, 0] + w * ratio[:, 1:].amax(dim=1)) / (1.0 + w)


def train_flow(
    model: AnomalyModel, data: TrainingData, settings: TrainSettings, progress: Progress
) -> None:
    """Per-cell scales of each channel on normal footage, then the global normalisation."""
    if not isinstance(model, FlowModel):
        raise ModelError(f"train_flow needs a FlowModel, got {type(model).__name__}")
    limit = int(model.params["samples"])
    batches = sample_windows(data, model.context, limit, settings.seed)
    features = []
    with torch.no_grad():
        for i, batch in enumerate(batches):
            progress("flow statistics", i / len(batches), {})
            features.append(model.features(torch.from_numpy(batch)))
        scale = cell_scales(
            torch.cat(features), float(model.params["quantile"]), float(model.params["floor"])
        )
        model.cell_scale.copy_(scale)
        progress("normalise", 0.9, {})
        model.set_normalisation(torch.cat([model.combine(f) for f in features]))
    progress("normalise", 1.0, {})


def build(spec: ModelSpec) -> AnomalyModel:
    if spec.kind != FlowModel.kind:
        raise ModelError(f"flow.build: unknown kind {spec.kind!r}")
    return FlowModel(spec)


TRAINERS = {FlowModel.kind: train_flow}
