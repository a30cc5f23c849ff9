"""``inference``: batched scoring of all cameras on one device."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from streamdet.config.base import ConfigModel


class InferenceConfig(ConfigModel):
    """Batched scoring of all cameras on one device."""

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA if present.")
    max_batch: int = Field(16, ge=1, le=256, description="Cameras scored in one batch at most.")
    max_wait_ms: float = Field(
        40, ge=0, le=1000, description="A partial batch is scored after this wait."
    )
    threads: int | None = Field(
        None, ge=1, le=256, description="CPU threads for models; default: all but one core."
    )
    backlog: int = Field(
        4,
        ge=1,
        le=16,
        description="Frames per camera waiting to be scored at most: the newest always; above"
        " 1, frames that arrived together (a camera's decoder caught up, or a batch ran late) are"
        " scored in the next batches instead of skipped. 4: 0.8 s of frames at 5 fps.",
    )
    grouping: Literal["auto", "vmap", "loop"] = Field(
        "auto",
        description="Cameras sharing a model architecture: one grouped call (vmap over stacked"
        " parameters, or the model's own grouped forward), one call per camera, or auto (the"
        " model's own grouped forward if it has one, else time both on the first batch and keep"
        " the faster).",
    )
    output_queue: int = Field(
        256, ge=1, le=100000, description="Scored frames buffered for alerting (drop-oldest)."
    )
