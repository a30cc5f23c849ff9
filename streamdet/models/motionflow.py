"""Moving share + optical-flow speed ("motionflow"), the default model: how much moves, how fast.

Two local cues of the newest frame pair, at the model's input size (360x240 by default):

* *moving share*: pixels whose absolute grey-level difference exceeds ``level``, as a share of
  each ``window``-pixel square. Raw pixels, not blurred: a blur halves the difference inside a
  fast object's textured body and cost 0.03-0.05 AUC on UCSD Ped2.
* *flow speed*: the magnitude of OpenCV's DIS optical flow (Kroeger et al., ECCV 2016), averaged
  over the same squares. DIS runs from half resolution (``finest_scale=1``): its "fast" preset
  stops at quarter resolution, which blurs a walker's legs and a cyclist into one slow patch.

Squares are taken at stride ``window / 2`` and max-pooled to the patch grid (see
``motion.pool_to_grid``). Each cue is then put on the scale of its *frame maxima* on normal
footage: ``z = (value - mean) / std`` of the per-frame max over squares. The frame score is the
sum of the two cues' z-scored maxima, and a cell of the anomaly map is the sum of its two
z-scores, so the map peaks where the frame score comes from. Frame maxima, not per-location
statistics: places normal footage rarely visits would get tiny scales and flag every passer-by,
and a crowd's many walkers do not raise a max the way they raise a mean.

Settings were chosen on the validation set made from training footage
(``streamdet.eval.validation``, all kinds, causal EMA 0.5), never with test labels: levels 12-25
and windows 16-24 form a plateau (0.936-0.941 AUC there); the DIS settings are the cheapest within
0.01 of the best validated ones (~310 pairs/s on one core at 360x240). Summing frame maxima scored
above per-cell sums there (0.939 vs 0.871) and above either cue alone.

The flow is computed with OpenCV inside ``forward``, so this model cannot be exported to ONNX
(``motion`` is the exportable, torch-only alternative).
"""

from __future__ import annotations

from typing import Any, ClassVar

import cv2
import numpy as np
import torch
from torch import Tensor

from streamdet.errors import ModelError
from streamdet.models.base import (
    AnomalyModel,
    ModelOutput,
    ModelSpec,
    Progress,
    TrainingData,
    TrainSettings,
)
from streamdet.models.motion import pool_to_grid, sample_windows

MOTIONFLOW_DEFAULTS: dict[str, Any] = {
    "level": 16.0,  # grey levels: a pixel "moves" when its difference exceeds this
    "window": 24,  # pixels: the squares both cues are averaged over (about one walker)
    "finest_scale": 1,  # DIS: 0 full, 1 half, 2 quarter resolution ("fast" preset: 2)
    "dis_patch": 8,  # DIS: patch side, pixels
    "dis_stride": 6,  # DIS: patch stride, pixels
    "dis_iterations": 12,  # DIS: gradient-descent iterations per scale
    "dis_refine": 5,  # DIS: variational refinement iterations (0: none)
    "samples": 2000,  # training windows used for the statistics
}
CUES = ("moving share", "flow speed")


def default_spec() -> ModelSpec:
    """Ped2's full size (360x240): at 240x160 the far walkers' motion is a pixel or two."""
    return ModelSpec(kind="motionflow", width=360, height=240, patch=16, params={})


class MotionFlowModel(AnomalyModel):
    """Moving share and DIS flow speed per square, each z-scored by its normal frame maxima."""

    kind = "motionflow"
    onnx_exportable: ClassVar[bool] = False
    cue_mean: Tensor
    cue_std: Tensor

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        unknown = set(spec.params) - set(MOTIONFLOW_DEFAULTS)
        if unknown:
            known = ", ".join(MOTIONFLOW_DEFAULTS)
            raise ModelError(f"motionflow: unknown params {sorted(unknown)}; known: {known}")
        self.params = {**MOTIONFLOW_DEFAULTS, **spec.params}
        if not 0 <= int(self.params["finest_scale"]) <= 4:
            raise ModelError(
                f"motionflow: finest_scale must be 0-4, got {self.params['finest_scale']}"
            )
        if int(self.params["window"]) < 2:
            raise ModelError(f"motionflow: window must be >= 2 pixels, got {self.params['window']}")
        self.context = 1
        self.register_buffer("cue_mean", torch.zeros(len(CUES)))
        self.register_buffer("cue_std", torch.ones(len(CUES)))

    def _dis(self) -> cv2.DISOpticalFlow:
        # one DIS object per call (~6 us): it keeps state between calls and is not thread-safe
        p = self.params
        dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        dis.setFinestScale(int(p["finest_scale"]))
        dis.setPatchSize(int(p["dis_patch"]))
        dis.setPatchStride(int(p["dis_stride"]))
        dis.setGradientDescentIterations(int(p["dis_iterations"]))
        dis.setVariationalRefinementIterations(int(p["dis_refine"]))
        return dis

    def pixel_cues(self, frames: Tensor) -> Tensor:
        """(B, T, H, W) uint8 -> (B, 2, h, w) float: moving (0/1) and flow speed (pixels/frame)
        from the second newest to the newest frame, at the spec's size.
        """
        pairs = frames[:, -2:].cpu().numpy()
        h, w = self.spec.height, self.spec.width
        level = float(self.params["level"])
        dis = self._dis()
        out = np.empty((len(pairs), 2, h, w), np.float32)
        for i, (prev, cur) in enumerate(pairs):
            if prev.shape != (h, w):
                prev = cv2.resize(prev, (w, h), interpolation=cv2.INTER_AREA)
                cur = cv2.resize(cur, (w, h), interpolation=cv2.INTER_AREA)
            out[i, 0] = cv2.absdiff(prev, cur) > level
            # None: a fresh output (the stubs lack it; a given array would be an initial guess)
            flow = dis.calc(prev, cur, None)  # type: ignore[call-overload]
            out[i, 1] = cv2.magnitude(flow[..., 0], flow[..., 1])
        return torch.from_numpy(out).to(frames.device)

    def features(self, frames: Tensor) -> Tensor:
        """(B, T, H, W) uint8 -> (B, 2, gh, gw): both cues' square means, max-pooled per cell."""
        return pool_to_grid(self.pixel_cues(frames), int(self.params["window"]), self.spec.grid)

    def zscores(self, features: Tensor) -> Tensor:
        return (features - self.cue_mean.view(1, -1, 1, 1)) / self.cue_std.view(1, -1, 1, 1)

    def raw_map(self, frames: Tensor) -> Tensor:
        return self.zscores(self.features(frames)).sum(dim=1)

    def forward(self, frames: Tensor) -> ModelOutput:
        buffers = dict(self.named_buffers())
        return self.forward_grouped(frames, {k: v.unsqueeze(0) for k, v in buffers.items()})

    def forward_grouped(self, frames: Tensor, buffers: dict[str, Tensor]) -> ModelOutput:
        """Score the windows of several cameras in one call: ``frames`` (B, T, H, W), one window
        per camera, and each buffer stacked per camera along a new first dimension (B, ...) or
        shared (1, ...). The cues cost the same for every camera; only the statistics differ,
        so this is the grouped computation the runner uses instead of ``vmap`` (which cannot
        trace OpenCV).
        """
        features = self.features(frames)
        mean, std = buffers["cue_mean"][..., None, None], buffers["cue_std"][..., None, None]
        z = (features - mean) / std
        norm_mean, norm_std = buffers["norm_mean"].view(-1, 1), buffers["norm_std"].view(-1, 1)
        cells = (z.sum(dim=1).flatten(1) - norm_mean) / norm_std
        peaks = (z.amax(dim=(2, 3)).sum(dim=1, keepdim=True) - norm_mean) / norm_std
        return ModelOutput(peaks[:, 0], cells.view(z.shape[0], *z.shape[2:]))


def train_motionflow(
    model: AnomalyModel, data: TrainingData, settings: TrainSettings, progress: Progress
) -> None:
    """Mean and std of each cue's frame maxima on normal footage (no weights to learn)."""
    if not isinstance(model, MotionFlowModel):
        raise ModelError(f"train_motionflow needs a MotionFlowModel, got {type(model).__name__}")
    batches = sample_windows(data, model.context, int(model.params["samples"]), settings.seed)
    peaks = []
    with torch.no_grad():
        for i, batch in enumerate(batches):
            progress("flow statistics", i / len(batches), {"windows": float(i * 64)})
            peaks.append(model.features(torch.from_numpy(batch)).amax(dim=(2, 3)))
    flat = torch.cat(peaks)
    if len(flat) < 2:
        raise ModelError(f"motionflow: need at least 2 training windows, got {len(flat)}")
    model.cue_mean.copy_(flat.mean(dim=0))
    model.cue_std.copy_(torch.clamp(flat.std(dim=0), min=1e-3))
    progress("flow statistics", 1.0, {"windows": float(len(flat))})


def build(spec: ModelSpec) -> AnomalyModel:
    if spec.kind != MotionFlowModel.kind:
        raise ModelError(f"motionflow.build: unknown kind {spec.kind!r}")
    return MotionFlowModel(spec)


TRAINERS = {MotionFlowModel.kind: train_motionflow}
