"""Moving share + optical-flow speed ("motionflow", the default before "objects"): how fast.

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

import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
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
    with_defaults,
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


DIS_KEYS = ("finest_scale", "dis_patch", "dis_stride", "dis_iterations", "dis_refine")
_local = threading.local()  # per thread: DIS objects by settings
CHUNK = 4  # windows per task: small, so a worker slowed by the decoders delays little
_pool: ThreadPoolExecutor | None = None
DIS_PER_THREAD = 48  # DIS objects a thread keeps (one per image size it was asked for)
_pool_lock = threading.Lock()


def flow_pool() -> ThreadPoolExecutor:
    """One worker per core, shared by every motionflow model of the process. A batch's windows
    are spread over it while the inference thread waits: OpenCV's own threads parallelise only
    parts of one DIS call, and in the live pipeline that left the inference thread behind with a
    core partly idle (benchmarks/pipeline.py)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(os.cpu_count() or 1, thread_name_prefix="motionflow")
        return _pool


def thread_dis(params: dict[str, Any], size: tuple[int, int] = (0, 0)) -> cv2.DISOpticalFlow:
    """This thread's DIS object for these settings (``DIS_KEYS`` of ``params``, defaults for
    the missing) and image ``size`` (a caller whose sizes vary gets one per size, the
    ``DIS_PER_THREAD`` last used kept). Not thread-safe, so one per thread; reused, because a
    call at a new size allocates its buffers (~1.4 ms of a 3.3 ms pair at 360x240). It keeps no
    flow between calls: reuse gives bit-identical flows."""
    key = (*(int(params.get(k, MOTIONFLOW_DEFAULTS[k])) for k in DIS_KEYS), *size)
    cache: OrderedDict[tuple[int, ...], cv2.DISOpticalFlow] = _local.__dict__.setdefault(
        "dis", OrderedDict()
    )
    dis = cache.get(key)
    if dis is None:
        dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        finest, patch, stride, iterations, refine = key[: len(DIS_KEYS)]
        dis.setFinestScale(finest)
        dis.setPatchSize(patch)
        dis.setPatchStride(stride)
        dis.setGradientDescentIterations(iterations)
        dis.setVariationalRefinementIterations(refine)
        cache[key] = dis
        while len(cache) > DIS_PER_THREAD:
            cache.popitem(last=False)
    cache.move_to_end(key)
    return dis


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
        self.params = with_defaults(self.kind, spec.params, MOTIONFLOW_DEFAULTS)
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
        return thread_dis(self.params)

    def pixel_cues(self, frames: Tensor) -> Tensor:
        """(B, T, H, W) uint8 -> (B, 2, h, w) float: moving (0/1) and flow speed (pixels/frame)
        from the second newest to the newest frame, at the spec's size.
        """
        return torch.from_numpy(self._cues(frames[:, -2:].cpu().numpy())).to(frames.device)

    def _cues(self, pairs: np.ndarray) -> np.ndarray:
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
        return out

    def _pooled(self, pairs: np.ndarray) -> Tensor:
        cues = torch.from_numpy(self._cues(pairs))
        return pool_to_grid(cues, int(self.params["window"]), self.spec.grid)

    def features(self, frames: Tensor) -> Tensor:
        """(B, T, H, W) uint8 -> (B, 2, gh, gw): both cues' square means, max-pooled per cell.
        The windows are split into chunks of ``CHUNK`` computed on ``flow_pool()``."""
        pairs = frames[:, -2:].cpu().numpy()
        if len(pairs) <= CHUNK:
            return self._pooled(pairs).to(frames.device)
        chunks = [pairs[i : i + CHUNK] for i in range(0, len(pairs), CHUNK)]
        return torch.cat(list(flow_pool().map(self._pooled, chunks))).to(frames.device)

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
