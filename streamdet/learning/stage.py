"""The learning stage: cameras without a model learn their normal in place, off the scoring loop.

A camera's detector asks for a ``Job`` (``learn``); one thread (``learning``) then keeps every
new frame of the camera's ring (read through ``LiveFootage``, a narrow interface the App builds
on whatever holds the rings) for ``models.learn_seconds``, and hands the footage to a thread of
its own (``train:<camera>``) that runs the one learning workflow (``workflow.learn``). What
comes of it goes back through the job's ``Outcome``: the model learned, "too little footage:
learning for another period", or the reason it failed. The inference stage only scores; the
model is installed by the detector's outcome callback and picked up by the scoring thread.

``stop`` waits for trainings in progress (native code, OpenCV and torch, cannot be cut short:
exiting under it aborts the process); the App stops this stage after inference, before capture.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from streamdet.errors import SourceError, StreamdetError
from streamdet.frames import ModelState
from streamdet.learning.footage import FootageCollector, FrameWindows
from streamdet.learning.workflow import Plan, Trained, frames_needed, learn

logger = logging.getLogger(__name__)

# How often the learning thread copies the new frames of the rings it reads: a ring laps a
# reader after ``capture.ring_size`` frames (at least 2, 64 by default: 2.5 s at 25 fps).
TICK_S = 0.05
TRAINING_WAIT_S = 120.0  # at stop, per training still running


class LiveFootage(Protocol):
    """What learning in place reads of the cameras (every method quick and thread-safe)."""

    def windows(self, camera: str) -> FrameWindows:
        """The camera's ring of newest frames."""
        ...

    def fps(self, camera: str) -> float:
        """The frame rate the camera's stream declares (a default until it says)."""
        ...


@dataclass(frozen=True)
class Outcome:
    """What a job tells the camera that asked for it (called on the learning stage's threads)."""

    learned: Callable[[Trained], None]  # the model, calibrated: install it, save it
    waiting: Callable[[str], None]  # too little footage: learning for another period
    failed: Callable[[str], None]  # learning failed for good (the reason)


class Job:
    """One camera learning in place: its state and progress, read by any thread."""

    def __init__(
        self, camera: str, collector: FootageCollector, plan: Plan, seconds: float, outcome: Outcome
    ) -> None:
        self.camera, self.plan, self.seconds, self.outcome = camera, plan, seconds, outcome
        self.collector: FootageCollector | None = collector  # None once training has its data
        self.state = ModelState.LEARNING  # then TRAINING; LEARNING again when footage is short
        self.started = time.monotonic()
        self.trainer: threading.Thread | None = None

    def progress(self, now: float | None = None) -> float:
        """0..1 of the learning period (1 while training)."""
        if self.state is not ModelState.LEARNING:
            return 1.0
        elapsed = (time.monotonic() if now is None else now) - self.started
        return min(1.0, elapsed / self.seconds)

    @property
    def frames(self) -> int:
        """The frames collected so far (0 once they went to training)."""
        return 0 if self.collector is None else self.collector.frames

    @property
    def training(self) -> bool:
        return self.trainer is not None and self.trainer.is_alive()


class LearnInPlace(Protocol):
    """What a detector needs of the learning stage: ask for a job."""

    def learn(self, camera: str, plan: Plan, outcome: Outcome) -> Job: ...


class LearningStage:
    """Collects live footage for the cameras learning in place and trains their models."""

    def __init__(self, footage: LiveFootage, learn_seconds: float) -> None:
        self.footage = footage
        self.learn_seconds = learn_seconds
        # Replaced, never changed in place (copy on write): the thread iterates it unlocked.
        self._jobs: dict[str, Job] = {}
        self._trainers: list[tuple[str, threading.Thread]] = []  # (camera, thread), for stop
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="learning", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop collecting; wait for each training in progress (it cannot be cut short)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        with self._lock:
            trainers, self._trainers = self._trainers, []
            self._jobs = {}
        for camera, trainer in trainers:
            if trainer.is_alive():
                logger.info("[%s] waiting for training to finish before stopping", camera)
                trainer.join(TRAINING_WAIT_S)

    def learn(self, camera: str, plan: Plan, outcome: Outcome) -> Job:
        """Start learning ``camera`` in place (a job of the same camera is replaced)."""
        collector = FootageCollector(self.footage.windows(camera), plan.spec)
        job = Job(camera, collector, plan, self.learn_seconds, outcome)
        with self._lock:
            self._jobs = {**self._jobs, camera: job}
        return job

    def cancel(self, camera: str) -> None:
        """Stop collecting for ``camera`` (its camera is removed). A training in progress goes
        on to its end (``stop`` waits for it)."""
        with self._lock:
            self._jobs = {k: j for k, j in self._jobs.items() if k != camera}

    # ------------------------------------------------------------------ the loop
    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            for job in self._jobs.values():
                if job.state is not ModelState.LEARNING:
                    continue
                try:
                    self._collect(job)
                except Exception:  # the stage boundary: the other cameras go on learning
                    if self._jobs.get(job.camera) is not job:  # cancelled while it was read
                        continue  # (a reload removed the camera, its ring with it): no error
                    logger.exception("[%s] collecting footage failed", job.camera)

    def _collect(self, job: Job) -> None:
        collector = job.collector
        if collector is None:
            return
        fps = self.footage.fps(job.camera)
        collector.poll(fps)
        if time.monotonic() - job.started < job.seconds:
            return
        job.state = ModelState.TRAINING
        trainer = threading.Thread(
            target=self._train, args=(job, collector, fps), name=f"train:{job.camera}", daemon=True
        )
        job.trainer = trainer
        with self._lock:  # (the ones that ended need no waiting for)
            self._trainers = [(c, t) for c, t in self._trainers if t.is_alive()]
            self._trainers.append((job.camera, trainer))
        trainer.start()

    def _train(self, job: Job, collector: FootageCollector, fps: float) -> None:
        try:
            try:
                data = collector.data(fps, min_frames=frames_needed(job.plan))
            except SourceError as exc:  # the camera sent (almost) nothing: wait for footage
                job.started = time.monotonic()  # keep what came, learn for another period
                job.state = ModelState.LEARNING
                job.outcome.waiting(str(exc))
                return
            self._finish(job)
            trained = learn(data, job.plan)
        except StreamdetError as exc:
            job.outcome.failed(f"learning failed: {exc}")
            return
        except Exception as exc:  # a training bug must not take the pipeline down
            logger.exception("[%s] learning crashed", job.camera)
            job.outcome.failed(f"learning crashed: {exc!r}")
            return
        try:
            job.outcome.learned(trained)
        except Exception as exc:  # installing it failed: the camera says why
            logger.exception("[%s] installing the learned model failed", job.camera)
            job.outcome.failed(f"installing the learned model failed: {exc!r}")

    def _finish(self, job: Job) -> None:
        """The footage is taken: the job collects no more and lets go of its copy of the frames
        (its state stays TRAINING until the camera's outcome says what came of it)."""
        job.collector = None
        with self._lock:
            if self._jobs.get(job.camera) is job:
                self._jobs = {k: j for k, j in self._jobs.items() if k != job.camera}
