"""The batching policy, as pure code (no threads, no clocks of its own: ``now`` is passed in).

Each camera has at most ``backlog`` pending frames, oldest first: a newer analysable frame pushes
the oldest out (counted as ``superseded``), so the newest frame of every camera is always scored
and nothing queues without bound. A backlog above 1 absorbs a batch that ran late: the frame
that arrived meanwhile is scored in the next batch instead of being skipped. A batch takes the
oldest pending frame of up to ``max_batch`` cameras (one per camera, longest-waiting first); it
is due when ``max_batch`` cameras are pending or the oldest pending frame has waited
``max_wait_s``; a camera whose frame arrives after the batch is taken simply waits for the next
one. (The same policy as DeepStream's batch-size / push-timeout.)
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
    backlog: int = 1  # pending frames per camera at most
    _pending: dict[str, list[Pending[T]]] = field(default_factory=dict)
    superseded: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_batch < 1 or self.max_wait_s < 0 or self.backlog < 1:
            raise ValueError("max_batch and backlog must be >= 1 and max_wait_s >= 0")

    def __len__(self) -> int:
        """Cameras with a pending frame."""
        return len(self._pending)

    def pending(self, camera: str) -> int:
        return len(self._pending.get(camera, ()))

    def offer(self, camera: str, item: T, now: float) -> None:
        """A new frame for ``camera``; past the backlog, the oldest pending one goes (counted)."""
        queue = self._pending.setdefault(camera, [])
        queue.append(Pending(camera, item, now))
        if len(queue) > self.backlog:
            dropped = queue.pop(0)
            self.superseded[camera] = self.superseded.get(camera, 0) + 1
            # Keep the older arrival time: the camera has been waiting that long already.
            queue[0] = Pending(camera, queue[0].item, min(dropped.arrived, queue[0].arrived))

    def discard(self, camera: str) -> None:
        """Forget ``camera``'s pending frames and counts (it was removed)."""
        self._pending.pop(camera, None)
        self.superseded.pop(camera, None)

    def _heads(self) -> list[Pending[T]]:
        return [queue[0] for queue in self._pending.values()]

    def due(self, now: float) -> bool:
        if not self._pending:
            return False
        if len(self._pending) >= self.max_batch:
            return True
        return now - min(p.arrived for p in self._heads()) >= self.max_wait_s

    def wait_s(self, now: float) -> float | None:
        """How long until a batch is due (0 when due now, None when nothing is pending)."""
        if not self._pending:
            return None
        if self.due(now):
            return 0.0
        oldest = min(p.arrived for p in self._heads())
        return max(0.0, oldest + self.max_wait_s - now)

    def take(self) -> list[Pending[T]]:
        """Remove and return the oldest pending frame of up to ``max_batch`` cameras,
        longest-waiting first (a camera's later frames stay for the next batch)."""
        ordered = sorted(self._heads(), key=lambda p: p.arrived)[: self.max_batch]
        for p in ordered:
            queue = self._pending[p.camera]
            queue.pop(0)
            if not queue:
                del self._pending[p.camera]
        return ordered
