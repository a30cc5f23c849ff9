"""The inference stage: newest analysable frame of every camera -> batches -> scores.

One thread (``inference``), woken by the capture stage after each analysable frame (its
``frames`` signal: no polling), offers each camera's newest analysable frame in its ring
to the batcher (a newer frame supersedes a pending one: counted, never queued), and when a batch
is due copies each camera's window of frames out of its ring and scores them all through the
runner. Each result, carrying the id and version of the model that scored it, goes into the
hand-off to alerting the App gave the stage (``scored``: bounded, drop-oldest, every drop
counted, its reader woken); the newest result per camera is kept for ``snapshot()``.
``add_camera`` / ``remove_camera``
change the set of cameras between two steps of the loop (a config reload).

The stage reads frames through a narrow interface (``ScoringFrames``: a camera's ring and the
"analysable frame committed" signal), nothing else of capture. A camera without a model asks
the learning stage the App gave it (``learning``) to learn one in place; the learned model is
picked up here between two batches. The same thread lets detecting cameras keep learning on
line (``Detector.observe``), teaches a camera what an operator said was normal (``teach``: a
bounded queue of requests, answered through a future, so that every change to a model happens
on the thread that scores it), and saves what was learned every ``models.save_every_s`` and at
stop.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future

import cv2
import numpy as np

from streamdet.config import CameraConfig, InferenceConfig, ModelsConfig
from streamdet.errors import ModelError
from streamdet.frames import DetectedObject, FrameRef, ModelState, ScoredFrame
from streamdet.handoff import FULL, Handoff
from streamdet.inference.batcher import Batcher
from streamdet.inference.detector import Detector, DetectorStatus
from streamdet.inference.reader import ScoringFrames
from streamdet.inference.runner import ModelRunner, Scores
from streamdet.learning.health import HealthBaseline
from streamdet.learning.stage import LearnInPlace
from streamdet.metrics import PipelineMetrics
from streamdet.snapshots import InferenceSnapshot, ModelSnapshot

logger = logging.getLogger(__name__)

ScoreListener = Callable[[ScoredFrame], None]


# Longest wait for a frame: models learned, teaching and saves are looked at between waits.
IDLE_S = 0.1


class InferenceStage:
    """Scores every detecting camera; lets cameras without a model learn in place."""

    def __init__(
        self,
        capture: ScoringFrames,
        cameras: list[CameraConfig],
        models: ModelsConfig,
        inference: InferenceConfig,
        metrics: PipelineMetrics,
        release_ratio: float = 0.8,
        scored: Handoff[ScoredFrame] | None = None,
        learning: LearnInPlace | None = None,
    ) -> None:
        """``release_ratio``: the event rules' (``alerts.rules.release_ratio``): learning on
        line treats every frame that could hold an event open as part of one. ``scored``: the
        hand-off every scored frame is put into (None: only ``latest`` and the listeners).
        ``learning``: where a camera without a model learns one (None: it does not)."""
        self.capture = capture
        self.learning = learning
        self.metrics = metrics
        self.config = inference
        threads = inference.threads or max(1, (os.cpu_count() or 2) - 1)
        self.runner = ModelRunner(inference.device, threads, inference.grouping)
        self._models, self._device = models, str(self.runner.device)
        self._release_ratio = release_ratio
        # Replaced, never changed in place (copy on write): other threads iterate it unlocked.
        self.detectors = {
            c.name: Detector(c, models, self._device, release_ratio) for c in cameras if c.enabled
        }
        self.batcher: Batcher[FrameRef] = Batcher(
            inference.max_batch, inference.max_wait_ms / 1000, inference.backlog
        )
        self.scored = scored  # the bounded hand-off to alerting
        self.latest: dict[str, ScoredFrame] = {}
        self.listeners: list[ScoreListener] = []
        self.analysed: dict[str, int] = dict.fromkeys(self.detectors, 0)
        self._last_offered: dict[str, int] = dict.fromkeys(self.detectors, -1)
        self._buffers: dict[str, np.ndarray] = {}  # a window as the ring holds it
        self._grey: dict[str, np.ndarray] = {}  # the same window in grey, for colour cameras
        self._pace: dict[str, Pace] = {}  # each camera's usual frame interval
        self._stop = threading.Event()
        self._seen = 0  # the capture's frame-signal generation the loop last saw
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards the hand-off structures read by other threads
        self._membership = threading.Lock()  # held by one step of the loop, and by add/remove
        # operators' "this was normal": (camera, feature rows, the answer); bounded, refused full
        self._teach: queue.Queue[tuple[str, np.ndarray, Future[int]]] = queue.Queue(16)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is not None:
            return
        for name, detector in self.detectors.items():
            self._init_drops(name)
            detector.load_or_learn(self.learning)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.capture.frames.notify()  # the loop may be waiting for a frame
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        for detector in self.detectors.values():
            detector.save_learned()  # what it learned on line since the last save
        self._answer_teaching(ModelError("the pipeline is stopping"))

    def add_camera(self, camera: CameraConfig) -> None:
        """Score ``camera`` too (its capture must run already): load its model or learn one."""
        name = camera.name
        detector = Detector(camera, self._models, self._device, self._release_ratio)
        running = self._thread is not None  # else start() loads every camera's model
        if running:  # (outside the lock: loading a checkpoint must not hold up scoring)
            detector.load_or_learn(self.learning)
        with self._membership:
            self.detectors = {**self.detectors, name: detector}
            self._last_offered[name] = -1
            with self._lock:
                self.analysed[name] = 0
            if running:
                self._init_drops(name)

    def remove_camera(self, camera: str) -> None:
        """Stop scoring ``camera``: its model, pending frames, results and metric series go;
        what it learned on line since the last save is saved first (a reload or a fleet move
        would lose it: the camera's next start, here or on another worker, loads the file)."""
        with self._membership:
            removed = self.detectors.get(camera)
            self.detectors = {k: d for k, d in self.detectors.items() if k != camera}
            if removed is not None:
                removed.save_learned()
            self.runner.remove(camera)
            self.batcher.discard(camera)
            for table in (self._last_offered, self._buffers, self._grey, self._pace):
                table.pop(camera, None)
            with self._lock:
                self.latest.pop(camera, None)
                self.analysed.pop(camera, None)
            if self.scored is not None:  # a camera started again under this name is new
                self.scored.discard(lambda f: f.ref.camera != camera)
                self.scored.forget(camera)
            self.metrics.forget(camera)

    def status(self) -> list[DetectorStatus]:
        return [d.status() for d in self.detectors.values()]

    def snapshot(self, camera: str | None = None) -> InferenceSnapshot:
        """What metrics and the web read of this stage: plain copies, no live objects.
        ``camera``: of that camera alone (the live view's overlay asks for each frame)."""
        with self._lock:
            if camera is None:
                latest, analysed = dict(self.latest), dict(self.analysed)
            else:
                latest = {camera: self.latest[camera]} if camera in self.latest else {}
                analysed = {camera: self.analysed.get(camera, 0)}
        superseded = self.batcher.superseded
        detectors = self.detectors
        if camera is not None:
            detectors = {k: d for k, d in detectors.items() if k == camera}
        cameras = tuple(
            ModelSnapshot(
                camera=s.camera,
                kind=s.kind,
                state=s.state,
                threshold=s.threshold,
                learn_progress=s.learn_progress,
                error=s.error,
                note=s.note,
                learned=s.learned,
                analysed=analysed.get(s.camera, 0),
                superseded=superseded.get(s.camera, 0),
                latest=latest.get(s.camera),
            )
            for s in (d.status() for d in detectors.values())
        )
        scored = None if self.scored is None else self.scored.snapshot()
        return InferenceSnapshot(cameras, len(self.batcher), scored)

    def health_baseline(self, camera: str) -> HealthBaseline | None:
        """The camera's learned normal look once it detects (None: no health checks)."""
        detector = self.detectors.get(camera)
        if detector is None or detector.state is not ModelState.DETECTING:
            return None
        return detector.health

    DROP_REASONS = ("window_unavailable", "output_full", "behind")

    def _init_drops(self, camera: str) -> None:
        for reason in self.DROP_REASONS:  # so that "no drops" shows as 0, not as no data
            self.metrics.frames_dropped.labels(camera, "inference", reason)
        if self.scored is not None:
            self.metrics.handoff_dropped.labels(camera, self.scored.name, FULL)

    def _count_drop(self, camera: str, reason: str) -> None:
        self.metrics.frames_dropped.labels(camera, "inference", reason).inc()

    # ------------------------------------------------------------------ the loop
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # the stage boundary: log, keep scoring the other cameras
                logger.exception("inference step failed")
                self._stop.wait(0.5)

    def _step(self) -> None:
        with self._membership:
            now = time.monotonic()
            self._install_new_models()
            self._answer_teaching()
            for detector in self.detectors.values():
                detector.save_learned(now)
            self._offer_new_frames(now)
            wait = self.batcher.wait_s(time.monotonic())
            if wait is not None and wait <= 0:
                self._score([p.item for p in self.batcher.take()])
                return
        # woken by the next frame offered for analysis (no polling of the rings), or when the
        # batch pending is due, or after IDLE_S for the housekeeping above
        self._seen = self.capture.frames.wait(self._seen, IDLE_S if wait is None else wait)

    def _install_new_models(self) -> None:
        for name, detector in self.detectors.items():
            if detector.state is ModelState.DETECTING and name not in self.runner.cameras:
                model = detector.model
                if model is None:  # cannot happen: DETECTING is only set with a model
                    continue
                self.runner.add(name, model)
                shape = (model.context + 1, *self.capture.ring(name).shape)
                self._buffers[name] = np.empty(shape, np.uint8)
                if len(shape) == 4:  # a colour camera: the models see grey
                    self._grey[name] = np.empty(shape[:3], np.uint8)
                # The first call allocates and picks kernels: pay for it now, not in a live batch.
                self.runner.warm_up({name: shape[:3]})

    def _offer_new_frames(self, now: float) -> None:
        for name in self.runner.cameras:
            ring = self.capture.ring(name)
            ref = ring.latest(analysable_only=True)
            if ref is not None and ref.seq > self._last_offered[name]:
                last, self._last_offered[name] = self._last_offered[name], ref.seq
                # analysable frames since the last look (the newest last): up to the backlog
                # are offered, older ones came and went between two looks
                since = [ref] if last < 0 else ring.analysable_refs(last, ref.seq)
                fresh = since[-self.config.backlog :] or [ref]  # (overwritten meanwhile)
                skipped = len(since) - len(fresh)
                if skipped > 0:
                    self.metrics.frames_dropped.labels(name, "inference", "behind").inc(skipped)
                for each in fresh:
                    self.batcher.offer(name, each, now)

    def _score(self, refs: list[FrameRef]) -> None:
        windows: dict[str, np.ndarray] = {}
        kept: dict[str, FrameRef] = {}
        # each window's time scale: a model that measures moves in time is not fooled by a
        # frame the camera dropped between the window's last two (``Pace``)
        scales: dict[str, float] = {}
        for ref in refs:
            buf = self._buffers[ref.camera]
            times = np.empty(len(buf))
            if self.capture.ring(ref.camera).window_ending(ref, len(buf), buf, times):
                windows[ref.camera], kept[ref.camera] = self._as_grey(ref.camera, buf), ref
                pace = self._pace.setdefault(ref.camera, Pace())
                scales[ref.camera] = pace.scale(times)
            else:
                self._count_drop(ref.camera, "window_unavailable")
        if not windows:
            return
        started = time.monotonic()
        results = self._run_batch(windows, scales)
        self.metrics.inference_seconds.observe(time.monotonic() - started)
        self.metrics.batch_size.observe(len(windows))
        scored_at = time.time()
        for camera, result in results.items():
            detector = self.detectors[camera]
            score, anomaly_map = detector.restrict(result.score, result.anomaly_map)
            frame = ScoredFrame(
                ref=kept[camera],
                score=score,
                smoothed=detector.ema.update(score),
                threshold=detector.threshold if detector.threshold is not None else float("inf"),
                anomaly_map=anomaly_map,
                scored_at=scored_at,
                normal_peak=detector.normal_peak,
                objects=detector.restrict_objects(
                    DetectedObject.from_rows(result.objects, result.features)
                ),
                model=model_id(detector),
            )
            self._publish(frame)
            learned = detector.observe(frame)
            if learned:
                self.runner.refresh(camera)
                self.metrics.objects_learned.labels(camera, "online").inc(learned)
            settled = detector.settle(windows[camera][-1], result.objects, frame.ref.wall_time)
            if settled:  # the view keeps being learned
                self.runner.refresh(camera, settled)

    # ------------------------------------------------------------------ operator feedback
    def teach(self, camera: str, rows: np.ndarray) -> Future[int]:
        """Ask the inference thread to teach ``camera``'s model that the objects of these
        feature rows are normal. The future gives the rows learned, or a ModelError saying
        why it cannot be taught; a full queue is a ModelError at once."""
        answer: Future[int] = Future()
        if camera not in self.detectors:
            raise ModelError(f"camera {camera!r} is not in this pipeline's configuration")
        try:
            self._teach.put_nowait((camera, rows, answer))
        except queue.Full:
            raise ModelError("too many cameras being taught at once: try again") from None
        return answer

    def _answer_teaching(self, refuse: ModelError | None = None) -> None:
        while True:
            try:
                camera, rows, answer = self._teach.get_nowait()
            except queue.Empty:
                return
            if refuse is not None:
                answer.set_exception(refuse)
                continue
            try:
                taught = self.detectors[camera].teach(rows)
            except Exception as exc:  # the answer says why; scoring goes on
                if not isinstance(exc, ModelError):
                    logger.exception("[%s] teaching failed", camera)
                answer.set_exception(exc)
                continue
            if camera in self.runner.cameras:
                self.runner.refresh(camera)
            self.metrics.objects_learned.labels(camera, "taught").inc(taught)
            answer.set_result(taught)

    def _run_batch(
        self, windows: dict[str, np.ndarray], scales: dict[str, float] | None = None
    ) -> dict[str, Scores]:
        """Score the batch; if it fails, find the camera whose model fails and take it out."""
        try:
            return self.runner.run(windows, scales)
        except Exception:
            logger.exception("batch of %d camera(s) failed: scoring them one by one", len(windows))
        results: dict[str, Scores] = {}
        for camera, window in windows.items():
            try:
                results.update(self.runner.run({camera: window}, scales))
            except Exception as exc:  # this camera's model is broken; the others go on
                logger.exception("[%s] model failed: camera taken out of scoring", camera)
                self.runner.remove(camera)
                self.detectors[camera].fail(f"model failed while scoring: {exc!r}")
        return results

    def _as_grey(self, camera: str, window: np.ndarray) -> np.ndarray:
        grey = self._grey.get(camera)
        if grey is None:
            return window
        for i, frame in enumerate(window):
            cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY, dst=grey[i])
        return grey

    def _publish(self, frame: ScoredFrame) -> None:
        camera = frame.ref.camera
        if self.scored is not None:
            self.scored.put(frame)  # a drop is counted by the hand-off
        with self._lock:
            self.latest[camera] = frame
            self.analysed[camera] += 1
        self.metrics.frames_analysed.labels(camera).inc()
        self.metrics.latency_seconds.labels(camera).observe(frame.latency_s)
        for listener in self.listeners:
            try:
                listener(frame)
            except Exception:  # one bad listener must not stop scoring
                logger.exception("[%s] score listener failed", camera)


class Pace:
    """A camera's usual frame interval (the median of its last ``KEPT`` windows' last
    intervals, from the stream's presentation times) and each window's time scale against
    it: the usual interval over the window's own (a stream without timestamps keeps 1: the
    wall times of decoding come in bursts). A camera that dropped a frame between a window's
    last two (a lost packet, a stalled encoder) moved everything twice as far in that pair;
    scaled, nobody is fast for it. 1 until ``LEAST`` intervals were seen, and where the
    window's interval is not positive or over ``LIMIT`` times off the usual one (timestamps
    that jumped or restarted, not a dropped frame). A camera that changes its rate for good
    (fewer frames at night) changes its usual interval within ``KEPT`` windows."""

    KEPT, LEAST, LIMIT = 25, 5, 8.0

    def __init__(self) -> None:
        self.intervals: deque[float] = deque(maxlen=self.KEPT)

    def scale(self, times: np.ndarray) -> float:
        """The time scale of a window whose frames came at ``times`` (seconds)."""
        if len(times) < 2:
            return 1.0
        interval = float(times[-1] - times[-2])
        if not interval > 0:  # (also NaN: no timestamps)
            return 1.0
        usual = float(np.median(self.intervals)) if len(self.intervals) >= self.LEAST else 0.0
        self.intervals.append(interval)
        if usual <= 0:
            return 1.0
        ratio = usual / interval
        return ratio if 1 / self.LIMIT <= ratio <= self.LIMIT else 1.0


def model_id(detector: Detector) -> str:
    """The model's kind and version, as events name it (e.g. "objects v3")."""
    return f"{detector.kind} v{detector.model.version if detector.model else 0}"
