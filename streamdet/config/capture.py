"""``capture``: the capture stage (frame rings, stall detection, reconnects, decoders)."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator, model_validator

from streamdet.config.base import ConfigModel


class BackoffConfig(ConfigModel):
    """Reconnect delays: capped exponential with jitter."""

    initial_s: float = Field(0.5, gt=0, le=60, description="First delay; doubles per failure.")
    max_s: float = Field(30.0, gt=0, le=3600, description="Longest delay between attempts.")
    jitter: float = Field(0.3, ge=0, le=1, description="Delay is scaled by 1 - jitter*U(0,1).")
    max_attempts: int = Field(
        0, ge=0, description="Attempts in a row before FAILED; 0 retries forever."
    )

    @model_validator(mode="after")
    def _ordered(self) -> BackoffConfig:
        if self.max_s < self.initial_s:
            raise ValueError(f"max_s ({self.max_s}) must be >= initial_s ({self.initial_s})")
        return self


class CaptureConfig(ConfigModel):
    """The capture stage."""

    ring_size: int = Field(64, ge=2, le=4096, description="Newest frames kept per camera.")
    stall_intervals: float = Field(
        25, ge=2, le=10000, description="No frame for this many frame intervals is a stall."
    )
    min_stall_s: float = Field(2.0, gt=0, le=600, description="Never call a stall sooner.")
    max_stall_s: float = Field(15.0, gt=0, le=3600, description="Always call a stall by then.")
    backoff: BackoffConfig = Field(
        default_factory=BackoffConfig, description="Delays between reconnect attempts."
    )
    nice: int = Field(
        0,
        ge=0,
        le=19,
        description="Niceness added to capture threads and their decoder threads (Linux), so"
        " that scoring gets the CPU first when it is short; 0: same as the rest.",
    )
    fast_decode: bool = Field(
        True,
        description="Decoders skip H.264/HEVC deblocking: ~1.5x less decode CPU; the blocking it"
        " leaves vanishes at the models' size. Clips copy the camera's packets, unaffected;"
        " live view and snapshots show it slightly.",
    )
    decoder_threads: int | str = Field(
        "auto",
        description="Decoding threads per camera. auto: one when there are at least as many"
        " cameras as CPU cores (they already decode in parallel; threads inside each decoder"
        " only add overhead: 1.3x less decode CPU at 24 cameras on 2 cores), else FFmpeg's own"
        " choice; 0: always FFmpeg's choice; N: exactly N.",
    )

    processes: int | str = Field(
        "auto",
        description="Capture processes the cameras are spread over (each decodes its cameras on"
        " threads and writes frames into shared memory; a supervisor restarts one that dies, and"
        " only its cameras blink). auto: one per CPU core; 0: none, every camera on a thread of"
        " the main process; N: N. Never more than there are cameras (more start as cameras are"
        " added).",
    )

    @field_validator("processes", mode="before")
    @classmethod
    def _processes(cls, value: Any) -> int | str:
        return _auto_or_count(value, 256)

    @field_validator("decoder_threads", mode="before")
    @classmethod
    def _threads(cls, value: Any) -> int | str:
        return _auto_or_count(value, 64)

    @model_validator(mode="after")
    def _ordered(self) -> CaptureConfig:
        if self.max_stall_s < self.min_stall_s:
            raise ValueError(
                f"max_stall_s ({self.max_stall_s}) must be >= min_stall_s ({self.min_stall_s})"
            )
        return self


def _auto_or_count(value: Any, most: int) -> int | str:
    if value == "auto" or (type(value) is int and 0 <= value <= most):
        return value  # type: ignore[no-any-return]
    raise ValueError(f"expected 'auto' or a whole number from 0 to {most}, got {value!r}")
