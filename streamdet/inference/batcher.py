"""The batching policy, as pure code (no threads, no clocks of its own: ``now`` is passed in).

Each camera has at most one pending frame: a newer analysable frame replaces the pending one
(counted as ``superseded``), so the newest frame of every camera is what gets scored and nothing
queues without bound. A batch is due when ``max_batch`` cameras are pending or the oldest pending
frame has waited ``max_wait_s``; a camera whose frame arrives after the batch is taken simply
waits for the next one. (The same policy as DeepStream's batch-size / push-timeout.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Pending(Generic[T]):
    camera: str
    item: T
    arrived: float  # the caller's clock, seconds


@dataclass
class Batcher(Generic[T]):
    max_batch: int
    max_wait_s: float
    _pending: dict[str, Pending[T]] = field(default_factory=dict)
    superseded: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_wait_s < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_s >= 0")

    def __len__(self) -> int:
        return len(self._pending)

    def offer(self, camera: str, item: T, now: float) -> None:
        """A new frame for ``camera``: it replaces (and counts) any frame still pending."""
        old = self._pending.get(camera)
        if old is not None:
            self.superseded[camera] = self.superseded.get(camera, 0) + 1
            # Keep the older arrival time: the camera has been waiting that long already.
            self._pending[camera] = Pending(camera, item, old.arrived)
        else:
            self._pending[camera] = Pending(camera, item, now)

    def due(self, now: float) -> bool:
        if not self._pending:
            return False
        if len(self._pending) >= self.max_batch:
            return True
        return now - min(p.arrived for p in self._pending.values()) >= self.max_wait_s

    def wait_s(self, now: float) -> float | None:
        """How long until a batch is due (0 when due now, None when nothing is pending)."""
        if not self._pending:
            return None
        if self.due(now):
            return 0.0
        oldest = min(p.arrived for p in self._pending.values())
        return max(0.0, oldest + self.max_wait_s - now)

    def take(self) -> list[Pending[T]]:
        """Remove and return up to ``max_batch`` pending frames, longest-waiting first."""
        ordered = sorted(self._pending.values(), key=lambda p: p.arrived)[: self.max_batch]
        for p in ordered:
            del self._pending[p.camera]
        return ordered
