"""Read-only snapshots the stages publish: what metrics and the web server read of them.

Plain frozen dataclasses, built by each stage's ``snapshot()`` from figures it keeps in memory
(no SQLite, no reaching into a batcher or a queue), so a scrape or an API call costs the stages
nothing but a few dict copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamdet.frames import ModelState, ScoredFrame
from streamdet.handoff import HandoffSnapshot


@dataclass(frozen=True)
class ModelSnapshot:
    """One camera's detector as the inference stage sees it (credentials never in it)."""

    camera: str
    kind: str
    state: ModelState
    threshold: float | None
    learn_progress: float  # 0..1 while learning
    error: str | None
    note: str | None  # about the threshold, e.g. learned from too little footage
    learned: dict[str, int] | None  # objects learned on line / taught, for models that do
    analysed: int  # frames scored
    superseded: int  # analysable frames replaced by a newer one before scoring
    latest: ScoredFrame | None  # the newest score


@dataclass(frozen=True)
class InferenceSnapshot:
    cameras: tuple[ModelSnapshot, ...]  # in config order
    pending: int  # frames waiting in the batcher
    scored: HandoffSnapshot | None  # the hand-off to alerting

    def camera(self, name: str) -> ModelSnapshot | None:
        return next((c for c in self.cameras if c.camera == name), None)


@dataclass(frozen=True)
class SinkSnapshot:
    name: str
    delivered: int  # deliveries completed
    failures: int  # deliveries that failed (and are retried)
    owed: int  # deliveries still in the outbox (held ones too)


@dataclass(frozen=True)
class AlertSnapshot:
    events_started: dict[str, int]  # camera -> anomaly events started
    sinks: tuple[SinkSnapshot, ...]
    clips_written: int
    clip_failures: int
    # camera -> condition -> open, for the cameras whose health is checked (with a baseline)
    health: dict[str, dict[str, bool]] = field(default_factory=dict)
    health_events: dict[tuple[str, str], int] = field(default_factory=dict)  # (camera, cond.)
