"""Fusion ("fusion"): several models' maps combined into one, itself an ``AnomalyModel``.

Each member's normalised map is first put on a common *tail* scale: the median and MAD of the
member's frame score (max over its map) on held-out normal frames. Patch-level statistics are not
enough here, because most patches are empty background and their spread says nothing about how
high a busy normal patch goes; the frame-score scale does. The default ("frame_sum") averages
the members' frame scores with weights, which is what scored best on validation footage; "sum"
and "max" combine the maps per cell instead (an object unusual by several cues / by any cue).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from streamdet.errors import ModelError
from streamdet.models import local, motion, motionflow
from streamdet.models.base import (
    AnomalyModel,
    ModelOutput,
    ModelSpec,
    Progress,
    Trainer,
    TrainingData,
    TrainSettings,
)

FUSION_DEFAULTS: dict[str, Any] = {
    "members": [
        {"kind": "motion", "params": {"flow": "block"}},  # as validated (see motion.py)
        {"kind": "patchae", "params": {"gate": 0.05}},
    ],  # ModelSpec fields minus size/patch
    "weights": [1.0, 1.0],
    # "frame_sum": weighted mean of the members' frame scores (best on validation);
    # "sum" / "max": per-cell weighted sum / max of the member maps, then the max over cells
    "mode": "frame_sum",
    # causal EMA the scorer should apply to frame scores (not used by forward): chosen on
    # validation built from training footage at 10 fps, a time constant of about 0.14 s
    "ema_alpha": 0.5,
}


def default_spec(width: int = 240, height: int = 160, patch: int = 16) -> ModelSpec:
    """The default model: motion cues + local CNN, equal weights, summed per cell."""
    return ModelSpec(kind="fusion", width=width, height=height, patch=patch, params={})


BUILDERS = {
    **{k: motion.build for k in motion.TRAINERS},
    **{k: motionflow.build for k in motionflow.TRAINERS},
    **{k: local.build for k in local.TRAINERS},
}
TRAINERS: dict[str, Trainer] = {**motion.TRAINERS, **motionflow.TRAINERS, **local.TRAINERS}


def member_spec(spec: ModelSpec, member: dict[str, Any]) -> ModelSpec:
    """A member shares the fusion's input size and patch grid; it brings its own params."""
    return ModelSpec(
        kind=str(member["kind"]),
        width=spec.width,
        height=spec.height,
        patch=spec.patch,
        params=dict(member.get("params", {})),
    )


class FusionModel(AnomalyModel):
    """Weighted sum (or max) of members' tail-scaled normalised maps."""

    kind = "fusion"
    weights: Tensor
    tail_median: Tensor
    tail_scale: Tensor

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.params = {**FUSION_DEFAULTS, **spec.params}
        members = [member_spec(spec, m) for m in self.params["members"]]
        built = [BUILDERS[m.kind](m) for m in members]
        self.members = nn.ModuleList(built)
        self.context = max(m.context for m in built)
        n = len(self.members)
        weights = [float(w) for w in self.params["weights"]]
        if len(weights) != n:
            raise ModelError(f"fusion: {n} members but {len(weights)} weights")
        self.register_buffer("weights", torch.tensor(weights))
        self.register_buffer("tail_median", torch.zeros(n))
        self.register_buffer("tail_scale", torch.ones(n))

    def member_outputs(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """(B, T, H, W) -> tail-scaled frame scores (B, members) and maps (B, members, gh, gw).

        A member's frame score is its own (the max over its map for most kinds; the sum of its
        cues' maxima for ``motionflow``), on the same tail scale as its map.
        """
        scores, maps = [], []
        for i, m in enumerate(self.members):
            assert isinstance(m, AnomalyModel)
            own = frames[:, frames.shape[1] - (m.context + 1) :]  # each member's own window
            out = m(own)
            scores.append((out.score - self.tail_median[i]) / self.tail_scale[i])
            maps.append((out.anomaly_map - self.tail_median[i]) / self.tail_scale[i])
        return torch.stack(scores, dim=1), torch.stack(maps, dim=1)

    def forward(self, frames: Tensor) -> ModelOutput:
        if self.params["mode"] != "frame_sum":
            return super().forward(frames)
        # each member's frame score (on the common tail scale), averaged with weights; the map
        # shown beside it is the weighted sum of the member maps
        scores, maps = self.member_outputs(frames)
        w = self.weights.view(1, -1)
        score = (scores * w).sum(dim=1) / w.sum()
        fused = (maps * w[..., None, None]).sum(dim=1) / w.sum()
        return ModelOutput(score, (fused - self.norm_mean) / self.norm_std)

    def raw_map(self, frames: Tensor) -> Tensor:
        _, maps = self.member_outputs(frames)
        if self.params["mode"] == "max":
            return maps.amax(dim=1)
        return (maps * self.weights.view(1, -1, 1, 1)).sum(dim=1) / self.weights.sum()


def train_fusion(
    model: AnomalyModel, data: TrainingData, settings: TrainSettings, progress: Progress
) -> None:
    """Train each member, set the tail scales on held-out clips, then normalise the fused map."""
    if not isinstance(model, FusionModel):
        raise ModelError(f"train_fusion needs a FusionModel, got {type(model).__name__}")
    n = len(model.members)
    for i, member in enumerate(model.members):
        assert isinstance(member, AnomalyModel)

        def report(
            phase: str,
            fraction: float,
            figures: dict[str, float],
            i: int = i,
            kind: str = member.kind,
        ) -> None:
            progress(f"{kind}: {phase}", (i + fraction) / (n + 1), figures)

        TRAINERS[member.kind](member, data, settings, report)
    calibrate_fusion(model, data, settings, progress)


def calibrate_fusion(
    model: FusionModel, data: TrainingData, settings: TrainSettings, progress: Progress
) -> None:
    """Tail scales and normalisation from held-out clips, for members that are already trained."""
    # the same held-out clips the learned member uses for its own normalisation
    _, held_out = local.split_clips(data, float(local.PATCHAE_DEFAULTS["holdout"]))
    progress("calibrate", 0.9, {})
    with torch.no_grad():
        model.tail_median.zero_()
        model.tail_scale.fill_(1.0)
        batches = motion.sample_windows(held_out, model.context, 600, settings.seed)
        tops = torch.cat([model.member_outputs(torch.from_numpy(b))[0] for b in batches])
        median = tops.median(dim=0).values
        mad = (tops - median).abs().median(dim=0).values * 1.4826
        model.tail_median.copy_(median)
        model.tail_scale.copy_(mad.clamp(min=1e-3))
    model.set_normalisation(motion.raw_maps(model, held_out, limit=600, seed=settings.seed))
    progress("calibrate", 1.0, {})


def build(spec: ModelSpec) -> AnomalyModel:
    """Factory for the fusion kind."""
    if spec.kind == FusionModel.kind:
        return FusionModel(spec)
    raise ModelError(f"fusion.build: unknown kind {spec.kind!r}")


TRAINERS_FUSION = {FusionModel.kind: train_fusion}
