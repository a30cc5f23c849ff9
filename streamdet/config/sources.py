"""``cameras[i].source``: where a camera's frames come from, one model per source ``kind``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from streamdet.config.base import ConfigModel, check_url


class _NetworkSource(ConfigModel):
    url: str = Field(description="Stream URL; credentials may come from ${VAR}.")
    open_timeout_s: float = Field(5.0, gt=0, le=120, description="Give up opening after this.")
    read_timeout_s: float = Field(
        5.0,
        gt=0,
        le=120,
        description="A read that waits longer than this counts as a stall. Over TCP, FFmpeg"
        " waits at most half of it for each answer while opening, too.",
    )


class RtspSource(_NetworkSource):
    """An IP camera over RTSP (read with PyAV/FFmpeg)."""

    kind: Literal["rtsp"] = "rtsp"
    transport: Literal["tcp", "udp"] = Field("tcp", description="RTP transport.")

    @field_validator("url")
    @classmethod
    def _rtsp_url(cls, url: str) -> str:
        return check_url(url, "rtsps?", "rtsp://host[:port]/path")


class MjpegSource(_NetworkSource):
    """A camera that serves multipart MJPEG over HTTP."""

    kind: Literal["mjpeg"] = "mjpeg"

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        return check_url(url, "https?", "http(s)://host[:port]/path")


class FileSource(ConfigModel):
    """A recorded video file."""

    kind: Literal["file"] = "file"
    path: Path = Field(description="Video file; relative paths are relative to the config file.")
    loop: bool = Field(True, description="Start again at the end instead of stopping.")
    realtime: bool = Field(
        True,
        description="Pace at the file's frame rate (like a camera) or read as fast as possible.",
    )
    fps: float | None = Field(
        None,
        gt=0,
        le=240,
        description="The file's frame rate (default: what it declares, else 25). Frames of a "
        "raw stream (.h264/.h265) carry no timestamps: they are paced and analysed at this rate.",
    )


class WebcamSource(ConfigModel):
    """A local V4L2 camera such as /dev/video0."""

    kind: Literal["webcam"] = "webcam"
    device: str = Field("/dev/video0", pattern=r"^/dev/video\d+$", description="V4L2 device.")
    width: int | None = Field(None, ge=16, le=7680, description="Requested capture width.")
    height: int | None = Field(None, ge=16, le=4320, description="Requested capture height.")
    fps: float | None = Field(None, gt=0, le=240, description="Requested capture frame rate.")


class SyntheticAnomaly(ConfigModel):
    """An anomaly scheduled into a synthetic scene."""

    kind: Literal["fast", "wrong_way", "forbidden_area", "loiter", "left_object"] = Field(
        description="fast: a cyclist; wrong_way: against the flow; forbidden_area: on the grass; "
        "loiter: standing still on the path; left_object: a bag left on the path."
    )
    start_s: float = Field(ge=0, description="Seconds after the scene starts.")
    duration_s: float = Field(gt=0, le=3600, description="How long it is visible.")


class SyntheticFault(ConfigModel):
    """A camera fault scheduled into a synthetic scene (a health condition to detect)."""

    kind: Literal["cover", "shift", "blur", "freeze"] = Field(
        description="cover: a covered lens; shift: the view moved sideways; blur: out of focus;"
        " freeze: the picture stops."
    )
    start_s: float = Field(ge=0, description="Seconds after the scene starts.")
    duration_s: float = Field(gt=0, le=86400, description="How long it lasts.")
    amount: float = Field(
        0.0,
        ge=0,
        le=1000,
        description="shift: pixels (0: 10 % of the width); blur: sigma in pixels (0: 4).",
    )


class SyntheticSource(ConfigModel):
    """A deterministic procedural camera: people walking along a path, plus scheduled anomalies."""

    kind: Literal["synthetic"] = "synthetic"
    seed: int = Field(0, ge=0, description="Same seed, same pixels.")
    width: int = Field(320, ge=64, le=3840, description="Frame width in pixels.")
    height: int = Field(240, ge=64, le=2160, description="Frame height in pixels.")
    fps: float = Field(25.0, gt=0, le=120, description="Frames per second of scene time.")
    people_per_minute: float = Field(40.0, ge=0, le=600, description="Walking traffic.")
    anomalies: list[SyntheticAnomaly] = Field(
        default_factory=list, description="Anomalies to stage, with their times."
    )
    faults: list[SyntheticFault] = Field(
        default_factory=list, description="Camera faults to stage (health events), with times."
    )
    realtime: bool = Field(True, description="Pace at fps (like a camera) or as fast as possible.")


SourceConfig = Annotated[
    RtspSource | MjpegSource | FileSource | WebcamSource | SyntheticSource,
    Field(discriminator="kind"),
]
SOURCE_KINDS = ("rtsp", "mjpeg", "file", "webcam", "synthetic")
