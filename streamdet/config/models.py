"""``models``: how cameras learn "normal", and the model kinds a config may name.

The kinds are listed here, not in ``streamdet.models``, so that reading a config never imports
the models (nor torch); ``streamdet.models.kinds`` re-exports them and the model registry's
test checks it builds every one.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from streamdet.config.base import ConfigModel

MODEL_KINDS = (
    "framediff",
    "motionflow",
    "objects",
    "motion",
    "flow",
    "patchae",
    "fusion",
    "ae",
    "predictor",
)
DEFAULT_KIND = "objects"


def known_kind(kind: str) -> str:
    """``kind`` if it names a model kind. Raises ValueError listing them."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
    return kind


class ModelsConfig(ConfigModel):
    """How cameras learn "normal" and where their checkpoints live."""

    dir: Path = Field(
        Path("models"),
        description="Checkpoints live in DIR/<camera>/; relative to the config file's folder.",
    )
    kind: str = Field(DEFAULT_KIND, description="Default model kind for every camera.")
    learn_seconds: float = Field(
        300, gt=0, le=86400, description="How long `streamdet train` watches a live camera."
    )
    max_train_seconds: float = Field(900, gt=0, le=86400, description="Training time budget.")
    false_events_per_hour: float = Field(
        1.0, gt=0, le=3600, description="Calibrate each threshold for at most this many."
    )
    seed: int = Field(0, ge=0, description="Same seed and footage, same model.")
    learn_in_place: bool = Field(
        True,
        description="A camera without a checkpoint learns from its live stream for "
        "learn_seconds, then calibrates and detects (with `streamdet run`).",
    )
    keep_learning: bool = Field(
        True,
        description="Models that can (kind objects) keep learning normal while detecting: the"
        " objects of frames far from any event go into a bounded ring of their bank, oldest"
        " replaced first; event frames never do.",
    )
    keep_learning_margin_s: float = Field(
        10.0,
        ge=0,
        le=3600,
        description="A frame is learned only when no frame this many seconds before or after it"
        " could start an event or hold one open (score above the threshold, or smoothed score"
        " above the event rules' release level); so it is learned this late.",
    )
    keep_learning_fps: float = Field(
        0.2,
        gt=0,
        le=30,
        description="Frames a second learned on line at most: neighbouring frames are near"
        " copies, and a slower rate lets the ring remember longer (0.2 and 3 objects a frame:"
        " the last half hour in objects' 1024 rows).",
    )
    save_every_s: float = Field(
        600,
        gt=0,
        le=86400,
        description="What a camera learned on line is saved to its checkpoint this often (and at"
        " stop), so that a restart keeps it.",
    )

    @field_validator("kind")
    @classmethod
    def _known(cls, kind: str) -> str:
        return known_kind(kind)
