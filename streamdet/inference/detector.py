"""One camera's detector: its model's life (loaded, or learned in place by the learning stage;
detect, keep learning on line, be taught by an operator, save what it learned) and its
smoothing."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamdet.config import CameraConfig, ModelsConfig
from streamdet.errors import ModelError
from streamdet.frames import DetectedObject, ModelState, ScoredFrame
from streamdet.inference.online import OnlineLearner
from streamdet.learning import saved
from streamdet.learning.health import HealthBaseline
from streamdet.learning.stage import Job, LearnInPlace, Outcome
from streamdet.learning.workflow import Plan, Trained
from streamdet.log import camera_logger
from streamdet.models.base import AnomalyModel
from streamdet.models.checkpoint import save_checkpoint
from streamdet.models.objects import ObjectModel
from streamdet.models.registry import entry
from streamdet.preflight import folder_problem
from streamdet.scoring import zones
from streamdet.scoring.calibration import release_level
from streamdet.scoring.smoothing import Ema

logger = logging.getLogger(__name__)

SETTLE_EVERY_S = 1.0  # footage seconds between two frames an objects model's background takes


@dataclass(frozen=True)
class DetectorStatus:
    camera: str
    state: ModelState
    kind: str
    threshold: float | None
    learn_progress: float  # 0..1 while learning
    error: str | None
    note: str | None = None  # about the threshold, e.g. learned from too little footage
    learned: dict[str, int] | None = None  # models that learn on line: objects per ring so far


class Detector:
    """Holds a camera's model and threshold, or learns them from the live stream."""

    def __init__(
        self, camera: CameraConfig, models: ModelsConfig, device: str, release_ratio: float = 0.8
    ) -> None:
        self.camera = camera
        self.release_ratio = release_ratio  # the event rules': where an open event may end
        self.kind = camera.model or models.kind
        self._models = models
        self._device = device
        self._log = camera_logger(__name__, camera.name)
        self._state = ModelState.NO_MODEL
        self._job: Job | None = None  # learning in place (on the learning stage)
        self.model: AnomalyModel | None = None
        self.threshold: float | None = None
        self.normal_peak: float | None = None  # held-out normal footage's highest score
        self.ema = Ema(entry(self.kind).smoothing_alpha)
        self.error: str | None = None
        self.note: str | None = None
        self.unsaved = False  # a model learned here that could not be written to models.dir
        self._zone_mask: np.ndarray | None = None
        self.health: HealthBaseline | None = None  # the normal look, for health events
        self.learner: OnlineLearner | None = None  # models that learn on line, if allowed
        self._extra: dict[str, Any] = {}  # the checkpoint's metadata besides the model's own
        self._unsaved_rows = 0  # objects learned (on line or taught) since the last save
        self._saved_at = time.monotonic()
        self._settled_at: float | None = None  # wall time of the last frame offered to settle
        self._unsettled_s = 0.0  # footage seconds since the background last took a frame
        self._view_unsaved = False  # the background took frames since the last save

    @property
    def folder(self) -> Path:
        return self._models.dir / self.camera.name

    @property
    def state(self) -> ModelState:
        """The model's state; while learning in place, the learning job's."""
        job = self._job
        return self._state if job is None else job.state

    def load_or_learn(self, learning: LearnInPlace | None = None) -> None:
        """Load the camera's checkpoint, else start learning in place (if allowed) on the
        learning stage."""
        if (self.folder / "model.json").exists():
            try:
                learned = saved.load(self.folder, self._device)
            except ModelError as exc:
                self.fail(str(exc))
                return
            self._extra = learned.metadata
            self._install(
                learned.model, learned.threshold, learned.smoothing_alpha, learned.normal_peak
            )
            self._set_note(learned.note)
            self._set_health(learned)
            self._log.info("loaded %s model from %s", learned.model.kind, self.folder)
            return
        if not self._models.learn_in_place:
            self._log.warning("no model at %s and learn_in_place is off", self.folder)
            return
        if learning is None:  # a stage built without the App's learning stage (tests)
            self._log.warning("no model at %s and nothing to learn one in place", self.folder)
            return
        outcome = Outcome(self._learned, self._learn_again, self.fail)
        self._job = learning.learn(self.camera.name, self._plan(), outcome)
        self._log.info("no model yet: learning normal for %.0f s", self._models.learn_seconds)

    def _plan(self) -> Plan:
        return Plan.for_camera(self.camera, self._models, self._device, self.kind)

    def _learned(self, trained: Trained) -> None:
        """The learning stage's outcome: install the model learned in place, then save it."""
        cal = trained.calibration
        self.health = trained.health
        self._extra = trained.metadata(self.camera.name, source="live")
        self._install(trained.model, cal.threshold, cal.smoothing_alpha, cal.held_out_max)
        self._set_note(cal.note)
        self._log.info(
            "learned %s in %.1f s; threshold %.3f; detecting",
            self.kind,
            trained.summary["train_seconds"],
            cal.threshold,
        )
        self._save(trained)

    def _learn_again(self, why: str) -> None:
        """Too little footage came in the learning period: the job keeps what came and learns
        for another period (a camera may start streaming long after the pipeline)."""
        self.error = (
            f"waiting for footage ({why}); learning for another {self._models.learn_seconds:.0f} s"
        )
        self._log.warning("%s", self.error)

    def _save(self, trained: Trained) -> None:
        """Write the learned model to ``models.dir``. If that fails, the model in memory keeps
        detecting; the error says it will be learned again at the next start."""
        try:
            save_checkpoint(trained.model, self.folder, self._extra)
        except Exception as exc:  # an unwritable folder must not throw the model away
            why = folder_problem("models.dir", self.folder) or f"{self.folder}: {exc!r}"
            self.error = f"learned model not saved ({why}): detecting with it until the end"
            self.unsaved = True
            self._log.error("%s", self.error)
            return
        self._log.info("saved the learned model to %s", self.folder)

    def _install(
        self, model: AnomalyModel, threshold: float, alpha: float, normal_peak: float | None
    ) -> None:
        self.model, self.threshold, self.normal_peak = model, threshold, normal_peak
        self.ema = Ema(alpha)
        self.error = None
        self.learner = None
        if self._models.keep_learning and isinstance(model, ObjectModel):
            self.learner = OnlineLearner(
                self._models.keep_learning_margin_s, self._models.keep_learning_fps
            )
        self._state = ModelState.DETECTING
        self._job = None  # (after the model: a thread seeing DETECTING finds it)

    def _set_health(self, learned: saved.Learned) -> None:
        """The checkpoint's health baseline; without one (trained before health events) or
        with a damaged one, health checks are off for the camera and the model still runs."""
        self.health = learned.health
        if learned.health_error is not None:
            self._log.warning("%s: health checks off", learned.health_error)
        elif learned.health is None:
            self._log.info("the checkpoint has no health baseline: retrain for health events")

    # ------------------------------------------------------------------ learning on line
    def settle(
        self, grey: np.ndarray, rows: np.ndarray | None, wall_time: float
    ) -> tuple[str, ...]:
        """Let an objects model's background keep learning from the frame just scored
        (``grey``: its newest frame as scored; ``rows``: the model's object rows, all of them,
        zones or not) for the footage time since it last did, once ``SETTLE_EVERY_S`` of
        footage has gone by (a change is taken in over a minute or more: a frame a second
        samples it as well as every frame, and what the finder derives from a background is
        derived again only when it changed). Returns the names of the buffers that changed
        (the runner's stacked copy must be refreshed), none when it did not settle. (On the
        inference thread.)"""
        if not isinstance(self.model, ObjectModel) or self.state is not ModelState.DETECTING:
            return ()
        last, self._settled_at = self._settled_at, wall_time
        if last is None or wall_time <= last:
            return ()
        # a gap (the stream was down) counts as one analysed frame's time at most
        self._unsettled_s += min(wall_time - last, 1.0)
        if self._unsettled_s < SETTLE_EVERY_S:
            return ()
        seconds, self._unsettled_s = self._unsettled_s, 0.0
        boxes = np.zeros((0, 4)) if rows is None else rows[rows[:, 6] > 0, :4]
        self.model.settle(grey, boxes, seconds)
        self._view_unsaved = True
        return ObjectModel.SETTLED

    def observe(self, frame: ScoredFrame) -> int:
        """Learn on line from a scored frame, as ``OnlineLearner`` releases frames far from
        every hot one. Returns the objects learned now. (On the inference thread.)"""
        if self.learner is None:
            return 0
        rows = [o.features for o in frame.objects if o.features is not None]
        # hot: what could start an event, or keep an open one from ending (smoothed between
        # the release level and the threshold, for as long as an event lasts)
        level = release_level(frame.threshold, frame.normal_peak, self.release_ratio)
        hot = frame.smoothed > level or frame.score > frame.threshold
        ready = self.learner.observe(frame.ref.wall_time, hot, np.stack(rows) if rows else None)
        return sum(self._learn(r, "online") for r in ready)

    def teach(self, rows: np.ndarray) -> int:
        """An operator says these objects (feature rows of an event) were normal: learn them
        into the taught ring, which ordinary footage never ages out, and save at once.
        Raises ModelError when this camera's model cannot be taught. (On the inference
        thread.)"""
        if self.state is not ModelState.DETECTING or self.model is None:
            raise ModelError(f"{self.camera.name}: its model is {self.state.value}, not detecting")
        if not isinstance(self.model, ObjectModel):
            raise ModelError(
                f"{self.camera.name}: a {self.kind} model cannot be taught (kind objects can)"
            )
        taught = self._learn(rows, "taught")
        self.save_learned()
        return taught

    def _learn(self, rows: np.ndarray, ring: str) -> int:
        if not isinstance(self.model, ObjectModel):
            return 0
        learned = self.model.learn_normal(torch.from_numpy(np.asarray(rows, np.float32)), ring)
        self._unsaved_rows += learned
        return learned

    def save_learned(self, now: float | None = None) -> None:
        """Save the checkpoint if objects were learned (or the background took frames) since
        the last save: with ``now``, only every ``models.save_every_s``; without, at once
        (taught, stopping)."""
        model = self.model
        if not (self._unsaved_rows or self._view_unsaved) or model is None or not self._extra:
            return
        if now is not None and now - self._saved_at < self._models.save_every_s:
            return
        self._saved_at = time.monotonic() if now is None else now
        try:
            save_checkpoint(model, self.folder, self._extra)
        except Exception as exc:  # the model in memory keeps what it learned
            why = folder_problem("models.dir", self.folder) or f"{self.folder}: {exc!r}"
            self._log.error("what was learned on line is not saved (%s)", why)
            return
        self._log.info(
            "saved %d object(s) learned since the last save%s",
            self._unsaved_rows,
            " and the view as it is now" if self._view_unsaved else "",
        )
        self._unsaved_rows, self._view_unsaved = 0, False

    def _set_note(self, note: str | None) -> None:
        self.note = note
        if note:
            self._log.warning("threshold: %s", note)

    def fail(self, message: str) -> None:
        """Give up on this camera's model, with a reason for the API and metrics."""
        self.error = message
        self._state = ModelState.FAILED
        self._job = None
        self._log.error("%s", message)

    def restrict(self, score: float, anomaly_map: np.ndarray) -> tuple[float, np.ndarray]:
        """Apply the camera's zones and masks: only counted cells make the frame score."""
        if not self.camera.zones and not self.camera.masks:
            return score, anomaly_map
        if self._zone_mask is None or self._zone_mask.shape != anomaly_map.shape:
            self._zone_mask = zones.cell_mask(
                anomaly_map.shape, self.camera.zones, self.camera.masks
            )
        return zones.apply(anomaly_map, self._zone_mask)

    def restrict_objects(self, objects: tuple[DetectedObject, ...]) -> tuple[DetectedObject, ...]:
        """The objects whose box centre is in a counted cell (call after ``restrict``)."""
        mask = self._zone_mask
        if mask is None or not objects:
            return objects
        rows, cols = mask.shape

        def counted(o: DetectedObject) -> bool:
            x, y = (o.box[0] + o.box[2]) / 2, (o.box[1] + o.box[3]) / 2
            return bool(mask[min(int(y * rows), rows - 1), min(int(x * cols), cols - 1)])

        return tuple(o for o in objects if counted(o))

    def status(self) -> DetectorStatus:
        progress, job = 0.0, self._job
        if job is not None and job.state is ModelState.LEARNING:
            progress = job.progress()
        elif self.state is ModelState.DETECTING:
            progress = 1.0
        learned = None
        if isinstance(self.model, ObjectModel):  # objects so far, per ring (taught: k rows each)
            online, taught = self.model.online_next.tolist()
            learned = {"online": online, "taught": taught // int(self.model.params["k"])}
        return DetectorStatus(
            self.camera.name,
            self.state,
            self.kind,
            self.threshold,
            progress,
            self.error,
            self.note,
            learned,
        )
