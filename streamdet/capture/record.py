"""A camera's record stream: its packets demuxed, never decoded, into the camera's clip buffer.

An IP camera usually sends two streams: a small substream, cheap to decode, that the detect
``source`` reads and the models score, and the full-resolution main stream, a few times dearer
to decode. With a camera's optional ``record`` source, the main stream is only demuxed here
(PyAV, no decoder) and its H.264/H.265 packets copied into the ``ClipBuffer`` by a
``Recorder``: event clips are those packets remuxed, and a snapshot decodes one GOP of them
(from the keyframe before the peak up to it) on demand (``alert/peakframe.py``).

The reader has its own thread (``record:<camera>``) beside the detect worker's, its own
reconnects (capped exponential backoff plus jitter) and its own status; a record stream that
fails is reported (redacted) and retried while detection goes on.
"""

from __future__ import annotations

import collections
import contextlib
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import av

from streamdet.capture.clips import Recorder
from streamdet.capture.sources import rtsp_open_args
from streamdet.config import BackoffConfig, RtspSource
from streamdet.errors import SourceError
from streamdet.frames import SourceState
from streamdet.log import camera_logger, redact

# Codecs whose packets a ``Recorder`` keeps as they are (other codecs would need decoding).
KEPT_CODECS = ("h264", "hevc", "mjpeg")


@dataclass(frozen=True)
class RecordStatus:
    """A snapshot of one camera's record stream, safe to show (credentials redacted)."""

    source: str
    state: SourceState
    packets: int
    reconnects: int
    codec: str | None
    resolution: tuple[int, int] | None
    seconds_since_packet: float | None
    errors: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "state": self.state.value,
            "packets": self.packets,
            "reconnects": self.reconnects,
            "codec": self.codec,
            "resolution": self.resolution,
            "seconds_since_packet": self.seconds_since_packet,
            "last_error": self.errors[-1] if self.errors else None,
        }


def open_record(source: RtspSource) -> Any:
    """The record stream opened with the same RTSP options and timeouts as a detect source."""
    args = rtsp_open_args(source.transport, source.open_timeout_s, source.read_timeout_s)
    return av.open(source.url, **args)


class RecordReader:
    """Owns one camera's record thread: connect, copy packets into ``recorder``, reconnect."""

    def __init__(
        self,
        camera: str,
        source: RtspSource,
        backoff: BackoffConfig,
        recorder: Recorder,
    ) -> None:
        self.camera = camera
        self.source = source
        self.description = redact(source.url)
        self.recorder = recorder
        self._backoff = backoff
        self._log = camera_logger(__name__, camera)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._random = random.Random()
        self.state = SourceState.NOT_STARTED
        self.packets = 0
        self.packets_in_session = 0  # since the current connection opened
        self.reconnects = 0
        self.codec: str | None = None
        self.resolution: tuple[int, int] | None = None
        self.last_packet: float | None = None  # time.monotonic()
        self.errors: collections.deque[str] = collections.deque(maxlen=10)

    # ----------------------------------------------------------------- lifecycle
    def start(self) -> None:
        """Start the record thread (no-op if it runs)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"record:{self.camera}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to finish and wait for it (idempotent). A read in progress ends
        within the stream's read timeout."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                self._log.warning("record thread did not stop within %.1f s", timeout)
        if self.state is not SourceState.NOT_STARTED:
            self._set_state(SourceState.STOPPED)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def status(self) -> RecordStatus:
        last = self.last_packet
        return RecordStatus(
            source=self.description,
            state=self.state,
            packets=self.packets,
            reconnects=self.reconnects,
            codec=self.codec,
            resolution=self.resolution,
            seconds_since_packet=None if last is None else time.monotonic() - last,
            errors=tuple(self.errors),
        )

    def follow_delay(self, seconds: float) -> None:
        """The detect worker's newest frame came ``seconds`` after its packet (the decoder's
        delay, e.g. frame threads): smoothed into the buffer, to find a frame's record chunk."""
        buffer = self.recorder.buffer
        buffer.detect_delay_s += 0.1 * (seconds - buffer.detect_delay_s)

    def _set_state(self, state: SourceState) -> None:
        previous, self.state = self.state, state
        if previous is not state:
            self._log.info("record stream %s -> %s", previous.value, state.value)

    def _error(self, message: str) -> None:
        message = redact(message)
        self._log.warning("record stream: %s", message)
        self.errors.append(f"{time.strftime('%H:%M:%S')} {message}")

    # ----------------------------------------------------------------- the thread
    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            first = self.state is SourceState.NOT_STARTED
            self._set_state(SourceState.CONNECTING if first else SourceState.RECONNECTING)
            self.reconnects += not first
            try:
                had_packets = self._session()
            except Exception as exc:  # an odd stream: keep retrying, detection is not affected
                self._log.exception("record stream: unexpected error")
                self.errors.append(f"{time.strftime('%H:%M:%S')} {redact(repr(exc))}")
                had_packets = False
            if self._stop.is_set():
                break
            failures = 0 if had_packets else failures + 1
            self._stop.wait(self._delay(failures))

    def _delay(self, failures: int) -> float:
        """Capped exponential backoff with jitter, as the detect worker's reconnects."""
        backoff = self._backoff
        delay = min(backoff.max_s, backoff.initial_s * 2.0 ** max(failures - 1, 0))
        return delay * (1.0 - backoff.jitter * self._random.random())

    def _session(self) -> bool:
        """One connection, until it ends, fails (reported) or the reader stops; True when
        packets came."""
        try:
            container = open_record(self.source)
        except (av.FFmpegError, OSError) as exc:
            self._error(f"cannot open {self.description}: {exc}")
            return False
        self.packets_in_session = 0
        try:
            self._copy(container)
            if not self._stop.is_set():
                self._error(f"{self.description}: stream ended")
        except SourceError as exc:
            self._error(str(exc))
        except (av.FFmpegError, OSError) as exc:
            self._error(f"{self.description}: {exc}")
        finally:
            # Closing a broken connection may fail again; there is nothing left to free then.
            with contextlib.suppress(av.FFmpegError, OSError):
                container.close()
        return self.packets_in_session > 0

    def _copy(self, container: Any) -> None:
        """Copy the stream's packets into the recorder until it ends or the reader stops."""
        if not container.streams.video:
            raise SourceError(f"{self.description}: no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx.name not in KEPT_CODECS:
            raise SourceError(
                f"{self.description}: {ctx.name} packets cannot be kept for clips"
                f" (expected one of {', '.join(KEPT_CODECS)})"
            )
        self.codec, self.resolution = ctx.name, (ctx.width, ctx.height)
        self.recorder.begin_stream(stream)
        for packet in container.demux(stream):
            if self._stop.is_set():
                break
            if not packet.size:
                continue  # the demuxer's flush packet at the end
            self.recorder.packet(packet)
            self.packets_in_session += 1
            self.packets += 1
            self.last_packet = time.monotonic()
            if self.packets_in_session == 1:
                self._set_state(SourceState.RUNNING)
