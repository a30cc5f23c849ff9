"""Kind "ae": a small convolutional autoencoder (after Hasan et al., CVPR 2016, much smaller).

The autoencoder squeezes the newest frame (or a short stack ending with it) through a narrow
bottleneck and rebuilds it. Trained on normal footage only, it rebuilds what it has seen often
(the empty scene, people walking) and blurs what it has not, so the squared reconstruction error
of the newest frame, averaged over each ``patch x patch`` cell, is the raw anomaly map.

This module also holds what every reconstruction-style model shares (pre-processing, patch
pooling, the losses and the trainer); ``streamdet.models.predictor`` reuses it.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamdet.errors import ModelError
from streamdet.models.base import AnomalyModel, ModelSpec, Progress, TrainingData, TrainSettings

DEFAULTS: dict[str, Any] = {
    "context": 2,  # past frames stacked with the newest: motion, not only appearance (Ped2: +0.08)
    "channels": [32, 64, 64],  # encoder widths; each level halves the resolution
    "bottleneck": 16,  # code channels at 1/8 resolution: small, so anomalies rebuild badly
    "gradient_weight": 0.0,  # weight of the image-gradient loss (sharper edges when > 0)
    "holdout": 0.1,  # tail of each clip kept out of training to fit the normalisation
}


def param(spec: ModelSpec, defaults: dict[str, Any], name: str) -> Any:
    """A kind-specific setting from ``spec.params``, else its documented default."""
    return spec.params.get(name, defaults[name])


class ReconstructionModel(AnomalyModel):
    """A model that rebuilds the newest frame; its raw map is the per-patch squared error.

    Subclasses implement ``reconstruct`` on frames already scaled to [-1, 1] at the spec size
    (and padded to a multiple of ``multiple``); ``pair`` wraps it with the pre-processing.
    """

    multiple: int = 8  # every stride-2 level needs even sizes: pad to a multiple of 2**levels
    gradient_weight: float = 0.0
    holdout: float = 0.1
    channels_last: bool = False  # set when the weights were converted (CPU training does)

    def reconstruct(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, H, W) in [-1, 1] -> (output, target), both (B, C, H, W); channel -1 is newest."""
        raise NotImplementedError

    def pair(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 (B, T, H, W) at any size -> (output, target) at the spec size, in [-1, 1]."""
        h, w = self.spec.height, self.spec.width
        x = frames.float() * (2.0 / 255.0) - 1.0
        if x.shape[-2:] != (h, w):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        m = self.multiple
        pad_h, pad_w = -h % m, -w % m
        if pad_h or pad_w:  # replicate, not zeros: a black border would be "unusual" content
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        if self.channels_last:  # a flag, not a layout query: queries are not allowed under vmap
            x = x.contiguous(memory_format=torch.channels_last)  # match the weights' layout
        out, target = self.reconstruct(x)
        return out[..., :h, :w], target[..., :h, :w]

    def raw_map(self, frames: Tensor) -> Tensor:
        out, target = self.pair(frames)
        err = (out[:, -1:] - target[:, -1:]).square()
        # Mean per patch, so the frame score (max over patches) sees a small object at full
        # strength instead of diluted by the whole frame.
        return F.avg_pool2d(err, self.spec.patch).squeeze(1)

    def loss(self, out: Tensor, target: Tensor) -> Tensor:
        """Intensity (L2) loss plus, if weighted, the gradient loss of Liu et al. (2018)."""
        loss = F.mse_loss(out, target)
        if self.gradient_weight > 0:
            loss = loss + self.gradient_weight * gradient_loss(out, target)
        return loss


def gradient_loss(out: Tensor, target: Tensor) -> Tensor:
    """L1 distance between absolute horizontal and vertical differences: penalises blur."""
    dx = (out.diff(dim=-1).abs() - target.diff(dim=-1).abs()).abs().mean()
    dy = (out.diff(dim=-2).abs() - target.diff(dim=-2).abs()).abs().mean()
    return dx + dy


class ConvAutoencoder(ReconstructionModel):
    """Kind "ae": three stride-2 convolutions down to a narrow code, three transposed ones up."""

    kind = "ae"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.context = int(param(spec, DEFAULTS, "context"))
        self.gradient_weight = float(param(spec, DEFAULTS, "gradient_weight"))
        self.holdout = float(param(spec, DEFAULTS, "holdout"))
        widths = [int(c) for c in param(spec, DEFAULTS, "channels")]
        code = int(param(spec, DEFAULTS, "bottleneck"))
        if len(widths) != 3 or min(widths) < 1 or code < 1 or self.context < 0:
            raise ModelError(f"ae: need 3 channel widths, bottleneck >= 1, context >= 0: {spec}")
        t = self.context + 1
        down: list[nn.Module] = []
        for cin, cout in zip([t, *widths[:-1]], widths, strict=True):
            down += [nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.ReLU(inplace=True)]
        self.encoder = nn.Sequential(*down, nn.Conv2d(widths[-1], code, 1))
        up: list[nn.Module] = [nn.Conv2d(code, widths[-1], 1), nn.ReLU(inplace=True)]
        rev = widths[::-1]
        for cin, cout in zip(rev, [*rev[1:], rev[-1]], strict=True):
            up += [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), nn.ReLU(inplace=True)]
        # The whole stack is rebuilt (a cheap extra constraint, as in Hasan et al.); only the
        # newest frame's error is scored.
        self.decoder = nn.Sequential(*up, nn.Conv2d(rev[-1], t, 3, padding=1), nn.Tanh())

    def reconstruct(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.decoder(self.encoder(x)), x


def build(spec: ModelSpec) -> ConvAutoencoder:
    """Factory for the model registry: an untrained autoencoder for ``spec``."""
    return ConvAutoencoder(spec)


def split_windows(
    data: TrainingData, context: int, holdout: float
) -> tuple[np.ndarray, np.ndarray]:
    """(clip, start) of every window, split into training and held-out (the tail of each clip)."""
    train: list[tuple[int, int]] = []
    held: list[tuple[int, int]] = []
    t = context + 1
    for c, clip in enumerate(data.clips):
        n = len(clip)
        cut = n - math.ceil(n * holdout)  # windows whose newest frame is >= cut are held out
        for s in range(n - t + 1):
            (held if s + t - 1 >= cut else train).append((c, s))
    return np.array(train, dtype=np.int64).reshape(-1, 2), np.array(held, np.int64).reshape(-1, 2)


def gather(data: TrainingData, index: np.ndarray, t: int) -> Tensor:
    """uint8 (B, t, H, W) windows for rows ``(clip, start)`` of ``index``."""
    return torch.from_numpy(np.stack([data.clips[c][s : s + t] for c, s in index]))


def train(
    model: AnomalyModel, data: TrainingData, settings: TrainSettings, progress: Progress
) -> None:
    """Fit a reconstruction model on normal footage, then its normalisation on held-out frames.

    Stops after ``settings.epochs`` or ``settings.max_seconds`` of optimisation, whichever is
    first; a run that is not cut by the time budget is bit-for-bit repeatable for a seed.
    """
    if not isinstance(model, ReconstructionModel):
        raise ModelError(f"cannot train kind {model.kind!r} as a reconstruction model")
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        _fit(model, data, settings, progress)
    finally:  # a process-wide switch: leave it as we found it
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)


def _fit(
    model: ReconstructionModel, data: TrainingData, settings: TrainSettings, progress: Progress
) -> None:
    start = time.monotonic()
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    device = torch.device(settings.device)
    model.to(device)
    if device.type == "cpu":  # about 2x on CPU convolutions; CUDA keeps its default layout
        model.to(memory_format=torch.channels_last)
        model.channels_last = True
    t = model.context + 1
    train_idx, held_idx = split_windows(data, model.context, model.holdout)
    if len(train_idx) == 0:
        raise ModelError(f"{model.kind}: no training window of {t} frames in the footage")
    if len(held_idx) == 0:  # tiny footage: normalise on training frames rather than not at all
        held_idx = train_idx
    bs = settings.batch_size
    steps = settings.epochs * math.ceil(len(train_idx) / bs)
    opt = torch.optim.Adam(model.parameters(), lr=settings.learning_rate)
    model.train()
    step, smooth, last_report = 0, float("nan"), 0.0
    while step < steps:
        order = rng.permutation(len(train_idx))
        for i in range(0, len(order), bs):
            out, target = model.pair(gather(data, train_idx[order[i : i + bs]], t).to(device))
            loss = model.loss(out, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
            step += 1
            value = float(loss.detach())
            smooth = value if math.isnan(smooth) else 0.9 * smooth + 0.1 * value
            elapsed = time.monotonic() - start
            if step == steps or elapsed >= settings.max_seconds or elapsed - last_report > 0.5:
                last_report = elapsed
                eta = min(elapsed / step * (steps - step), max(settings.max_seconds - elapsed, 0))
                over = elapsed >= settings.max_seconds  # (also when the budget is 0)
                done = 1.0 if over else max(step / steps, elapsed / settings.max_seconds)
                progress("train", done, {"loss": smooth, "eta_s": eta})
            if step == steps or elapsed >= settings.max_seconds:
                step = steps  # ends the outer loop too
                break
    model.eval()
    with torch.inference_mode():
        maps = [
            model.raw_map(gather(data, held_idx[i : i + bs], t).to(device))
            for i in range(0, len(held_idx), bs)
        ]
    model.set_normalisation(torch.cat(maps).clone())
