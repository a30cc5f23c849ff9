"""Causal smoothing: each smoothed score depends on the current and past scores only."""

from __future__ import annotations

import numpy as np


class Ema:
    """Exponential moving average for one camera's stream of scores (alpha=1: no smoothing)."""

    def __init__(self, alpha: float) -> None:
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self.value: float | None = None

    def update(self, score: float) -> float:
        self.value = score if self.value is None else self.value + self.alpha * (score - self.value)
        return self.value

    def reset(self) -> None:
        self.value = None


def ema(scores: np.ndarray, alpha: float) -> np.ndarray:
    """Causal EMA over a whole clip (same maths as ``Ema``)."""
    smoother = Ema(alpha)
    return np.array([smoother.update(float(s)) for s in scores], dtype=np.float64)
