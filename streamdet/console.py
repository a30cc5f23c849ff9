"""Live per-camera figures on the terminal (``streamdet capture``, ``run`` and the demo)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

from streamdet.capture.stage import CameraStatus


@dataclass(frozen=True)
class ModelColumns:
    """What the table shows of a camera's detector."""

    state: str  # learning 40%, detecting, ...
    score: float | None
    threshold: float | None


_CAPTURE = (
    f"{'camera':<16} {'state':<12} {'fps':>6} {'analysed/s':>10} {'frames':>8} "
    f"{'reconn':>6} {'stalls':>6} {'1st frame':>9}"
)
MODEL_WIDTH = 17  # "detecting (short)" whole: learned from short footage
_MODEL = f" {'model':<{MODEL_WIDTH}} {'score':>7} {'thresh':>7}"


class LiveTable:
    """Prints one row per camera every ``interval_s``; redraws in place on a terminal."""

    def __init__(self, stream: TextIO | None = None, interval_s: float = 1.0) -> None:
        self.stream = stream or sys.stdout
        self.interval_s = interval_s
        self._tty = self.stream.isatty()
        self._last: dict[str, tuple[float, int, int]] = {}
        self._printed_lines = 0

    def rows(
        self,
        statuses: list[CameraStatus],
        models: dict[str, ModelColumns] | None = None,
        now: float | None = None,
    ) -> list[str]:
        """Format rows; rates are measured between calls from the frame counters."""
        now = time.monotonic() if now is None else now
        lines = [_CAPTURE + (_MODEL if models is not None else "") + "  last error"]
        for s in statuses:
            then, frames, analysable = self._last.get(s.name, (now, s.frames, s.analysable))
            span = now - then
            fps = (s.frames - frames) / span if span > 0 else s.fps
            rate = (s.analysable - analysable) / span if span > 0 else 0.0
            self._last[s.name] = (now, s.frames, s.analysable)
            first = "-" if s.first_frame_s is None else f"{s.first_frame_s:.2f}s"
            line = (
                f"{s.name[:16]:<16} {s.state.value:<12} {fps:>6.1f} {rate:>10.1f} {s.frames:>8} "
                f"{s.reconnects:>6} {s.stalls:>6} {first:>9}"
            )
            if models is not None:
                line += _model_cells(models.get(s.name))
            lines.append(f"{line}  {(s.errors[-1] if s.errors else '')[:60]}")
        return lines

    def show(
        self,
        statuses: list[CameraStatus],
        title: str,
        models: dict[str, ModelColumns] | None = None,
        footer: list[str] | None = None,
    ) -> None:
        lines = [title, *self.rows(statuses, models), *(footer or [])]
        if self._tty and self._printed_lines:
            self.stream.write(f"\x1b[{self._printed_lines}F\x1b[J")
        self.stream.write("\n".join(lines) + "\n")
        if not self._tty:
            self.stream.write("\n")
        self.stream.flush()
        self._printed_lines = len(lines)

    def run(
        self,
        statuses: Callable[[], list[CameraStatus]],
        duration_s: float | None,
        should_stop: Callable[[], bool],
        models: Callable[[], dict[str, ModelColumns]] | None = None,
        title: str = "streamdet",
    ) -> None:
        """Show the table until ``duration_s`` passes or ``should_stop()``."""
        started = time.monotonic()
        self.rows(statuses())  # prime the rate counters
        while not should_stop():
            elapsed = time.monotonic() - started
            if duration_s is not None and elapsed >= duration_s:
                break
            wait = (
                self.interval_s
                if duration_s is None
                else min(self.interval_s, duration_s - elapsed)
            )
            time.sleep(max(wait, 0.0))
            total = f"/{duration_s:.0f}" if duration_s is not None else ""
            self.show(
                statuses(),
                f"{title} — {time.monotonic() - started:.0f}{total} s",
                models() if models is not None else None,
            )


def _model_cells(columns: ModelColumns | None) -> str:
    if columns is None:
        return f" {'-':<{MODEL_WIDTH}} {'-':>7} {'-':>7}"
    score = "-" if columns.score is None else f"{columns.score:.2f}"
    threshold = "-" if columns.threshold is None else f"{columns.threshold:.2f}"
    return f" {columns.state[:MODEL_WIDTH]:<{MODEL_WIDTH}} {score:>7} {threshold:>7}"
