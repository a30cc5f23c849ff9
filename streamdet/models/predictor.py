"""Kind "predictor": a small U-Net that predicts the next frame (after Liu et al., CVPR 2018).

From the last K frames the network predicts frame t; trained on normal footage only, it predicts
normal motion well and unusual motion or objects badly. The raw anomaly map is the squared
prediction error of the newest frame averaged per ``patch x patch`` cell (a causal score: frame
t is judged from frames t-K..t only). Simplified from the paper: intensity (L2) plus gradient
loss, no adversarial or optical-flow term, and fewer, narrower levels so it trains on a CPU.

By default the network predicts the change from the last frame (``residual``): at initialisation
it is already a "nothing moves" predictor, which makes a few minutes of CPU training go further.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from streamdet.errors import ModelError
from streamdet.models import autoencoder
from streamdet.models.autoencoder import ReconstructionModel, param
from streamdet.models.base import AnomalyModel, ModelSpec, Progress, TrainingData, TrainSettings

DEFAULTS: dict[str, Any] = {
    "context": 4,  # K past frames the prediction is made from
    "channels": [16, 32, 64, 128],  # U-Net widths; each level after the first halves resolution
    "gradient_weight": 1.0,  # Liu et al. weigh intensity and gradient loss equally
    "residual": True,  # predict last frame + change rather than the frame itself
    "holdout": 0.1,  # tail of each clip kept out of training to fit the normalisation
}


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Encoder of conv blocks with max-pooling, decoder with transposed convs and skips."""

    def __init__(self, cin: int, cout: int, widths: list[int]) -> None:
        super().__init__()
        self.down = nn.ModuleList(
            [_block(a, b) for a, b in zip([cin, *widths[:-1]], widths, strict=True)]
        )
        pairs = list(zip(widths[:0:-1], widths[-2::-1], strict=True))  # (deep, shallow) pairs
        self.up = nn.ModuleList([nn.ConvTranspose2d(a, b, 2, stride=2) for a, b in pairs])
        self.merge = nn.ModuleList([_block(2 * b, b) for _, b in pairs])
        self.head = nn.Conv2d(widths[0], cout, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        skips.pop()  # the deepest level has no skip partner
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([up(x), skips.pop()], dim=1))
        out: Tensor = self.head(x)
        return out


class FramePredictor(ReconstructionModel):
    """Kind "predictor": frames t-K..t-1 -> predicted frame t, scored against the real one."""

    kind = "predictor"

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.context = int(param(spec, DEFAULTS, "context"))
        self.gradient_weight = float(param(spec, DEFAULTS, "gradient_weight"))
        self.holdout = float(param(spec, DEFAULTS, "holdout"))
        self.residual = bool(param(spec, DEFAULTS, "residual"))
        widths = [int(c) for c in param(spec, DEFAULTS, "channels")]
        if self.context < 1 or len(widths) < 2 or min(widths) < 1:
            raise ModelError(f"predictor: need context >= 1 and >= 2 channel widths: {spec}")
        self.multiple = 2 ** (len(widths) - 1)
        self.net = UNet(self.context, 1, widths)

    def reconstruct(self, x: Tensor) -> tuple[Tensor, Tensor]:
        past, target = x[:, :-1], x[:, -1:]
        out = self.net(past)
        # Tanh keeps a direct prediction in the pixel range; a residual one is clamped instead,
        # because a tanh around "last + change" would squash the copy of the last frame.
        out = (past[:, -1:] + out).clamp(-1.0, 1.0) if self.residual else torch.tanh(out)
        return out, target


def build(spec: ModelSpec) -> FramePredictor:
    """Factory for the model registry: an untrained frame predictor for ``spec``."""
    return FramePredictor(spec)


def train(
    model: AnomalyModel, data: TrainingData, settings: TrainSettings, progress: Progress
) -> None:
    """Fit the predictor on windows of K+1 normal frames, then its normalisation (held out).

    The loop is the shared reconstruction trainer (``streamdet.models.autoencoder.train``).
    """
    if not isinstance(model, FramePredictor):
        raise ModelError(f"cannot train kind {model.kind!r} as a frame predictor")
    autoencoder.train(model, data, settings, progress)
