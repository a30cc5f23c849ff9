"""A saved learning read back: the model, its threshold and what was learned with it.

Checkpoints from older streamdet versions lack some of it (the held-out maximum, the health
baseline): what is missing is ``None`` and the camera runs without it. What cannot be done
without (the threshold) is a ``ModelError`` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from streamdet.errors import ModelError
from streamdet.learning.health import HealthBaseline
from streamdet.models.base import AnomalyModel
from streamdet.models.checkpoint import METADATA, load_checkpoint
from streamdet.scoring.calibration import Calibration

OWN_KEYS = ("format", "kind", "version", "spec")  # the checkpoint's own metadata


@dataclass(frozen=True)
class Learned:
    """What ``load`` read: everything a detector or an evaluation needs of a checkpoint."""

    model: AnomalyModel
    threshold: float
    smoothing_alpha: float
    normal_peak: float | None  # held-out normal footage's highest score (None: older)
    note: str | None  # what an operator should know about the threshold
    health: HealthBaseline | None  # None: the checkpoint has none, or a damaged one
    health_error: ModelError | None  # why a baseline that is there could not be read
    metadata: dict[str, Any]  # besides the model's own: kept when the model is saved again

    def calibration(self) -> Calibration:
        """The full calibration record. Raises ModelError when the checkpoint predates a field
        of it."""
        saved = self.metadata["calibration"]
        names = {f.name for f in fields(Calibration)}
        try:
            return Calibration(**{k: v for k, v in saved.items() if k in names})
        except TypeError as exc:
            raise ModelError(
                f"{self.model.kind} checkpoint: incomplete calibration: {exc}"
            ) from None


def load(folder: Path, device: str = "cpu") -> Learned:
    """Read the checkpoint in ``folder``. Raises ModelError when it cannot detect with it."""
    model, meta = load_checkpoint(folder, device)
    where = Path(folder) / METADATA
    calibration = meta.get("calibration")
    if not isinstance(calibration, dict):
        raise ModelError(f"{where}: no calibration: retrain the camera")
    try:
        threshold = float(calibration["threshold"])
        alpha = float(calibration["smoothing_alpha"])
        peak = calibration.get("held_out_max")  # absent in checkpoints from before it
        normal_peak = None if peak is None else float(peak)
    except KeyError as exc:
        raise ModelError(f"{where}: no calibration.{exc.args[0]}: retrain the camera") from None
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where}: damaged calibration: {exc}") from None
    health, health_error = _health(meta.get("health"))
    return Learned(
        model,
        threshold,
        alpha,
        normal_peak,
        calibration.get("note"),
        health,
        health_error,
        {k: v for k, v in meta.items() if k not in OWN_KEYS},
    )


def _health(meta: object) -> tuple[HealthBaseline | None, ModelError | None]:
    """The checkpoint's health baseline; without one (trained before health events) or with a
    damaged one, health checks are off for the camera and the model still runs."""
    if meta is None:
        return None, None
    try:
        if not isinstance(meta, dict):
            raise ModelError("damaged health baseline in the checkpoint: not an object")
        return HealthBaseline.from_dict(meta), None
    except ModelError as exc:
        return None, exc
