"""The one typed configuration tree, validated once at start-up.

``load_config`` reads YAML, substitutes ``${VAR}`` from the environment (so camera passwords need
not be written in the file), validates with pydantic and turns every problem into a
``key.path: message`` line inside a ``ConfigError``. Nothing else in streamdet reads the
environment.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from streamdet.errors import ConfigError
from streamdet.log import redact
from streamdet.models.kinds import DEFAULT_KIND, MODEL_KINDS
from streamdet.yamlfile import load_yaml


class _Model(BaseModel):
    # allow_inf_nan=False: YAML's .nan fails every bound check (NaN compares false), so it was
    # reported as "less than or equal to 120"; now it and .inf are "a finite number".
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def _url(url: str, schemes: str, expected: str) -> str:
    """``url`` if its scheme matches ``schemes`` (a regex) and it names a host."""
    if not re.match(rf"^(?:{schemes})://[^/\s]+", url):
        raise ValueError(f"expected {expected}, got {redact(url)!r}")
    authority = url.split("://", 1)[1].split("/", 1)[0]
    port = authority.rsplit("@", 1)[-1].rsplit("]", 1)[-1].partition(":")[2]
    fragment = "#" in url.split("://", 1)[1].split("?", 1)[0]
    # each ends the user:password part early, for FFmpeg too: the camera would never open
    if fragment or authority.count("@") > 1 or (port and not port.isdigit()):
        raise ValueError(
            "cannot tell the user:password@host:port part apart (a password's '@', '/' and '#'"
            " must be written %40, %2F and %23)"
        )
    return url


class _NetworkSource(_Model):
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
        return _url(url, "rtsps?", "rtsp://host[:port]/path")


class MjpegSource(_NetworkSource):
    """A camera that serves multipart MJPEG over HTTP."""

    kind: Literal["mjpeg"] = "mjpeg"

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        return _url(url, "https?", "http(s)://host[:port]/path")


class FileSource(_Model):
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


class WebcamSource(_Model):
    """A local V4L2 camera such as /dev/video0."""

    kind: Literal["webcam"] = "webcam"
    device: str = Field("/dev/video0", pattern=r"^/dev/video\d+$", description="V4L2 device.")
    width: int | None = Field(None, ge=16, le=7680, description="Requested capture width.")
    height: int | None = Field(None, ge=16, le=4320, description="Requested capture height.")
    fps: float | None = Field(None, gt=0, le=240, description="Requested capture frame rate.")


class SyntheticAnomaly(_Model):
    """An anomaly scheduled into a synthetic scene."""

    kind: Literal["fast", "wrong_way", "forbidden_area", "loiter", "left_object"] = Field(
        description="fast: a cyclist; wrong_way: against the flow; forbidden_area: on the grass; "
        "loiter: standing still on the path; left_object: a bag left on the path."
    )
    start_s: float = Field(ge=0, description="Seconds after the scene starts.")
    duration_s: float = Field(gt=0, le=3600, description="How long it is visible.")


class SyntheticFault(_Model):
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


class SyntheticSource(_Model):
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


class FrameFormat(_Model):
    """What every decoded frame is converted to, once, for the models."""

    width: int = Field(320, ge=16, le=1920, description="Width the models see.")
    height: int = Field(240, ge=16, le=1080, description="Height the models see.")
    color: Literal["grey", "bgr"] = Field("grey", description="Single channel or BGR.")

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.height, self.width) if self.color == "grey" else (self.height, self.width, 3)


class CameraConfig(_Model):
    """One camera."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="Unique id used in logs, metrics labels and the API.",
    )
    source: SourceConfig = Field(description="Where frames come from; `kind` picks the type.")
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

    @field_validator("model")
    @classmethod
    def _known_model(cls, kind: str | None) -> str | None:
        return kind if kind is None else _known_kind(kind)


class BackoffConfig(_Model):
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


class CaptureConfig(_Model):
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


def _known_kind(kind: str) -> str:
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
    return kind


class ModelsConfig(_Model):
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
        return _known_kind(kind)


class InferenceConfig(_Model):
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


class RulesConfig(_Model):
    """When scores become events."""

    min_duration_s: float = Field(0.6, ge=0, le=600, description="Above threshold this long.")
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


class JsonlSinkConfig(_Model):
    """Append events to a JSON Lines file."""

    kind: Literal["jsonl"] = "jsonl"
    name: str = Field("jsonl", description="Used in metrics and logs.")
    path: Path = Field(Path("events.jsonl"), description="Relative to alerts.dir.")


class WebhookSinkConfig(_Model):
    """POST events as JSON to a URL (with an Idempotency-Key header)."""

    kind: Literal["webhook"] = "webhook"
    name: str = Field("webhook", description="Used in metrics and logs.")
    url: str = Field(description="http(s):// receiver; credentials may come from ${VAR}.")
    timeout_s: float = Field(5.0, gt=0, le=120, description="Per request.")
    max_backoff_s: float = Field(60.0, gt=0, le=3600, description="Longest wait between retries.")

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        return _url(url, "https?", "http(s)://host[:port]/path")


class MqttSinkConfig(_Model):
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
    JsonlSinkConfig | WebhookSinkConfig | MqttSinkConfig, Field(discriminator="kind")
]
SINK_KINDS = ("jsonl", "webhook", "mqtt")


def _default_sinks() -> list[JsonlSinkConfig | WebhookSinkConfig | MqttSinkConfig]:
    return [JsonlSinkConfig(kind="jsonl")]


class RetentionConfig(_Model):
    """How much event media (snapshots and clips) is kept."""

    max_age_days: float = Field(30, gt=0, le=3650, description="Older files are deleted.")
    max_megabytes: float = Field(
        2000, gt=0, le=10_000_000, description="Past this total, the oldest files are deleted."
    )


class ClipsConfig(_Model):
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


class HealthConfig(_Model):
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


class AlertsConfig(_Model):
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
        default_factory=_default_sinks,
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


class IceServerConfig(_Model):
    """A STUN or TURN server the live view's WebRTC peers may use."""

    urls: list[str] = Field(min_length=1, description="stun:host:port, turn:host:port?transport=…")
    username: str | None = Field(None, description="TURN user.")
    credential: SecretStr | None = Field(None, description="TURN password; use ${VAR}.")

    @field_validator("urls")
    @classmethod
    def _ice_urls(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if not re.match(r"^(stun|stuns|turn|turns):\S+$", url):
                raise ValueError(f"expected stun:host[:port] or turn:host[:port], got {url!r}")
        return urls


class WebRtcConfig(_Model):
    """The WebRTC live view (aiortc): one peer connection per viewer, newest frame only."""

    enabled: bool = Field(True, description="Offer WebRTC; false: the page uses MJPEG only.")
    fps: float = Field(10.0, gt=0, le=30, description="Frames per second sent to each viewer.")
    max_viewers: int = Field(
        8, ge=1, le=256, description="Peer connections at once; more are refused (503)."
    )
    ice_servers: list[IceServerConfig] = Field(
        default_factory=list,
        description="STUN/TURN servers; none by default (no public STUN is asked).",
    )
    host_addresses: list[str] | None = Field(
        None,
        description="Addresses offered as ICE host candidates; default: every interface "
        "address plus 127.0.0.1 (aioice alone leaves loopback out).",
    )

    @field_validator("host_addresses")
    @classmethod
    def _ip_addresses(cls, addresses: list[str] | None) -> list[str] | None:
        for address in addresses or []:
            ipaddress.ip_address(address)  # ValueError names the bad address
        return addresses


class MjpegConfig(_Model):
    """The MJPEG live view (/api/cameras/{name}/mjpeg): a JPEG encoded per viewer and frame."""

    max_viewers: int = Field(
        16,
        ge=1,
        le=1024,
        description="MJPEG streams at once, over all cameras; more are refused (503).",
    )


class ServerConfig(_Model):
    """The HTTP server: /metrics, /healthz, /readyz, /api, the live view page."""

    enabled: bool = Field(True, description="Serve HTTP at all.")
    host: str = Field("127.0.0.1", description="Bind address; 0.0.0.0 exposes it to the network.")
    port: int = Field(8686, ge=0, le=65535, description="TCP port (0: any free port).")
    token: SecretStr | None = Field(
        None,
        description="Bearer token every route but /healthz then wants (the page: ?token=); "
        "use ${VAR}. Default: none.",
    )
    webrtc: WebRtcConfig = Field(default_factory=WebRtcConfig, description="The WebRTC live view.")
    mjpeg: MjpegConfig = Field(default_factory=MjpegConfig, description="The MJPEG live view.")

    @field_validator("token")
    @classmethod
    def _long_enough(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and len(token.get_secret_value()) < 8:
            raise ValueError("the token must be at least 8 characters")
        return token


class LoggingConfig(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")


class Config(_Model):
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

    @field_validator("cameras")
    @classmethod
    def _unique_names(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        seen: set[str] = set()
        for camera in cameras:
            if camera.name in seen:
                raise ValueError(f"duplicate camera name {camera.name!r}")
            seen.add(camera.name)
        return cameras


# ---------------------------------------------------------------------------- loading

_VAR = re.compile(r"\$(\$)|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _path_str(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif _is_union_tag(loc, i):
            continue  # pydantic puts the union's tag into the path; users never wrote it
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _is_union_tag(loc: tuple[int | str, ...], i: int) -> bool:
    item = loc[i]
    if i > 0 and loc[i - 1] == "source" and item in SOURCE_KINDS:
        return True
    return i > 1 and loc[i - 2] == "sinks" and item in SINK_KINDS


def _substitute(
    node: Any, env: Mapping[str, str], loc: tuple[int | str, ...], problems: list[str]
) -> Any:
    """Replace ${VAR} in every string of the parsed tree ($$ is a literal $)."""
    if isinstance(node, dict):
        return {k: _substitute(v, env, (*loc, k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, env, (*loc, i), problems) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        name = match.group(2)
        if name not in env:
            problems.append(f"{_path_str(loc)}: environment variable {name} is not set")
            return ""
        return env[name]

    return _VAR.sub(replace, node)


def _check_paths(config: Config, base: Path) -> tuple[Config, list[str]]:
    """Resolve file paths against the config's folder and report files that are missing."""
    problems: list[str] = []
    cameras = []
    for i, camera in enumerate(config.cameras):
        source = camera.source
        if isinstance(source, FileSource):
            path = source.path if source.path.is_absolute() else base / source.path
            if not path.is_file():
                problems.append(f"cameras[{i}].source.path: file not found: {path}")
            camera = camera.model_copy(update={"source": source.model_copy(update={"path": path})})
        cameras.append(camera)
    return config.model_copy(update={"cameras": cameras}), problems


def parse_config(
    data: Any,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    check_paths: bool = True,
) -> Config:
    """Validate an already parsed YAML document. Raises ``ConfigError``."""
    if data is None:
        raise ConfigError(source, ["(top level): the file is empty"])
    if not isinstance(data, dict):
        raise ConfigError(source, [f"(top level): expected a mapping, got {type(data).__name__}"])
    problems: list[str] = []
    data = _substitute(data, os.environ if env is None else env, (), problems)
    if problems:
        raise ConfigError(source, problems)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [_format_error(e) for e in exc.errors()]) from None
    base = base_dir or Path.cwd()
    if not config.models.dir.is_absolute():
        models = config.models.model_copy(update={"dir": base / config.models.dir})
        config = config.model_copy(update={"models": models})
    if not config.alerts.dir.is_absolute():
        alerts = config.alerts.model_copy(update={"dir": base / config.alerts.dir})
        config = config.model_copy(update={"alerts": alerts})
    if check_paths:
        config, problems = _check_paths(config, base)
        if problems:
            raise ConfigError(source, problems)
    return config


def _format_error(error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        # Two unions have a `kind`: a camera's source, and each of alerts.sinks[i].
        what, kinds = ("sink", SINK_KINDS) if "sinks" in error["loc"] else ("source", SOURCE_KINDS)
        problem = (
            f"unknown {what} kind" if error["type"] == "union_tag_invalid" else "missing 'kind'"
        )
        message = f"{problem}; expected one of {', '.join(kinds)}"
    elif error["type"] == "finite_number":
        message = f"Input should be a finite number, not {error['input']!r}"
    return f"{_path_str(tuple(error['loc']))}: {redact(message)}"


_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _decode(raw: bytes, source: str) -> str:
    """The text of a config file, which must be UTF-8 (a UTF-8 byte-order mark is allowed:
    Windows editors write one). Raises ``ConfigError`` saying what the bytes are instead."""
    if raw.startswith(_UTF16_BOMS):
        problem = "the file is UTF-16 (it starts with a UTF-16 byte-order mark)"
        raise ConfigError(source, [f"(file): {problem}; save it as UTF-8"])
    # NUL is valid UTF-8 but never in text: UTF-16 without a byte-order mark, or binary.
    bad = raw.find(b"\x00")
    try:
        if bad < 0:
            return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = exc.start
    line = raw.count(b"\n", 0, bad) + 1
    problem = f"not UTF-8 text: byte 0x{raw[bad]:02x} at line {line} (offset {bad})"
    raise ConfigError(source, [f"(file): {problem}; save it as UTF-8"])


def load_config(
    path: str | Path, *, env: Mapping[str, str] | None = None, check_paths: bool = True
) -> Config:
    """Read, substitute and validate a YAML config file. Raises ``ConfigError``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"(file): cannot read: {exc.strerror or exc}"]) from None
    text = _decode(raw, str(path))
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(path), [f"{where}: invalid YAML: {problem}"]) from None
    return parse_config(
        data, source=str(path), base_dir=path.resolve().parent, env=env, check_paths=check_paths
    )


def camera(config: Config, name: str) -> CameraConfig:
    """The camera called ``name``. Raises ConfigError listing the known names."""
    for cam in config.cameras:
        if cam.name == name:
            return cam
    known = ", ".join(c.name for c in config.cameras)
    raise ConfigError("--camera", [f"no camera named {name!r}; cameras: {known}"])


def summary(config: Config) -> str:
    """One line describing a valid config."""
    cams = ", ".join(f"{c.name} ({c.source.kind})" for c in config.cameras)
    return f"{len(config.cameras)} camera(s): {cams}"
