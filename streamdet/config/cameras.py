"""``cameras``: one entry per camera (its name, source, analysis rate, frame format, zones)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from streamdet.config.base import ConfigModel
from streamdet.config.models import known_kind
from streamdet.config.sources import RtspSource, SourceConfig


class FrameFormat(ConfigModel):
    """What every decoded frame is converted to, once, for the models."""

    width: int = Field(320, ge=16, le=1920, description="Width the models see.")
    height: int = Field(240, ge=16, le=1080, description="Height the models see.")
    color: Literal["grey", "bgr"] = Field("grey", description="Single channel or BGR.")

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.height, self.width) if self.color == "grey" else (self.height, self.width, 3)


class CameraConfig(ConfigModel):
    """One camera."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Unique id used in logs, metrics labels and the API.",
    )
    source: SourceConfig = Field(description="Where frames come from; `kind` picks the type.")
    record: RtspSource | None = Field(
        None,
        description="Optional record stream (often the camera's main stream, the detect"
        " `source` its substream): its packets are kept, not decoded, for full-resolution clips"
        " and snapshots. A URL, or an rtsp source's keys.",
    )
    analysis_fps: float = Field(
        5.0,
        gt=0,
        le=120,
        description="Frames per second offered for scoring (the rest are skipped).",
    )
    frame: FrameFormat = Field(
        default_factory=FrameFormat, description="Size and colour frames are converted to."
    )
    enabled: bool = Field(True, description="false keeps the camera configured but off.")
    model: str | None = Field(None, description="Model kind for this camera; default: models.kind.")
    zones: list[list[tuple[float, float]]] = Field(
        default_factory=list,
        description="Polygons (x, y in 0..1 of the frame) where anomalies count; none: everywhere.",
    )
    masks: list[list[tuple[float, float]]] = Field(
        default_factory=list,
        description="Polygons (x, y in 0..1) where anomalies never count (a busy road, a tree).",
    )

    @field_validator("zones", "masks")
    @classmethod
    def _polygons(
        cls, polygons: list[list[tuple[float, float]]]
    ) -> list[list[tuple[float, float]]]:
        for i, polygon in enumerate(polygons):
            if len(polygon) < 3:
                raise ValueError(f"polygon {i} needs at least 3 points, got {len(polygon)}")
            if not all(0 <= x <= 1 and 0 <= y <= 1 for x, y in polygon):
                raise ValueError(f"polygon {i}: coordinates are fractions of the frame (0..1)")
        return polygons

    @field_validator("record", mode="before")
    @classmethod
    def _record_url(cls, record: Any) -> Any:
        if isinstance(record, str):
            return {"kind": "rtsp", "url": record}
        if record is None or isinstance(record, dict | RtspSource):
            return record
        raise ValueError(f"expected an rtsp:// URL or an rtsp source's keys, got {record!r}")

    @field_validator("model")
    @classmethod
    def _known_model(cls, kind: str | None) -> str | None:
        return kind if kind is None else known_kind(kind)
