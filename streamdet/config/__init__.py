"""The one typed configuration tree, validated once at start-up.

A module per section (``sources``, ``cameras``, ``capture``, ``models``, ``inference``,
``alerts`` with its ``sinks``, ``server``, ``fleet``), the whole file in ``tree`` and the reading
of it in ``loader``: YAML, ``${VAR}`` substitution and errors that name the key. This module
re-exports only, so ``from streamdet.config import X`` names every one of them.
"""

from streamdet.config.alerts import (
    AlertsConfig,
    ClipsConfig,
    HealthConfig,
    RetentionConfig,
    RulesConfig,
)
from streamdet.config.cameras import CameraConfig, FrameFormat
from streamdet.config.capture import BackoffConfig, CaptureConfig
from streamdet.config.fleet import FleetConfig, NatsSinkConfig
from streamdet.config.inference import InferenceConfig
from streamdet.config.loader import camera, load_config, parse_config, summary
from streamdet.config.models import DEFAULT_KIND, MODEL_KINDS, ModelsConfig
from streamdet.config.server import IceServerConfig, MjpegConfig, ServerConfig, WebRtcConfig
from streamdet.config.sinks import (
    SINK_KINDS,
    JsonlSinkConfig,
    MqttSinkConfig,
    SinkConfig,
    WebhookSinkConfig,
)
from streamdet.config.sources import (
    SOURCE_KINDS,
    FileSource,
    MjpegSource,
    RtspSource,
    SourceConfig,
    SyntheticAnomaly,
    SyntheticFault,
    SyntheticSource,
    WebcamSource,
)
from streamdet.config.tree import Config, LoggingConfig

__all__ = [
    "DEFAULT_KIND",
    "MODEL_KINDS",
    "SINK_KINDS",
    "SOURCE_KINDS",
    "AlertsConfig",
    "BackoffConfig",
    "CameraConfig",
    "CaptureConfig",
    "ClipsConfig",
    "Config",
    "FileSource",
    "FleetConfig",
    "FrameFormat",
    "HealthConfig",
    "IceServerConfig",
    "InferenceConfig",
    "JsonlSinkConfig",
    "LoggingConfig",
    "MjpegConfig",
    "MjpegSource",
    "ModelsConfig",
    "MqttSinkConfig",
    "NatsSinkConfig",
    "RetentionConfig",
    "RtspSource",
    "RulesConfig",
    "ServerConfig",
    "SinkConfig",
    "SourceConfig",
    "SyntheticAnomaly",
    "SyntheticFault",
    "SyntheticSource",
    "WebRtcConfig",
    "WebcamSource",
    "WebhookSinkConfig",
    "camera",
    "load_config",
    "parse_config",
    "summary",
]
