"""Video sources: open a stream, then decode frames one by one into a caller's buffer.

Every source has the same small interface (``open``, ``read_into``, ``close``) so the capture
worker can supervise them all alike. PyAV (FFmpeg) reads RTSP, HTTP MJPEG, files and V4L2 webcams;
the synthetic scene renders its frames. ``make_source`` is the registry from config kind to
factory.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import av
import numpy as np

from streamdet.capture.clips import Recorder
from streamdet.capture.convert import av_frame_into, bgr_into
from streamdet.capture.synthetic import SceneFault, ScheduledAnomaly, SyntheticScene
from streamdet.config import (
    FileSource,
    MjpegSource,
    RtspSource,
    SourceConfig,
    SyntheticSource,
    WebcamSource,
)
from streamdet.errors import SourceError
from streamdet.log import redact

_DEFAULT_FPS = 25.0  # FFmpeg's own guess for a stream that declares no rate


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What an opened source told us about itself."""

    codec: str
    width: int
    height: int
    fps: float | None  # declared frame rate, if the stream has one
    live: bool  # a live stream's end is a disconnect, a file's end is the end


@dataclass(frozen=True, slots=True)
class FrameMeta:
    """Timing and size of one decoded frame."""

    pts_s: float | None
    index: int  # frames decoded since this source was opened
    # As decoded, before conversion: a camera may change resolution mid-stream (new SPS).
    width: int | None = None
    height: int | None = None
    arrived: float | None = None  # time.time() when its packet came, before the decoder's delay


class VideoSource(Protocol):
    """One connection to a camera. Not thread-safe: used by its capture thread only."""

    description: str  # safe to print: credentials redacted

    def open(self) -> StreamInfo: ...

    def read_into(self, out: np.ndarray) -> FrameMeta | None:
        """Decode the next frame into ``out``; None at the end of a file. Raises SourceError."""
        ...

    def close(self) -> None: ...

    def record_to(self, recorder: Recorder | None) -> None:
        """Also hand footage to ``recorder`` (for event clips) from the next ``open`` on."""
        ...


class _Pacer:
    """Sleeps so that frames come out at stream time, like a live camera would send them."""

    def __init__(self) -> None:
        self._origin: float | None = None

    def wait(self, stream_s: float) -> None:
        now = time.monotonic()
        if self._origin is None or stream_s < 0:
            self._origin = now - max(stream_s, 0.0)
            return
        delay = self._origin + stream_s - now
        if delay > 0:
            time.sleep(delay)
        elif delay < -1.0:  # far behind (e.g. a slow consumer): do not burst to catch up
            self._origin = now - stream_s


class PyAVSource:
    """RTSP, HTTP MJPEG, file or V4L2 device, decoded with PyAV."""

    def __init__(
        self,
        target: str,
        *,
        fmt: str | None = None,
        options: dict[str, str] | None = None,
        timeout: tuple[float, float | None] | None = None,
        live: bool = True,
        loop: bool = False,
        realtime: bool = False,
        fps: float | None = None,
    ) -> None:
        self.target = target
        self.description = redact(target)
        self._fmt = fmt
        self._options = options or {}
        self._timeout = timeout
        self._live = live
        self._loop = loop
        self._pacer = _Pacer() if realtime else None
        self._fps = fps  # the file's frame rate as configured; else the stream's (at open)
        self._frame_s = 1.0 / (fps or _DEFAULT_FPS)
        self._container: Any = None
        self._stream: Any = None
        self._frames: Iterator[Any] | None = None
        self._index = 0
        self._pts_offset = 0.0  # added after each loop of a file so that time keeps increasing
        self._last_pts = 0.0
        self._recorder: Recorder | None = None
        self._arrivals: dict[int, float] = {}  # packet pts -> time.time() it came, until decoded
        self.fast_decode = False  # skip the H.264/HEVC deblocking filter (set before open)
        self.decoder_threads = 0  # 0: FFmpeg's choice (set before open)

    def record_to(self, recorder: Recorder | None) -> None:
        self._recorder = recorder

    def open(self) -> StreamInfo:
        started = time.monotonic()
        try:
            self._open_container()
        except (av.FFmpegError, OSError, IndexError) as exc:
            self.close()
            why = self._open_failure(exc, started)
            raise SourceError(f"cannot open {self.description}: {why}") from exc
        self._frames = self._decoded()
        rate = self._stream.average_rate or self._stream.guessed_rate
        fps = self._fps or (float(rate) if rate else None)
        self._frame_s = 1.0 / (fps or _DEFAULT_FPS)
        ctx = self._stream.codec_context
        return StreamInfo(
            codec=ctx.name, width=ctx.width, height=ctx.height, fps=fps, live=self._live
        )

    def _open_container(self) -> None:
        self._container = av.open(
            self.target, format=self._fmt, options=self._options, timeout=self._timeout
        )
        self._stream = self._container.streams.video[0]
        set_decoder_threads(self._stream, self.decoder_threads)
        if self.fast_decode:
            # ~1.5x less decode CPU for 720p H.264 (benchmarks/capture.py); the blocking it
            # leaves is far below a pixel at the models' size, and clips copy packets
            self._stream.codec_context.options = {"skip_loop_filter": "all"}

    def _open_failure(self, exc: BaseException, started: float) -> str:
        """Why the open failed. When a timeout cut it short (PyAV's open bound, or FFmpeg's
        socket timeout over RTSP/TCP), FFmpeg reports whatever step it was in, often "Invalid
        data found when processing input": say that it timed out."""
        bounds = [self._timeout[0]] if self._timeout else []
        if "timeout" in self._options:  # FFmpeg's socket timeout, microseconds
            bounds.append(int(self._options["timeout"]) / 1e6)
        elapsed = time.monotonic() - started
        cut_short = isinstance(exc, av.InvalidDataError | av.ExitError | TimeoutError)
        if cut_short and bounds and elapsed >= 0.95 * min(bounds):
            return f"timed out: no complete answer within {elapsed:.1f} s"
        return _describe(exc)  # a real answer (refused, 401, 404, ...) is kept as it was

    def read_into(self, out: np.ndarray) -> FrameMeta | None:
        frame = self._next_frame()
        if frame is None:
            return None
        pts = self._frame_time(frame)
        if pts is not None:
            self._last_pts = pts
            if self._pacer is not None:
                self._pacer.wait(pts)
        av_frame_into(frame, out)
        if self._recorder is not None:
            self._recorder.frame(frame)
        self._index += 1
        arrived = self._arrivals.pop(frame.pts, None) if frame.pts is not None else None
        return FrameMeta(pts, self._index - 1, frame.width, frame.height, arrived)

    def _frame_time(self, frame: Any) -> float | None:
        """The frame's stream time in seconds, increasing across loops of a file."""
        if frame.time is not None:
            return float(frame.time) + self._pts_offset
        if self._live:
            return None
        # A raw stream (.h264, .h265) has no timestamps: frame n of a file is at n frame
        # intervals, so that it is paced, and rate-limited, like the camera that recorded it.
        return self._index * self._frame_s

    def _decoded(self) -> Iterator[Any]:
        """Demux and decode; each packet then goes to the clip recorder (its filter takes the
        packet's data, so it comes after the decoder)."""
        if self._recorder is not None:
            self._recorder.begin_stream(self._stream)
        self._arrivals.clear()
        for packet in self._container.demux(self._stream):
            if packet.pts is not None:  # its frame takes it; a frame never decoded ages out
                if len(self._arrivals) >= 64:
                    del self._arrivals[next(iter(self._arrivals))]
                self._arrivals[packet.pts] = time.time()
            frames = packet.decode()
            if self._recorder is not None and packet.size:
                self._recorder.packet(packet)
            yield from frames

    def _next_frame(self) -> Any:
        if self._frames is None:
            raise SourceError(f"{self.description} is not open")
        for attempt in range(2):
            try:
                return next(self._frames)
            except StopIteration:
                if self._live:
                    # FFmpeg ends a dropped RTSP session as if it were the end of a file.
                    raise SourceError(f"{self.description}: stream ended") from None
                if not self._loop or attempt == 1 or self._index == 0:
                    return None
                self._rewind()
            except (av.FFmpegError, OSError) as exc:
                raise SourceError(f"{self.description}: {_describe(exc)}") from exc
        return None

    def _rewind(self) -> None:
        """Back to the file's start: a seek, or, for a raw stream that cannot seek (FFmpeg
        answers EPERM), the file opened anew."""
        try:
            self._container.seek(0)
        except (av.FFmpegError, OSError):
            self.close()
            try:
                self._open_container()
            except (av.FFmpegError, OSError, IndexError) as exc:
                raise SourceError(f"cannot reopen {self.description}: {_describe(exc)}") from exc
        self._frames = self._decoded()
        self._pts_offset = self._last_pts + self._frame_s

    def close(self) -> None:
        container, self._container, self._frames = self._container, None, None
        if container is not None:
            # Closing a broken connection may fail again; there is nothing left to free then.
            with contextlib.suppress(av.FFmpegError, OSError):
                container.close()


def _describe(exc: BaseException) -> str:
    return redact(str(exc) or type(exc).__name__)


class SyntheticVideoSource:
    """The procedural scene as a camera: frame n at n / fps seconds."""

    def __init__(self, config: SyntheticSource) -> None:
        self.description = f"synthetic:seed={config.seed}"
        self.config = config
        self.scene = SyntheticScene(
            width=config.width,
            height=config.height,
            fps=config.fps,
            seed=config.seed,
            people_per_minute=config.people_per_minute,
            anomalies=[ScheduledAnomaly(a.kind, a.start_s, a.duration_s) for a in config.anomalies],
            faults=[SceneFault(f.kind, f.start_s, f.duration_s, f.amount) for f in config.faults],
        )
        self._canvas = np.empty((config.height, config.width, 3), np.uint8)
        self._scratch = np.empty((config.height, config.width), np.uint8)
        self._pacer = _Pacer() if config.realtime else None
        self._n = 0
        self._recorder: Recorder | None = None

    def record_to(self, recorder: Recorder | None) -> None:
        self._recorder = recorder

    def open(self) -> StreamInfo:
        # A reconnect continues the scene where it was, as a real camera's world goes on.
        if self._recorder is not None:
            self._recorder.begin_frames(self.config.width, self.config.height)
        return StreamInfo("synthetic", self.config.width, self.config.height, self.config.fps, True)

    def read_into(self, out: np.ndarray) -> FrameMeta:
        n = self._n
        pts = n / self.config.fps
        if self._pacer is not None:
            self._pacer.wait(pts)
        self.scene.render(n, self._canvas)
        bgr_into(self._canvas, out, self._scratch)
        if self._recorder is not None:
            self._recorder.frame(self._canvas)
        self._n = n + 1
        return FrameMeta(pts, n, self.config.width, self.config.height)

    def close(self) -> None:
        """Nothing to release."""


def rtsp_options(transport: str) -> dict[str, str]:
    """FFmpeg options for RTSP. Probing less than the default 5 s starts a stream ~0.6 s sooner
    (RTSP's SDP already describes it) yet still fits a large keyframe of a 4K camera."""
    return {"rtsp_transport": transport, "analyzeduration": "500000", "probesize": "500000"}


def socket_timeouts(open_s: float, read_s: float) -> dict[str, Any]:
    """``options`` and ``timeout`` that bound a TCP stream's reads in FFmpeg itself.

    PyAV bounds a read with an interrupt callback that FFmpeg calls every time it waits on a
    socket, and that callback takes the GIL: thousands of GIL hand-offs a second with 32
    cameras, each one stalling the Python thread that held it. Demuxing RTSP alone cost 0.31 ms
    of CPU per frame with it and 0.12 without, and at 28-32 cameras the pipeline missed fewer
    frames in 5 of 6 paired runs (benchmarks/pipeline.py). FFmpeg's own socket timeout (its
    ``timeout`` option, microseconds) bounds the reads instead; PyAV bounds only the open.
    Half of ``read_s``: FFmpeg's RTSP gives up on a silent socket after about twice the time it
    is handed (HTTP after about once, as PyAV's bound did before).
    """
    return {"options": {"timeout": str(round(read_s / 2 * 1e6))}, "timeout": (open_s, None)}


def rtsp_open_args(transport: str, open_s: float, read_s: float) -> dict[str, Any]:
    """``options`` and ``timeout`` for opening an RTSP URL (``PyAVSource`` or ``av.open``):
    over TCP, ``socket_timeouts``; over UDP FFmpeg's own wait is a fixed 10 s, so PyAV's read
    bound stays."""
    options = rtsp_options(transport)
    if transport != "tcp":
        return {"options": options, "timeout": av_timeout(open_s, read_s)}
    bounds = socket_timeouts(open_s, read_s)
    return {"options": {**options, **bounds["options"]}, "timeout": bounds["timeout"]}


def _rtsp(config: RtspSource) -> VideoSource:
    args = rtsp_open_args(config.transport, config.open_timeout_s, config.read_timeout_s)
    return PyAVSource(config.url, **args)


def _mjpeg(config: MjpegSource) -> VideoSource:
    bounds = socket_timeouts(config.open_timeout_s, config.read_timeout_s)
    return PyAVSource(config.url, fmt="mpjpeg", **bounds)


def _file(config: FileSource) -> VideoSource:
    return PyAVSource(
        str(Path(config.path)),
        live=False,
        loop=config.loop,
        realtime=config.realtime,
        fps=config.fps,
    )


def _webcam(config: WebcamSource) -> VideoSource:
    options: dict[str, str] = {}
    if config.width and config.height:
        options["video_size"] = f"{config.width}x{config.height}"
    if config.fps:
        options["framerate"] = f"{config.fps:g}"
    return PyAVSource(config.device, fmt="v4l2", options=options)


def av_timeout(open_s: float, read_s: float) -> tuple[float, float]:
    """PyAV's (open, read) timeouts. FFmpeg gives up on a silent socket after about twice the
    read timeout it is handed."""
    return (open_s, read_s / 2)


_FACTORIES: dict[str, Callable[[Any], VideoSource]] = {
    "rtsp": _rtsp,
    "mjpeg": _mjpeg,
    "file": _file,
    "webcam": _webcam,
    "synthetic": SyntheticVideoSource,
}


def make_source(
    config: SourceConfig, *, fast_decode: bool = False, decoder_threads: int = 0
) -> VideoSource:
    """Build the source a camera's config asks for (a fresh, unopened connection).
    ``fast_decode``: decoders skip the deblocking filter (``capture.fast_decode``);
    ``decoder_threads``: threads per decoder, 0 for FFmpeg's choice (``resolve_decoder_threads``).
    """
    source = _FACTORIES[config.kind](config)
    if isinstance(source, PyAVSource):
        source.fast_decode = fast_decode
        source.decoder_threads = decoder_threads
    return source


def resolve_decoder_threads(setting: int | str, cameras: int, cores: int | None = None) -> int:
    """``capture.decoder_threads`` for ``cameras`` decoding at once: "auto" is one thread each
    when there are at least as many cameras as cores, else 0 (FFmpeg's choice)."""
    if setting != "auto":
        return int(setting)
    cores = cores or os.cpu_count() or 1
    return 1 if cameras >= cores else 0


def set_decoder_threads(stream: Any, threads: int) -> None:
    """Before the first packet: ``threads`` decoding threads for ``stream`` (0: FFmpeg's
    choice, frame and slice threads)."""
    stream.thread_type = "AUTO"
    if threads:
        stream.codec_context.thread_count = threads
