"""One camera's detector: its model's life (learn in place, train, detect) and its smoothing."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamdet.capture.ring import FrameRing
from streamdet.config import CameraConfig, ModelsConfig
from streamdet.errors import ModelError, SourceError, StreamdetError
from streamdet.frames import DetectedObject, ModelState
from streamdet.inference.health import HealthBaseline
from streamdet.log import camera_logger
from streamdet.models.base import AnomalyModel, TrainSettings, no_progress
from streamdet.models.checkpoint import load_checkpoint, save_checkpoint
from streamdet.models.registry import default_spec, entry
from streamdet.models.training import (
    MIN_HELD_OUT,
    Budget,
    FootageCollector,
    Trained,
    fit_and_calibrate,
)
from streamdet.preflight import folder_problem
from streamdet.scoring import zones
from streamdet.scoring.smoothing import Ema

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorStatus:
    camera: str
    state: ModelState
    kind: str
    threshold: float | None
    learn_progress: float  # 0..1 while learning
    error: str | None
    note: str | None = None  # about the threshold, e.g. learned from too little footage


class Detector:
    """Holds a camera's model and threshold, or learns them from the live stream."""

    def __init__(self, camera: CameraConfig, models: ModelsConfig, device: str) -> None:
        self.camera = camera
        self.kind = camera.model or models.kind
        self._models = models
        self._device = device
        self._log = camera_logger(__name__, camera.name)
        self.state = ModelState.NO_MODEL
        self.model: AnomalyModel | None = None
        self.threshold: float | None = None
        self.normal_peak: float | None = None  # held-out normal footage's highest score
        self.ema = Ema(entry(self.kind).smoothing_alpha)
        self.error: str | None = None
        self.note: str | None = None
        self.unsaved = False  # a model learned here that could not be written to models.dir
        self._collector: FootageCollector | None = None
        self._learn_started = 0.0
        self._trainer: threading.Thread | None = None
        self._zone_mask: np.ndarray | None = None
        self.health: HealthBaseline | None = None  # the normal look, for health events

    @property
    def folder(self) -> Path:
        return self._models.dir / self.camera.name

    def load_or_learn(self, ring: FrameRing) -> None:
        """Load the camera's checkpoint, else start learning in place (if allowed)."""
        if (self.folder / "model.json").exists():
            try:
                model, meta = load_checkpoint(self.folder, self._device)
            except ModelError as exc:
                self.fail(str(exc))
                return
            calibration = meta["calibration"]
            peak = calibration.get("held_out_max")  # absent in checkpoints from before it
            self._install(
                model,
                float(calibration["threshold"]),
                float(calibration["smoothing_alpha"]),
                None if peak is None else float(peak),
            )
            self._set_note(calibration.get("note"))
            self._load_health(meta.get("health"))
            self._log.info("loaded %s model from %s", model.kind, self.folder)
            return
        if not self._models.learn_in_place:
            self._log.warning("no model at %s and learn_in_place is off", self.folder)
            return
        self._collector = FootageCollector(ring, default_spec(self.kind))
        self._learn_started = time.monotonic()
        self.state = ModelState.LEARNING
        self._log.info("no model yet: learning normal for %.0f s", self._models.learn_seconds)

    def poll_learning(self, fps: float) -> None:
        """Called by the stage often: collect frames; when the period is over, train."""
        if self.state is not ModelState.LEARNING or self._collector is None:
            return
        self._collector.poll(fps)
        if time.monotonic() - self._learn_started >= self._models.learn_seconds:
            self.state = ModelState.TRAINING
            self._trainer = threading.Thread(
                target=self._train, args=(fps,), name=f"train:{self.camera.name}", daemon=True
            )
            self._trainer.start()

    def _train(self, fps: float) -> None:
        collector = self._collector
        try:
            if collector is None:
                raise ModelError("nothing collected")
            try:
                data = collector.data(fps, min_frames=2 * MIN_HELD_OUT)
            except SourceError as exc:  # the camera sent (almost) nothing: wait for footage
                self._learn_again(str(exc))
                return
            self._collector = None
            settings = TrainSettings(
                seed=self._models.seed,
                max_seconds=self._models.max_train_seconds,
                device=self._device,
            )
            budget = Budget(
                self.camera.analysis_fps,
                self._models.false_events_per_hour,
                entry(self.kind).smoothing_alpha,
            )
            trained = fit_and_calibrate(
                default_spec(self.kind), data, settings, budget, no_progress
            )
        except StreamdetError as exc:
            self.fail(f"learning failed: {exc}")
            return
        except Exception as exc:  # a training bug must not take the pipeline down
            self._log.exception("learning crashed")
            self.fail(f"learning crashed: {exc!r}")
            return
        cal = trained.calibration
        self.health = trained.health
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
        """Too little footage came in the learning period: keep what came, learn for another
        period (a camera may start streaming long after the pipeline)."""
        self.error = (
            f"waiting for footage ({why}); learning for another {self._models.learn_seconds:.0f} s"
        )
        self._log.warning("%s", self.error)
        self._learn_started = time.monotonic()
        self.state = ModelState.LEARNING

    def _save(self, trained: Trained) -> None:
        """Write the learned model to ``models.dir``. If that fails, the model in memory keeps
        detecting; the error says it will be learned again at the next start."""
        try:
            save_checkpoint(
                trained.model, self.folder, trained.metadata(self.camera.name, source="live")
            )
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
        self.state = ModelState.DETECTING

    @property
    def training(self) -> bool:
        """Whether a training thread is running (it cannot be cut short safely)."""
        return self._trainer is not None and self._trainer.is_alive()

    def _load_health(self, meta: object) -> None:
        """The checkpoint's health baseline; without one (trained before health events) or
        with a damaged one, health checks are off for the camera and the model still runs."""
        self.health = None
        if meta is None:
            self._log.info("the checkpoint has no health baseline: retrain for health events")
            return
        try:
            if not isinstance(meta, dict):
                raise ModelError("damaged health baseline in the checkpoint: not an object")
            self.health = HealthBaseline.from_dict(meta)
        except ModelError as exc:
            self._log.warning("%s: health checks off", exc)

    def wait_for_training(self, timeout_s: float) -> None:
        """Let a training in progress finish (it cannot be cut short safely)."""
        trainer = self._trainer
        if trainer is not None and trainer.is_alive():
            self._log.info("waiting for training to finish before stopping")
            trainer.join(timeout_s)

    def _set_note(self, note: str | None) -> None:
        self.note = note
        if note:
            self._log.warning("threshold: %s", note)

    def fail(self, message: str) -> None:
        """Give up on this camera's model, with a reason for the API and metrics."""
        self.error = message
        self.state = ModelState.FAILED
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
        progress = 0.0
        if self.state is ModelState.LEARNING:
            progress = min(
                1.0, (time.monotonic() - self._learn_started) / self._models.learn_seconds
            )
        elif self.state is ModelState.DETECTING:
            progress = 1.0
        return DetectorStatus(
            self.camera.name, self.state, self.kind, self.threshold, progress, self.error, self.note
        )
