"""``alerts``: when scores become events (rules), camera health, clips, retention and sinks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from streamdet.config.base import ConfigModel
from streamdet.config.sinks import (
    JsonlSinkConfig,
    MqttSinkConfig,
    SinkConfig,
    WebhookSinkConfig,
    default_sinks,
)


class RulesConfig(ConfigModel):
    """When scores become events."""

    min_duration_s: float = Field(0.6, ge=0, le=600, description="Above threshold this long.")
    instant_ratio: float = Field(
        2.0,
        ge=1,
        le=1e6,
        description="A smoothed score this many times the threshold starts an event at once,"
        " without min_duration_s (a thrown bag is gone sooner); a large value turns it off.",
    )
    end_after_s: float = Field(2.0, ge=0, le=3600, description="Below the release level this long.")
    release_ratio: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Hysteresis: an event ends below ratio x threshold (or below the highest"
        " score of held-out normal footage, if higher).",
    )
    cooldown_s: float = Field(10.0, ge=0, le=86400, description="Quiet time after an event.")
    global_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="A change over this share of the image is lighting, not an event.",
    )


class RetentionConfig(ConfigModel):
    """How much event media (snapshots and clips) is kept."""

    max_age_days: float = Field(30, gt=0, le=3650, description="Older files are deleted.")
    max_megabytes: float = Field(
        2000, gt=0, le=10_000_000, description="Past this total, the oldest files are deleted."
    )


class ClipsConfig(ConfigModel):
    """Event clips (MP4) at the camera's resolution, from footage kept before and after."""

    enabled: bool = Field(True, description="Keep recent footage and write a clip per event.")
    pre_roll_s: float = Field(5.0, ge=0, le=120, description="Footage before the event's start.")
    post_roll_s: float = Field(5.0, ge=0, le=120, description="Footage after the event's end.")
    max_s: float = Field(
        120.0, gt=0, le=3600, description="Longest clip; a longer event's clip stops here."
    )
    fps: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Frame rate of clips re-encoded from JPEG frames (synthetic, MJPEG, raw"
        " webcams); H.264/H.265 cameras' packets are copied at their own rate.",
    )
    buffer_megabytes: float = Field(
        64, gt=0, le=100_000, description="Most footage kept per camera; the oldest goes first."
    )


class HealthConfig(ConfigModel):
    """Camera-health events: covered, blurred, moved, frozen (against the learned normal)."""

    enabled: bool = Field(True, description="Check cameras whose model has a health baseline.")
    check_fps: float = Field(2.0, gt=0, le=25, description="Checks per second per camera.")
    open_after_s: float = Field(
        3.0, ge=0, le=3600, description="A condition must hold this long to open an event."
    )
    clear_after_s: float = Field(
        3.0, ge=0, le=3600, description="It must be gone this long for its event to end."
    )
    suppress_anomalies: bool = Field(
        True,
        description="While a condition holds on a camera, its anomaly events are not raised"
        " (an open one ends): a covered lens is not an anomaly storm.",
    )


class AlertsConfig(ConfigModel):
    """Events: rules, the durable store and the sinks."""

    dir: Path = Field(
        Path("events"), description="Store, snapshots and files; relative to the config's folder."
    )
    rules: RulesConfig = Field(default_factory=RulesConfig, description="When scores are events.")
    retention: RetentionConfig = Field(
        default_factory=RetentionConfig, description="Disk use of snapshots and clips."
    )
    clips: ClipsConfig = Field(default_factory=ClipsConfig, description="Event clips (MP4).")
    health: HealthConfig = Field(
        default_factory=HealthConfig, description="Camera-health events (a lens covered, ...)."
    )
    sinks: list[SinkConfig] = Field(
        default_factory=default_sinks,
        description="Where events are sent.",
    )

    @field_validator("sinks")
    @classmethod
    def _unique(
        cls, sinks: list[JsonlSinkConfig | WebhookSinkConfig | MqttSinkConfig]
    ) -> list[Any]:
        names = [s.name for s in sinks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate sink name(s): {', '.join(duplicates)}")
        return sinks
