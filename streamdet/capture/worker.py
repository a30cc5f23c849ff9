"""One camera's capture thread: connect, decode into the ring, reconnect on failure.

The worker is a small state machine (``SourceState``). Each concern is a method: connecting with
capped exponential backoff plus jitter (for a network camera, cut short as soon as its closed
port accepts again: ``returnprobe``), pumping frames, marking frames for analysis at the
camera's analysis rate, and recording errors. The stage's watchdog calls ``check_stall`` from its
own thread; a stalled worker is told to reconnect, and every blocking read is bounded by the
source's read timeout, so a frozen camera cannot hold its thread for long.
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from streamdet.capture.clips import ClipBuffer, Recorder
from streamdet.capture.record import RecordReader, RecordStatus
from streamdet.capture.returnprobe import ReturnProbe, tcp_endpoint
from streamdet.capture.ring import FrameRing
from streamdet.capture.sources import FrameMeta, StreamInfo, VideoSource, make_source
from streamdet.config import CameraConfig, CaptureConfig, ClipsConfig
from streamdet.errors import SourceError
from streamdet.frames import SourceState
from streamdet.log import camera_logger, redact

_DEFAULT_FPS = 25.0


@dataclass
class CameraStats:
    """Counters and gauges of one camera, read by the status API, metrics and the demo."""

    frames: int = 0  # decoded and written into the ring
    analysable: int = 0  # of those, marked for scoring by the analysis rate limit
    reconnects: int = 0  # connection attempts after the first
    connect_failures: int = 0
    stalls: int = 0
    last_frame_monotonic: float | None = None
    first_frame_s: float | None = None  # time from connect start to the first frame, last connect
    fps: float = 0.0  # decoded frames per second, smoothed over about a second
    stream: StreamInfo | None = None
    resolution: tuple[int, int] | None = None  # of the newest decoded frame (width, height)
    errors: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=10))


class _RateLimiter:
    """Passes at most ``rate`` frames per second of stream time (wall time when there is none)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next: float | None = None

    def allow(self, t: float) -> bool:
        if self._next is not None and self._next - self.interval * 2 > t:
            self._next = None  # time went backwards (new connection, file loop): start over
        if self._next is None or t >= self._next - 1e-6:
            # Advance on the grid, but never owe a burst after a gap.
            base = t if self._next is None or t - self._next > self.interval else self._next
            self._next = base + self.interval
            return True
        return False


def lower_priority(nice: int) -> None:
    """Raise the calling thread's niceness by ``nice`` (Linux: per thread; the decoder threads
    FFmpeg starts from it later inherit it). Elsewhere, or if refused, nothing changes."""
    if nice <= 0 or not hasattr(os, "setpriority"):
        return
    tid = threading.get_native_id()
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)


class CameraWorker:
    """Owns one camera's thread, its source connection and the writer side of its ring."""

    def __init__(
        self,
        camera: CameraConfig,
        capture: CaptureConfig,
        ring: FrameRing,
        source_factory: Callable[[CameraConfig], VideoSource] | None = None,
        recorder: Recorder | None = None,
        decoder_threads: int = 0,
        notify: Callable[[], None] | None = None,
    ) -> None:
        self.camera = camera
        self.recorder = recorder  # keeps footage for event clips
        self._notify = notify  # wakes the readers after a frame for analysis
        self.name = camera.name
        self.ring = ring
        self.stats = CameraStats()
        self.created = time.time()  # which run of the camera this is (a reload starts a new one)
        self._capture = capture
        self._factory = source_factory or (
            lambda cam: make_source(
                cam.source, fast_decode=capture.fast_decode, decoder_threads=decoder_threads
            )
        )
        self._log = camera_logger(__name__, camera.name)
        self._state = SourceState.NOT_STARTED
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._reconnect = threading.Event()
        self._thread: threading.Thread | None = None
        self._limiter = _RateLimiter(camera.analysis_fps)
        self._random = random.Random()
        endpoint = tcp_endpoint(camera.source)
        self._probe = None if endpoint is None else ReturnProbe(endpoint, self._stop, self._random)
        self._session_frames = 0
        # With a record stream, footage comes from it (full resolution), not from this source.
        self.record = _record_reader(camera, capture, recorder)

    # ----------------------------------------------------------------- lifecycle
    @property
    def state(self) -> SourceState:
        return self._state

    def start(self) -> None:
        """Start the capture thread (no-op if it runs)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"capture:{self.name}", daemon=True)
        self._thread.start()
        if self.record is not None:
            self.record.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to finish and wait for it (idempotent)."""
        self._stop.set()
        if self.record is not None:
            self.record.stop(timeout)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                self._log.warning("capture thread did not stop within %.1f s", timeout)
        if self._state not in (SourceState.FAILED, SourceState.NOT_STARTED):
            self._set_state(SourceState.STOPPED)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _set_state(self, state: SourceState) -> None:
        with self._state_lock:
            previous, self._state = self._state, state
        if previous is not state:
            self._log.info("%s -> %s", previous.value, state.value)

    def record_status(self) -> RecordStatus | None:
        """Its record stream's status, if it has one."""
        return None if self.record is None else self.record.status()

    def record_error(self, message: str) -> None:
        """Keep a redacted, timestamped error line for the status API."""
        line = f"{time.strftime('%H:%M:%S')} {redact(message)}"
        self.stats.errors.append(line)

    # ----------------------------------------------------------------- the thread
    def _run(self) -> None:
        lower_priority(self._capture.nice)
        failures = 0
        first = True
        try:
            while not self._stop.is_set():
                self._set_state(SourceState.CONNECTING if first else SourceState.RECONNECTING)
                if not first:
                    self.stats.reconnects += 1
                first = False
                outcome = self._session()
                if outcome == "ended":
                    self._set_state(SourceState.STOPPED)
                    return
                failures = 0 if outcome == "had_frames" else failures + 1
                limit = self._capture.backoff.max_attempts
                if limit and failures >= limit:
                    self._log.error("giving up after %d failed attempts in a row", failures)
                    self._set_state(SourceState.FAILED)
                    return
                self._pause(failures)
        except Exception as exc:  # only a bug in this loop itself gets here
            self._log.exception("capture thread crashed; the watchdog restarts it")
            self.record_error(f"crashed: {exc!r}")

    def _backoff_delay(self, failures: int) -> float:
        backoff = self._capture.backoff
        if failures == 0:
            return backoff.initial_s * (1.0 - backoff.jitter * self._random.random())
        delay = min(backoff.max_s, backoff.initial_s * 2.0 ** (failures - 1))
        return delay * (1.0 - backoff.jitter * self._random.random())

    def _pause(self, failures: int) -> None:
        """Wait before the next open: the backoff delay, or less when the camera's port,
        closed until now, accepts again (the open backs off, the cheap probe does not)."""
        delay = self._backoff_delay(failures)
        if self._probe is None:
            self._stop.wait(delay)
        elif self._probe.wait(delay):
            host, port = self._probe.endpoint
            self._log.info("%s:%d accepts connections again: opening now", host, port)

    def _session(self) -> str:
        """One connection: 'ended' (file finished or stop), 'had_frames' or 'failed'."""
        self._reconnect.clear()
        self._session_frames = 0
        self.ring.new_segment()
        started = time.monotonic()
        source: VideoSource | None = None
        try:
            source = self._factory(self.camera)
            source.record_to(self.recorder if self.record is None else None)
            self.stats.stream = stream = source.open()
            self.stats.resolution = (stream.width, stream.height)
        except Exception as exc:  # SourceError, or anything odd a library raised while opening
            self.stats.connect_failures += 1
            self._log.warning("%s", exc)
            self.record_error(str(exc) if isinstance(exc, SourceError) else f"open failed: {exc!r}")
            if source is not None:
                source.close()
            return "failed"
        try:
            return self._pump(source, started)
        except SourceError as exc:
            self._log.warning("%s", exc)
            self.record_error(str(exc))
        except Exception as exc:  # a bug or an odd stream: keep this camera (and the rest) going
            self._log.exception("unexpected error while decoding")
            self.record_error(f"unexpected error: {exc!r}")
        finally:
            source.close()
        return "had_frames" if self._session_frames else "failed"

    def _pump(self, source: VideoSource, started: float) -> str:
        window_start, window_frames = time.monotonic(), 0
        while not self._stop.is_set():
            if self._reconnect.is_set():
                raise SourceError("stalled: reconnecting")
            meta = source.read_into(self.ring.writable())
            if meta is None:
                return "ended"
            now_wall, now = time.time(), time.monotonic()
            analyse = self._limiter.allow(meta.pts_s if meta.pts_s is not None else now)
            self.ring.commit(now_wall, meta.pts_s, analyse)
            if analyse and self._notify is not None:
                self._notify()
            self._follow_resolution(meta)
            if self.record is not None and meta.arrived is not None:
                self.record.follow_delay(now_wall - meta.arrived)
            self.stats.frames += 1
            self.stats.analysable += analyse
            self.stats.last_frame_monotonic = now
            self._session_frames += 1
            if self._session_frames == 1:
                self.stats.first_frame_s = now - started
                self._set_state(SourceState.RUNNING)
            window_frames += 1
            if now - window_start >= 1.0:
                self.stats.fps = window_frames / (now - window_start)
                window_start, window_frames = now, 0
        return "ended"

    def _follow_resolution(self, meta: FrameMeta) -> None:
        """Keep ``stats.resolution`` at the decoded frames' size, which the stream's header
        gave only at open: a camera can switch resolution (a new profile) mid-stream."""
        if meta.width is None or meta.height is None:
            return
        known = self.stats.resolution
        if known is None or known[0] != meta.width or known[1] != meta.height:
            self.stats.resolution = (meta.width, meta.height)
            if known is not None:
                self._log.info(
                    "resolution %dx%d -> %dx%d", known[0], known[1], meta.width, meta.height
                )

    # ----------------------------------------------------------------- watchdog side
    def stall_after_s(self) -> float:
        """How long without a frame counts as a stall for this camera."""
        fps = (self.stats.stream.fps if self.stats.stream else None) or _DEFAULT_FPS
        cfg = self._capture
        return min(cfg.max_stall_s, max(cfg.min_stall_s, cfg.stall_intervals / fps))

    def check_stall(self, now: float) -> bool:
        """Called by the watchdog: ask for a reconnect if RUNNING without frames for too long."""
        last = self.stats.last_frame_monotonic
        if self._state is not SourceState.RUNNING or last is None or self._reconnect.is_set():
            return False
        silent = now - last
        if silent < self.stall_after_s():
            return False
        self.stats.stalls += 1
        self.stats.fps = 0.0
        self._log.warning("no frame for %.1f s: reconnecting", silent)
        self.record_error(f"stalled: no frame for {silent:.1f} s")
        self._reconnect.set()
        self._set_state(SourceState.RECONNECTING)
        return True

    def revive(self) -> bool:
        """Called by the watchdog: restart the thread if it died without reaching a final
        state (a bug in its loop); True if it did."""
        if self.is_alive() or self._state in (SourceState.STOPPED, SourceState.FAILED):
            return False
        self._log.error("capture thread died: restarting it")
        self.start()
        return True


# An event is known some time after it starts (its minimum duration plus the scoring latency):
# the buffer keeps this much more than the pre-roll, so the hold can still reach back.
DETECTION_LAG_S = 10.0


def clip_recorder(clips: ClipsConfig, buffer: ClipBuffer | None = None) -> Recorder:
    """A camera's recorder of footage for clips, into ``buffer`` or a new one as configured."""
    if buffer is None:
        buffer = ClipBuffer(
            clips.pre_roll_s + DETECTION_LAG_S, clips.max_s, int(clips.buffer_megabytes * 1e6)
        )
    return Recorder(buffer, clips.fps)


def _record_reader(
    camera: CameraConfig, capture: CaptureConfig, recorder: Recorder | None
) -> RecordReader | None:
    """The camera's record stream reader, when it has one and clips keep footage."""
    if camera.record is None or recorder is None:
        return None  # without clips there is nothing to keep the record stream's packets for
    record = Recorder(recorder.buffer, recorder.jpeg_fps, detect_pts=False)
    return RecordReader(camera.name, camera.record, capture.backoff, record)
