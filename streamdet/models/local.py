"""Local-region CNN model ("patchae"): how unusual each small region looks *and moves*.

Input per location: the newest grey frame and the last two signed frame differences, so a region
carries appearance (shape, size, background) and motion (speed, direction). A small convolutional
autoencoder is trained on crops of normal footage, mostly where something moves. Its encoder maps
the frame to one feature per 8x8 pixels (receptive field ~40 px, about one walker).

The score of a location is its distance to the nearest normal feature in a memory bank (a greedy
k-centre coreset of training features), or optionally the autoencoder's reconstruction error.
Scoring regions against normal regions, not the whole frame, keeps the score independent of how
many people are in view. Cells are the max over the 2x2 feature locations they contain. Only
locations where something moves are scored (``gate``): the model is about moving things, and
still background would only add codec noise to the max over the frame.

The bank and the autoencoder see only the first clips of the training data; the last
``holdout`` fraction of clips sets the normalisation, because nearest-neighbour distances on the
bank's own frames would be ~0 and would make every later frame look unusual.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamdet.errors import ModelError
from streamdet.models.base import (
    AnomalyModel,
    ModelSpec,
    Progress,
    TrainingData,
    TrainSettings,
    windows,
)
from streamdet.models.motion import prepare, raw_maps, sample_windows

PATCHAE_DEFAULTS: dict[str, Any] = {
    "context": 2,  # two differences: speed and its change
    "width": 32,  # feature channels
    "crop": 48,  # training crop side (pixels): a walker and its surroundings
    "steps": 600,  # optimiser steps
    "bank_size": 1024,  # memory-bank features kept by the coreset
    "score": "knn",  # "knn" (distance to the bank) or "recon" (reconstruction error)
    "holdout": 0.2,  # fraction of training clips kept back for normalisation
    "gate": 0.05,  # score only 8x8 cells with at least this share of moving pixels (0 = all)
    "level": 12.0,  # grey levels: what counts as a moving pixel for the gate
}


def conv(cin: int, cout: int) -> nn.Sequential:
    """A stride-2 3x3 convolution: halves the size."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=2, padding=1), nn.LeakyReLU(0.1))


def deconv(cin: int, cout: int) -> nn.Sequential:
    """A stride-2 transposed convolution: doubles the size."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.1))


class PatchAEModel(AnomalyModel):
    """Conv autoencoder features of (grey, diff, diff) scored by nearest normal feature."""

    kind = "patchae"
    in_scale: Tensor
    bank: Tensor

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.params = {**PATCHAE_DEFAULTS, **spec.params}
        self.context = int(self.params["context"])
        w = int(self.params["width"])
        chans = 1 + self.context
        self.encoder = nn.Sequential(conv(chans, w // 2), conv(w // 2, w), conv(w, w))
        self.decoder = nn.Sequential(
            deconv(w, w), deconv(w, w // 2), nn.ConvTranspose2d(w // 2, chans, 4, 2, 1)
        )
        self.register_buffer("in_scale", torch.ones(chans))
        self.register_buffer("bank", torch.zeros(int(self.params["bank_size"]), w))

    def inputs(self, frames: Tensor) -> Tensor:
        """uint8 (B, T, H, W) -> (B, 1 + context, H, W): centred grey, then scaled differences."""
        x = prepare(frames[:, -(self.context + 1) :], self.spec)
        grey = x[:, -1:] - 0.5
        diffs = x[:, 1:] - x[:, :-1]
        stacked = torch.cat([grey, diffs.flip(1)], dim=1)
        return stacked / self.in_scale.view(1, -1, 1, 1)

    def location_scores(self, x: Tensor) -> Tensor:
        """(B, C, H, W) inputs -> (B, H/8, W/8) raw scores."""
        feats: Tensor = self.encoder(x)
        if self.params["score"] == "recon":
            err = (self.decoder(feats) - x).pow(2).mean(dim=1, keepdim=True)
            pooled: Tensor = F.avg_pool2d(err, 8)
            return pooled[:, 0]
        b, c, h, w = feats.shape
        flat = feats.permute(0, 2, 3, 1).reshape(-1, c)
        # squared distance = |a|^2 + min_j (|b_j|^2 - 2 a.b_j): one fused matmul, and |a|^2 is
        # added after the min, which halves the memory traffic of a plain cdist on CPU
        closest = torch.addmm(self.bank.pow(2).sum(1), flat, self.bank.T, alpha=-2.0).amin(dim=1)
        d2 = closest + flat.pow(2).sum(1)
        return d2.clamp(min=0).sqrt().view(b, h, w)

    def raw_map(self, frames: Tensor) -> Tensor:
        scores = self.location_scores(self.inputs(frames))
        gate = float(self.params["gate"])
        if gate > 0:
            # score only what moves: still background (codec flicker, shadows) is not what the
            # bank is for, and its distances are noise that the max over the frame would pick up
            x = prepare(frames[:, -2:], self.spec)
            moving = ((x[:, 1:] - x[:, :1]).abs() > float(self.params["level"]) / 255.0).float()
            share = F.avg_pool2d(moving, 8)[:, 0]
            scores = scores * (share > gate).float()
        return F.max_pool2d(scores[:, None], self.spec.patch // 8)[:, 0]


def motion_crops(model: PatchAEModel, clips: list[np.ndarray], n: int, seed: int) -> Tensor:
    """``n`` input crops, 80% centred where the newest difference is large, 20% anywhere."""
    rng = np.random.default_rng(seed)
    size = int(model.params["crop"])
    every = [windows(c, model.context) for c in clips if len(c) > model.context]
    out: list[Tensor] = []
    with torch.no_grad():
        while len(out) < n:
            view = every[rng.integers(len(every))]
            x = model.inputs(torch.from_numpy(view[rng.integers(len(view))][None].copy()))
            _, _, h, w = x.shape
            motion = x[0, 1].abs().numpy()
            for _ in range(16):
                if rng.random() < 0.8 and motion.max() > 0:
                    ys, xs = np.nonzero(motion > 0.5 * motion.max())
                    i = rng.integers(len(ys))
                    cy, cx = ys[i] + rng.integers(-8, 9), xs[i] + rng.integers(-8, 9)
                else:
                    cy, cx = rng.integers(h), rng.integers(w)
                top = int(np.clip(cy - size // 2, 0, h - size))
                left = int(np.clip(cx - size // 2, 0, w - size))
                out.append(x[0, :, top : top + size, left : left + size])
    return torch.stack(out[:n])


def coreset(feats: Tensor, size: int, seed: int) -> Tensor:
    """Greedy k-centre: each pick is the feature farthest from all picks so far."""
    if len(feats) <= size:
        return feats
    gen = torch.Generator().manual_seed(seed)
    picks = [int(torch.randint(len(feats), (1,), generator=gen))]
    dist = (feats - feats[picks[0]]).pow(2).sum(1)
    for _ in range(size - 1):
        picks.append(int(dist.argmax()))
        dist = torch.minimum(dist, (feats - feats[picks[-1]]).pow(2).sum(1))
    return feats[picks]


def train_patchae(
    model: AnomalyModel, data: TrainingData, settings: TrainSettings, progress: Progress
) -> None:
    """Fit the autoencoder on normal crops, build the memory bank, normalise on held-out clips."""
    if not isinstance(model, PatchAEModel):
        raise ModelError(f"train_patchae needs a PatchAEModel, got {type(model).__name__}")
    torch.manual_seed(settings.seed)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        fit_part, norm_part = split_clips(data, float(model.params["holdout"]))
        fit_scale(model, fit_part, settings.seed)
        fit_autoencoder(model, fit_part, settings, progress)
        fit_bank(model, fit_part, settings.seed, progress)
        progress("normalise", 0.0, {})
        model.set_normalisation(raw_maps(model, norm_part, limit=600, seed=settings.seed))
        progress("normalise", 1.0, {})
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def split_clips(data: TrainingData, holdout: float) -> tuple[TrainingData, TrainingData]:
    """The last ``holdout`` share of clips (at least one, if there are two) for normalisation."""
    n = len(data.clips)
    k = min(max(round(n * holdout), 1), n - 1) if n > 1 else 0
    if k == 0:  # one recording: hold out its last part instead
        clip = data.clips[0]
        cut = int(len(clip) * (1 - holdout))
        return TrainingData([clip[:cut]], data.fps), TrainingData([clip[cut:]], data.fps)
    return TrainingData(data.clips[: n - k], data.fps), TrainingData(data.clips[n - k :], data.fps)


def fit_scale(model: PatchAEModel, data: TrainingData, seed: int) -> None:
    """Per-channel input scale: the difference channels are ~50x smaller than the grey one."""
    with torch.no_grad():
        x = torch.cat(
            [
                model.inputs(torch.from_numpy(b))
                for b in sample_windows(data, model.context, 256, seed)
            ]
        )
        model.in_scale.copy_(x.transpose(0, 1).reshape(x.shape[1], -1).std(dim=1).clamp(min=1e-3))


def fit_autoencoder(
    model: PatchAEModel, data: TrainingData, settings: TrainSettings, progress: Progress
) -> None:
    """Adam with a one-cycle schedule on mirrored motion crops; stops early at ``max_seconds``."""
    steps, batch = int(model.params["steps"]), max(settings.batch_size, 32)
    if steps <= 0:  # random features only (an ablation): nothing to fit
        return
    crops = motion_crops(model, data.clips, min(steps * batch // 4, 20_000), settings.seed)
    params = list(model.encoder.parameters()) + list(model.decoder.parameters())
    opt = torch.optim.Adam(params, lr=settings.learning_rate)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, settings.learning_rate, total_steps=steps)
    gen = torch.Generator().manual_seed(settings.seed)
    model.train()
    start = time.monotonic()
    for step in range(steps):
        x = crops[torch.randint(len(crops), (batch,), generator=gen)]
        if torch.rand((), generator=gen) < 0.5:  # walkers go both ways: mirror
            x = x.flip(-1)
        loss = F.mse_loss(model.decoder(model.encoder(x)), x)
        opt.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        sched.step()
        elapsed = time.monotonic() - start
        if step % 50 == 0 or step == steps - 1:
            eta = elapsed / (step + 1) * (steps - step - 1)
            progress("train", (step + 1) / steps, {"loss": loss.item(), "eta_s": eta})
        if elapsed > settings.max_seconds:  # the budget wins over the step count
            break
    model.eval()


def fit_bank(model: PatchAEModel, data: TrainingData, seed: int, progress: Progress) -> None:
    """Encoder features of sampled training frames, thinned to ``bank_size`` by the coreset."""
    progress("bank", 0.0, {})
    with torch.no_grad():
        batches = sample_windows(data, model.context, 600, seed)
        feats = torch.cat([model.encoder(model.inputs(torch.from_numpy(b))) for b in batches])
        flat = feats.permute(0, 2, 3, 1).reshape(-1, feats.shape[1])
        flat = flat[
            torch.randperm(len(flat), generator=torch.Generator().manual_seed(seed))[:60_000]
        ]
        bank = coreset(flat, model.bank.shape[0], seed)
        # fewer features than slots (tiny training sets): repeat rows rather than leave zeros
        model.bank.copy_(bank[torch.arange(model.bank.shape[0]) % len(bank)])
    progress("bank", 1.0, {})


def build(spec: ModelSpec) -> AnomalyModel:
    """Factory for the local-region CNN kind."""
    if spec.kind == PatchAEModel.kind:
        return PatchAEModel(spec)
    raise ModelError(f"local.build: unknown kind {spec.kind!r}")


TRAINERS = {PatchAEModel.kind: train_patchae}
