"""The whole configuration file: one section per top-level key, and ``logging``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from streamdet.config.alerts import AlertsConfig
from streamdet.config.base import ConfigModel
from streamdet.config.cameras import CameraConfig
from streamdet.config.capture import CaptureConfig
from streamdet.config.fleet import FleetConfig
from streamdet.config.inference import InferenceConfig
from streamdet.config.models import ModelsConfig
from streamdet.config.server import ServerConfig


class LoggingConfig(ConfigModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")


class Config(ConfigModel):
    """The whole configuration file."""

    cameras: list[CameraConfig] = Field(min_length=1, description="At least one camera.")
    capture: CaptureConfig = Field(default_factory=CaptureConfig, description="Capture stage.")
    models: ModelsConfig = Field(default_factory=ModelsConfig, description="Learning normal.")
    inference: InferenceConfig = Field(
        default_factory=InferenceConfig, description="Batched scoring."
    )
    alerts: AlertsConfig = Field(default_factory=AlertsConfig, description="Events and sinks.")
    server: ServerConfig = Field(default_factory=ServerConfig, description="HTTP server.")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="Log output.")
    fleet: FleetConfig = Field(default_factory=FleetConfig, description="Several boxes, one fleet.")

    @field_validator("cameras")
    @classmethod
    def _unique_names(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        seen: set[str] = set()
        for camera in cameras:
            if camera.name in seen:
                raise ValueError(f"duplicate camera name {camera.name!r}")
            seen.add(camera.name)
        return cameras
