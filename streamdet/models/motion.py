"""Motion-cue models: no learned weights, only statistics of normal footage.

``FrameDiffModel`` ("framediff") is the trivial baseline: the mean absolute frame difference.

``MotionModel`` ("motion") scores each patch by two local cues of the newest frame pair:

* *moving share*: the fraction of pixels whose absolute difference exceeds ``level`` grey levels.
  A patch-level share, not a frame mean, so the score does not grow with the number of walkers.
* *speed*: the mean speed (pixels per frame) of the moving pixels, by block matching at half
  size (``flow="block"``, the default), or the cheaper least-squares normal flow
  ``sqrt(sum I_t^2 / (sum |grad I|^2 + eps))`` (``flow="normal"``). Both are torch-only stand-ins
  for dense optical flow (OpenCV Farneback), so they run batched and export to ONNX. On the
  validation set built from training footage, block matching scored above Farneback, and
  Farneback above normal flow.

Both cues are averaged over ``patch``-sized windows at stride ``patch / 2`` and max-pooled to the
patch grid, so an object on a patch border is not split in two. Each cue is divided by its 99.9th
percentile on normal footage (a scale set by busy patches, not by the empty background that makes
most patches zero) and the two are averaged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from streamdet.errors import ModelError
from streamdet.models.base import (
    AnomalyModel,
    ModelOutput,
    ModelSpec,
    Progress,
    TrainingData,
    TrainSettings,
    windows,
)

MOTION_DEFAULTS: dict[str, Any] = {
    "context": 1,
    "level": 12.0,  # grey levels: above sensor noise and H.264 flicker, below a walker's contrast
    "flow_weight": 1.0,  # weight of the speed cue against the moving share
    "min_share": 0.02,  # speed is only trusted where something moves (flat areas give 0/0)
    # "normal" (normal flow: ~1,100 windows/s at 240x160 on 2 cores) or "block" (block matching:
    # better on Ped2, 0.895 vs 0.842 streaming AUC, but ~100 windows/s: too slow to be the default
    # for many live cameras on a small CPU)
    "flow": "normal",
    "radius": 4,  # block matching: largest shift in half-size pixels (8 px/frame at full size)
    "block": 5,  # block matching: side of the compared block in half-size pixels
    "window": 16,  # pixels: the squares the cues are averaged over (about one walker)
}


def prepare(frames: Tensor, spec: ModelSpec) -> Tensor:
    """uint8 (B, T, H, W) -> float (B, T, h, w) in [0, 1] at the spec's size."""
    x = frames.float() / 255.0
    if x.shape[-2:] != (spec.height, spec.width):
        x = F.interpolate(x, size=(spec.height, spec.width), mode="bilinear", align_corners=False)
    return x


def pool_to_grid(x: Tensor, window: int, grid: tuple[int, int]) -> Tensor:
    """(B, C, H, W) -> (B, C, *grid): means over ``window``-pixel squares at stride ``window / 2``,
    then the max of those that fall in each cell (an object on a border is still seen whole).
    """
    mean = F.avg_pool2d(
        x,
        kernel_size=window,
        stride=max(window // 2, 1),
        padding=window // 4,
        count_include_pad=False,
    )
    return F.adaptive_max_pool2d(mean, grid)


def sample_windows(data: TrainingData, context: int, limit: int, seed: int) -> list[np.ndarray]:
    """Up to ``limit`` training windows spread evenly over all clips, in batches of <= 64."""
    return sample_window_frames(data, context, limit, seed)[0]


def sample_window_frames(
    data: TrainingData, context: int, limit: int, seed: int
) -> tuple[list[np.ndarray], np.ndarray]:
    """``sample_windows``, and the footage frame each window ends at (counted over the clips
    one after the other)."""
    starts = np.cumsum([0] + [len(c) for c in data.clips])[:-1]
    pairs = zip(data.clips, starts, strict=True)
    every = [(windows(c, context), s) for c, s in pairs if len(c) > context]
    total = sum(len(w) for w, _ in every)
    step = max(total // max(limit, 1), 1)
    picked = np.concatenate([w[i % step :: step] for i, (w, _) in enumerate(every)])
    ends = np.concatenate(
        [s + context + np.arange(len(w))[i % step :: step] for i, (w, s) in enumerate(every)]
    )
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.permutation(len(picked))[:limit])
    picked, ends = picked[keep], ends[keep]
    batches = [np.ascontiguousarray(picked[i : i + 64]) for i in range(0, len(picked), 64)]
    return batches, ends


@torch.no_grad()
def raw_maps(model: AnomalyModel, data: TrainingData, limit: int = 2000, seed: int = 0) -> Tensor:
    """Raw patch maps of a model on (a sample of) training windows: (N, gh, gw)."""
    model.eval()
    out = [
        model.raw_map(torch.from_numpy(b)) for b in sample_windows(data, model.context, limit, seed)
    ]
    return torch.cat(out)


def block_speed(prev: Tensor, cur: Tensor, radius: int, level: float, block: int = 5) -> Tensor:
    """Per-pixel speed (pixels/frame at full size) by block matching at half size.

    Every shift within ``radius`` half-size pixels (so up to ``2 * radius`` full-size pixels per
    frame) is tried; the best is the one with the least mean absolute difference over a ``block``
    square, plus a small penalty per pixel of shift so that flat areas, where every shift
    matches, read as still.
    """
    a = F.avg_pool2d(prev, 2)
    b = F.avg_pool2d(cur, 2)
    h, w = a.shape[-2:]
    padded = F.pad(a, (radius, radius, radius, radius), mode="replicate")
    penalty = 0.25 * level / 255.0 / max(radius, 1)
    best = torch.full_like(b, float("inf"))
    speed = torch.zeros_like(b)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            shifted = padded[..., radius + dy : radius + dy + h, radius + dx : radius + dx + w]
            size = (dx * dx + dy * dy) ** 0.5
            sad = F.avg_pool2d((b - shifted).abs(), block, stride=1, padding=block // 2)
            cost = sad + penalty * size
            better = cost < best
            best = torch.where(better, cost, best)
            speed = torch.where(better, torch.full_like(speed, 2.0 * size), speed)
    return F.interpolate(speed, size=prev.shape[-2:], mode="nearest")


class FrameDiffModel(AnomalyModel):
    """Baseline: mean absolute difference of the last two frames (frame score = global mean)."""

    kind = "framediff"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.context = 1

    def raw_map(self, frames: Tensor) -> Tensor:
        x = prepare(frames[:, -2:], self.spec)
        diff = (x[:, 1:] - x[:, :1]).abs()
        return F.avg_pool2d(diff, self.spec.patch)[:, 0]

    def forward(self, frames: Tensor) -> ModelOutput:
        # The baseline is defined as the *mean* difference, so it is not a max over patches.
        raw = self.raw_map(frames)
        normalised = (raw - self.norm_mean) / self.norm_std
        return ModelOutput(normalised.mean(dim=(1, 2)), normalised)


class MotionModel(AnomalyModel):
    """Moving share + normal-flow speed per patch, each scaled by its tail on normal footage."""

    kind = "motion"
    cue_scale: Tensor

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.params = {**MOTION_DEFAULTS, **spec.params}
        self.context = int(self.params["context"])
        self.register_buffer("cue_scale", torch.ones(2))

    def cues(self, frames: Tensor) -> Tensor:
        """(B, T, H, W) uint8 -> (B, 2, gh, gw): moving share and speed, unscaled."""
        x = prepare(frames[:, -2:], self.spec)
        # a 3x3 box blur first: differences and gradients of raw pixels are mostly codec noise
        x = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        prev, cur = x[:, :1], x[:, 1:]
        it = cur - prev
        moving = (it.abs() > float(self.params["level"]) / 255.0).float()
        p = (int(self.params["window"]), self.spec.grid)
        share = pool_to_grid(moving, *p)
        if self.params["flow"] == "block":
            radius, block = int(self.params["radius"]), int(self.params["block"])
            speed = block_speed(prev, cur, radius, float(self.params["level"]), block)
            # mean speed of the moving pixels of each window (not of the whole window, which
            # would mix speed with size)
            both = pool_to_grid(torch.cat([speed * moving, moving], dim=1), *p)
            speed = both[:, :1] / (both[:, 1:] + 1e-3)
        else:
            mid = 0.5 * (cur + prev)
            gx = F.pad(mid[..., :, 2:] - mid[..., :, :-2], (1, 1, 0, 0)) * 0.5
            gy = F.pad(mid[..., 2:, :] - mid[..., :-2, :], (0, 0, 1, 1)) * 0.5
            energy = pool_to_grid(torch.cat([it * it, gx * gx + gy * gy], dim=1), *p)
            eps = (2.0 / 255.0) ** 2  # about the gradient energy of flat, noisy pavement
            speed = torch.sqrt(energy[:, :1] / (energy[:, 1:] + eps))
        speed = speed * (share > float(self.params["min_share"])).float()
        return torch.cat([share, speed], dim=1)

    def raw_map(self, frames: Tensor) -> Tensor:
        c = self.cues(frames) / self.cue_scale.view(1, 2, 1, 1)
        w = float(self.params["flow_weight"])
        return (c[:, 0] + w * c[:, 1]) / (1.0 + w)


def train_framediff(
    model: AnomalyModel, data: TrainingData, settings: TrainSettings, progress: Progress
) -> None:
    """No weights: only the normalisation statistics of normal footage."""
    progress("normalise", 0.0, {})
    model.set_normalisation(raw_maps(model, data, seed=settings.seed))
    progress("normalise", 1.0, {})


def train_motion(
    model: AnomalyModel, data: TrainingData, settings: TrainSettings, progress: Progress
) -> None:
    """Scale each cue by its 99.9th percentile over training patches, then normalise."""
    if not isinstance(model, MotionModel):
        raise ModelError(f"train_motion needs a MotionModel, got {type(model).__name__}")
    progress("cue statistics", 0.0, {})
    batches = sample_windows(data, model.context, 2000, settings.seed)
    with torch.no_grad():
        cues = torch.cat([model.cues(torch.from_numpy(b)) for b in batches])
        flat = cues.transpose(0, 1).reshape(2, -1)
        scale = torch.quantile(flat[:, :: max(flat.shape[1] // 100_000, 1)], 0.999, dim=1)
        model.cue_scale.copy_(torch.clamp(scale, min=1e-6))
    progress("normalise", 0.5, {})
    model.set_normalisation(raw_maps(model, data, seed=settings.seed))
    progress("normalise", 1.0, {})


def build(spec: ModelSpec) -> AnomalyModel:
    """Factory for the motion-cue kinds."""
    if spec.kind == FrameDiffModel.kind:
        return FrameDiffModel(spec)
    if spec.kind == MotionModel.kind:
        return MotionModel(spec)
    raise ModelError(f"motion.build: unknown kind {spec.kind!r}")


TRAINERS = {FrameDiffModel.kind: train_framediff, MotionModel.kind: train_motion}
