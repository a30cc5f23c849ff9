"""``fleet``: several streamdet boxes sharing one camera list over NATS JetStream (off by
default), and the ``nats`` event sink (``alerts.sinks[i]`` with ``kind: nats``).

Each worker heartbeats into a KV bucket; every camera runs on one live worker, chosen by
weighted rendezvous hashing (``streamdet.fleet.assign``); learned checkpoints are kept in the
JetStream object store so a camera that moves keeps its model. Server URLs may carry
credentials (``nats://user:pass@host``): they are redacted wherever they are shown.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from streamdet.config.base import ConfigModel, check_url

NAME = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"  # a KV key and a NATS subject token


def _nats_urls(urls: list[str]) -> list[str]:
    for url in urls:
        check_url(url, "nats|tls", "nats://host:port or tls://host:port")
    return urls


class FleetConfig(ConfigModel):
    """Fleet mode: this process is one worker of a fleet that shares the cameras."""

    enabled: bool = Field(False, description="Join the fleet; false: run every camera here.")
    servers: list[str] = Field(
        default_factory=lambda: ["nats://127.0.0.1:4222"],
        min_length=1,
        description="NATS servers (any node of the cluster will do; list several).",
    )
    worker: str | None = Field(
        None,
        pattern=NAME,
        description="This worker's name, unique in the fleet; default: the host name.",
    )
    capacity: float = Field(
        1.0, gt=0, le=1000, description="Weight: capacity 2 gets about twice the cameras."
    )
    heartbeat_s: float = Field(1.0, ge=0.1, le=60, description="Seconds between heartbeats.")
    member_timeout_s: float = Field(
        5.0,
        gt=0,
        le=600,
        description="A worker whose heartbeat is this old is gone: its cameras move.",
    )
    cameras: Literal["config", "kv"] = Field(
        "config",
        description="Where the camera list lives: `config`, this file's cameras (the same file on"
        " every worker; a reload applies a change); `kv`, the `cameras` entry of the"
        " <prefix>-config bucket, which every worker watches (seeded from this file's cameras"
        " when it does not exist yet).",
    )
    prefix: str = Field(
        "streamdet",
        pattern=NAME,
        description="Names the buckets: <prefix>-members, <prefix>-config, <prefix>-models.",
    )
    replicas: int = Field(
        1, ge=1, le=5, description="Copies of each bucket in the cluster (3 for a 3-node one)."
    )
    connect_timeout_s: float = Field(5.0, gt=0, le=120, description="Per server, at start.")

    @field_validator("servers")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        return _nats_urls(urls)

    @model_validator(mode="after")
    def _timeout_after_heartbeats(self) -> FleetConfig:
        if self.member_timeout_s < 2 * self.heartbeat_s:
            raise ValueError(
                f"member_timeout_s ({self.member_timeout_s:g}) must be at least twice"
                f" heartbeat_s ({self.heartbeat_s:g}): one late heartbeat must not move cameras"
            )
        return self


class NatsSinkConfig(ConfigModel):
    """Publish events to a NATS JetStream stream, each with ``Nats-Msg-Id`` = its idempotency
    key: the server drops a duplicate sent again within the stream's duplicate window."""

    kind: Literal["nats"] = "nats"
    name: str = Field("nats", description="Used in metrics and logs.")
    servers: list[str] = Field(
        default_factory=lambda: ["nats://127.0.0.1:4222"],
        min_length=1,
        description="NATS servers (the fleet's, usually).",
    )
    stream: str = Field("streamdet-events", pattern=NAME, description="JetStream stream.")
    subject: str = Field(
        "streamdet.events.{camera}", description="Subject; {camera} is the camera's name."
    )
    replicas: int = Field(1, ge=1, le=5, description="Copies of the stream in the cluster.")
    duplicate_window_s: float = Field(
        600, gt=0, le=86400, description="How long the server remembers a message id."
    )
    timeout_s: float = Field(5.0, gt=0, le=120, description="Connect and publish timeout.")
    max_backoff_s: float = Field(60.0, gt=0, le=3600, description="Longest wait between retries.")

    @field_validator("servers")
    @classmethod
    def _urls(cls, urls: list[str]) -> list[str]:
        return _nats_urls(urls)

    @field_validator("subject")
    @classmethod
    def _subject(cls, subject: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_{}-]+(\.[A-Za-z0-9_{}-]+)*", subject):
            raise ValueError(
                f"expected a NATS subject of dot-separated tokens such as a.b.{{camera}}"
                f" (no wildcards, no spaces), got {subject!r}"
            )
        return subject
