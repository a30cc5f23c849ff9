"""``alerts.sinks[i]``: where events are sent, one model per sink ``kind``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from streamdet.config.base import ConfigModel, check_url
from streamdet.config.fleet import NatsSinkConfig


class JsonlSinkConfig(ConfigModel):
    """Append events to a JSON Lines file."""

    kind: Literal["jsonl"] = "jsonl"
    name: str = Field("jsonl", description="Used in metrics and logs.")
    path: Path = Field(Path("events.jsonl"), description="Relative to alerts.dir.")


class WebhookSinkConfig(ConfigModel):
    """POST events as JSON to a URL (with an Idempotency-Key header)."""

    kind: Literal["webhook"] = "webhook"
    name: str = Field("webhook", description="Used in metrics and logs.")
    url: str = Field(description="http(s):// receiver; credentials may come from ${VAR}.")
    timeout_s: float = Field(5.0, gt=0, le=120, description="Per request.")
    max_backoff_s: float = Field(60.0, gt=0, le=3600, description="Longest wait between retries.")

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        return check_url(url, "https?", "http(s)://host[:port]/path")


class MqttSinkConfig(ConfigModel):
    """Publish events to an MQTT broker (QoS 1)."""

    kind: Literal["mqtt"] = "mqtt"
    name: str = Field("mqtt", description="Used in metrics and logs.")
    host: str = Field("127.0.0.1", description="Broker host.")
    port: int = Field(1883, ge=1, le=65535, description="Broker port.")
    topic: str = Field(
        "streamdet/events/{camera}", description="Topic; {camera} is the camera's name."
    )
    username: str | None = Field(None, description="Broker user, if it wants one.")
    password: str | None = Field(None, description="Broker password; use ${VAR}.")
    timeout_s: float = Field(5.0, gt=0, le=120, description="Connect and publish timeout.")
    max_backoff_s: float = Field(60.0, gt=0, le=3600, description="Longest wait between retries.")


SinkConfig = Annotated[
    JsonlSinkConfig | WebhookSinkConfig | MqttSinkConfig | NatsSinkConfig,
    Field(discriminator="kind"),
]
SINK_KINDS = ("jsonl", "webhook", "mqtt", "nats")


def default_sinks() -> list[JsonlSinkConfig | WebhookSinkConfig | MqttSinkConfig | NatsSinkConfig]:
    return [JsonlSinkConfig(kind="jsonl")]
