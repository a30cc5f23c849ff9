"""Progress shown on long work (training, evaluation): tqdm bars on stderr."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm


class ProgressBar:
    """A ``Progress`` callback: one bar per phase, with the figures (loss, ...) beside it."""

    def __init__(self, stream: TextIO | None = None, enabled: bool = True) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self._bar: tqdm[Any] | None = None
        self._phase = ""
        self._step = -1

    def __call__(self, phase: str, fraction: float, figures: dict[str, float]) -> None:
        if not self.enabled:
            return
        if not self.stream.isatty():
            self._plain(phase, fraction, figures)
            return
        if phase != self._phase:
            self.close()
            self._phase = phase
            self._bar = tqdm(
                total=1000,
                desc=phase,
                file=self.stream,
                bar_format="{desc}: {percentage:3.0f}%|{bar:24}| {elapsed}<{remaining} {postfix}",
                dynamic_ncols=True,
            )
        bar = self._bar
        if bar is None:
            return
        bar.n = int(max(0.0, min(1.0, fraction)) * 1000)
        bar.set_postfix({k: f"{v:.4g}" for k, v in figures.items() if k != "eta_s"}, refresh=False)
        bar.refresh()

    def _plain(self, phase: str, fraction: float, figures: dict[str, float]) -> None:
        """Logs and CI: one line per phase per 10 % step instead of a redrawn bar."""
        step = int(max(0.0, min(1.0, fraction)) * 10)
        if phase == self._phase and step <= self._step:
            return
        self._phase, self._step = phase, step
        shown = " ".join(f"{k}={v:.4g}" for k, v in figures.items())
        self.stream.write(f"{phase}: {step * 10:3d}% {shown}".rstrip() + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._phase, self._step = "", -1
