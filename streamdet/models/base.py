"""What every model is: a pure ``nn.Module`` from a window of frames to a patch map and a score.

Input: ``frames``, uint8, shape ``(B, T, H, W)`` (grey), oldest first, newest last, with
``T = model.context + 1``. Pre-processing (scaling, differencing) happens inside ``forward``.

Output: ``ModelOutput(score, anomaly_map)``. ``anomaly_map`` is ``(B, gh, gw)``: one score per
patch of the newest frame, normalised with statistics of normal training footage so that ~0 is
typical and larger is more unusual. ``score`` is ``(B,)``, the max over the map, so that a small
anomaly in a big frame is not averaged away.

Normalisation statistics are buffers (saved in the checkpoint); they are global over locations
because per-location statistics overfit places that normal footage rarely visits (the "flow"
model's per-cell scales are floored by their row's scale for that reason).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from streamdet.errors import ModelError


class ModelOutput(NamedTuple):
    score: Tensor  # (B,) frame score: max over the normalised map
    anomaly_map: Tensor  # (B, gh, gw) normalised patch scores
    # (B, K, 7) per object: box x0 y0 x1 y1 (0..1), score, reason index, valid; object models only
    objects: Tensor | None = None
    # (B, K, D) per object: the feature row it was scored with (standardised and weighted, as
    # the model's bank of normal objects holds them), so that it can be learned as normal later
    features: Tensor | None = None


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild a model before loading its weights (saved as JSON)."""

    kind: str
    width: int = 240  # input frame size the model was trained at
    height: int = 160
    patch: int = 16  # the anomaly map has one cell per patch x patch pixels
    params: dict[str, Any] = field(default_factory=dict)  # kind-specific settings

    @property
    def grid(self) -> tuple[int, int]:
        return (self.height // self.patch, self.width // self.patch)


def with_defaults(kind: str, params: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """A spec's params over its kind's defaults; a key the kind does not know is a ModelError."""
    unknown = set(params) - set(defaults)
    if unknown:
        known = ", ".join(defaults)
        raise ModelError(f"{kind}: unknown params {sorted(unknown)}; known: {known}")
    return {**defaults, **params}


class AnomalyModel(nn.Module):
    """Base class: subclasses implement ``raw_map``; normalisation and the score live here."""

    kind: ClassVar[str] = ""
    version: ClassVar[int] = 1  # bump when weights or features change meaning
    context: int = 1  # past frames needed before the newest
    onnx_exportable: ClassVar[bool] = True  # False when forward leaves torch (e.g. OpenCV)
    # True when forward (and forward_grouped) take ``time_scales``: each window's moves
    # multiplied by it, its camera's usual frame interval over the interval between its last
    # two frames, from the stream's timestamps (the inference stage's runner)
    timed: ClassVar[bool] = False
    norm_mean: Tensor  # buffers, registered in __init__
    norm_std: Tensor

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.register_buffer("norm_mean", torch.zeros(()))
        self.register_buffer("norm_std", torch.ones(()))

    def raw_map(self, frames: Tensor) -> Tensor:
        """(B, T, H, W) uint8 -> (B, gh, gw) raw patch scores (larger = more unusual)."""
        raise NotImplementedError

    def forward(self, frames: Tensor) -> ModelOutput:
        raw = self.raw_map(frames)
        normalised = (raw - self.norm_mean) / self.norm_std
        return ModelOutput(normalised.amax(dim=(1, 2)), normalised)

    def leaving_out(self, first: int, end: int) -> AbstractContextManager[AnomalyModel] | None:
        """Right after training: the model scoring as if it had not learned the footage's
        frames ``first`` .. ``end`` - 1 (counted over its clips one after the other), for
        calibrating on footage it did not learn (``streamdet.learning.workflow``); None when
        it cannot, and a model is then trained without them."""
        return None

    @torch.no_grad()
    def set_normalisation(self, raw_maps: Tensor) -> None:
        """Global mean/std of raw patch scores on normal footage (robust: median and MAD)."""
        flat = raw_maps.flatten().float()
        median = flat.median()
        mad = (flat - median).abs().median() * 1.4826
        std = mad if mad > 1e-6 else flat.std()
        self.norm_mean.copy_(median)
        self.norm_std.copy_(torch.clamp(std, min=1e-6))


@dataclass
class TrainingData:
    """Normal footage: grey frames of each clip (or recording stretch), never crossing clips."""

    clips: list[np.ndarray]  # each (N, H, W) uint8 at the model's input size
    fps: float

    @property
    def frames(self) -> int:
        return sum(len(c) for c in self.clips)


Progress = Callable[[str, float, dict[str, float]], None]  # (phase, fraction done, figures)


def no_progress(phase: str, fraction: float, figures: dict[str, float]) -> None:
    """A progress callback that shows nothing."""


@dataclass(frozen=True)
class TrainSettings:
    seed: int = 0
    max_seconds: float = 600.0  # training-time budget for learned models
    epochs: int = 20
    batch_size: int = 16
    learning_rate: float = 1e-3
    device: str = "cpu"


Trainer = Callable[[AnomalyModel, TrainingData, TrainSettings, Progress], None]


def windows(clip: np.ndarray, context: int) -> np.ndarray:
    """All (context+1)-frame windows of a clip as a strided view: (N - context, T, H, W)."""
    view = np.lib.stride_tricks.sliding_window_view(clip, context + 1, axis=0)
    return np.moveaxis(view, -1, 1)


@torch.inference_mode()
def score_windows(
    model: AnomalyModel, view: np.ndarray, batch_size: int = 32, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Scores and maps (N,), (N, gh, gw) of ``view``'s windows (N, T, H, W), any strided view."""
    model.eval()
    scores, maps = [], []
    for start in range(0, len(view), batch_size):
        # a writable, contiguous copy of the strided windows (torch wants to own writable memory)
        batch = torch.from_numpy(
            np.require(view[start : start + batch_size], requirements=["C", "W"])
        )
        out = model(batch.to(device))
        scores.append(out.score.float().cpu().numpy())
        maps.append(out.anomaly_map.float().cpu().numpy())
    return np.concatenate(scores), np.concatenate(maps)


@torch.inference_mode()
def score_clip(
    model: AnomalyModel, clip: np.ndarray, batch_size: int = 32, device: str = "cpu"
) -> tuple[np.ndarray, np.ndarray]:
    """Score every frame of a clip causally: frame t sees frames <= t only.

    Returns ``(scores (N,), maps (N, gh, gw))``. The first ``model.context`` frames cannot be
    scored yet; they get the clip's first available score and map (documented in eval output).
    """
    k = model.context
    if len(clip) <= k:
        raise ValueError(f"a clip of {len(clip)} frames is too short for context {k}")
    score, amap = score_windows(model, windows(clip, k), batch_size, device)
    score = np.concatenate([np.repeat(score[:1], k), score])
    amap = np.concatenate([np.repeat(amap[:1], k, axis=0), amap])
    return score, amap
