"""The inside of one capture process: its cameras' threads, and what they send back.

``capture_main`` runs in a child process that the main process's ``CaptureProcess`` starts. It
runs one ``CameraWorker`` thread per camera (and a watchdog for stalls and dead threads, as the
stage does in one process), writing into the shared-memory rings the main process made, and
answers the control pipe:
``("add", camera, ring_name)``, ``("remove", name)``, ``("stop",)`` (or the pipe's end: the main
process is gone). A byte on the wake pipe follows every frame marked for analysis
(``wake.py``). Everything else goes back over the events pipe, batched by one sender thread:

- ``("stats", {name: CameraReport})`` every ``REPORT_S``: state and counters of each camera;
- ``("clip_begin", name, ClipFormat)`` / ``("clips", name, [Chunk, ...])``: footage for clips;
- ``("log", {...})``: log records, redacted here and handled by the main process's loggers;
- ``("ready",)`` once, when it listens.

Only this process writes to the events pipe and only the main process to the control pipe, so a
process killed at any moment leaves no lock held on the other side.
"""

from __future__ import annotations

import collections
import copy
import logging
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from streamdet.capture.clips import ClipBuffer
from streamdet.capture.record import RecordStatus
from streamdet.capture.ring import FrameRing
from streamdet.capture.wake import PipeNotifier
from streamdet.capture.worker import CameraStats, CameraWorker, clip_recorder
from streamdet.config import CameraConfig, CaptureConfig, ClipsConfig
from streamdet.footage import Chunk, ClipFormat
from streamdet.frames import SourceState
from streamdet.log import redact

logger = logging.getLogger(__name__)

REPORT_S = 0.05  # stats and footage reach the main process within this
WATCHDOG_S = 0.25  # how often the cameras are checked for stalls and dead threads
OUTBOX_LIMIT = 20_000  # messages waiting to be sent; beyond, new ones are dropped and counted


@dataclass(frozen=True)
class CameraReport:
    """One camera's state and counters, as its capture process sees them (its stats'
    ``last_frame_monotonic`` is CLOCK_MONOTONIC: the same clock in every process)."""

    state: SourceState
    alive: bool  # its thread runs
    stats: CameraStats
    record: RecordStatus | None = None  # its record stream, if it has one
    detect_delay_s: float = 0.0  # its decoder's delay (the record stream's peak frames)


class Outbox:
    """Messages for the main process, sent in batches by one thread (bounded, drops counted)."""

    def __init__(self, events: Connection) -> None:
        self._events = events
        self._items: collections.deque[tuple[Any, ...]] = collections.deque()
        self.dropped = 0

    def put(self, item: tuple[Any, ...]) -> None:
        if len(self._items) >= OUTBOX_LIMIT:
            self.dropped += 1
            return
        self._items.append(item)

    def flush(self) -> None:
        batch = []
        while self._items:
            batch.append(self._items.popleft())
        if batch:
            self._events.send(batch)


class _ForwardedClips(ClipBuffer):
    """The writer side of a camera's clip buffer, whose reader lives in the main process."""

    def __init__(self, camera: str, outbox: Outbox) -> None:
        super().__init__(0.0, 0.0, 0)
        self._camera, self._outbox = camera, outbox

    def begin(self, fmt: ClipFormat) -> None:
        self._outbox.put(("clip_begin", self._camera, fmt))

    def add(self, chunk: Chunk) -> None:
        self._outbox.put(("clip", self._camera, chunk))


class _ForwardingHandler(logging.Handler):
    """Sends every record to the main process, its message and traceback already redacted."""

    def __init__(self, outbox: Outbox) -> None:
        super().__init__()
        self._outbox = outbox

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {
                "name": record.name,
                "levelno": record.levelno,
                "levelname": record.levelname,
                "msg": redact(record.getMessage()),
                "args": None,
                "created": record.created,
                "threadName": record.threadName,
                "processName": record.processName,
                "exc_text": None,
            }
            if record.exc_info and record.exc_info[1] is not None:
                fields["exc_text"] = redact(logging.Formatter().formatException(record.exc_info))
            self._outbox.put(("log", fields))
        except Exception:  # a log line must never take capture down
            self.handleError(record)


class _Cameras:
    """This process's cameras: a thread each, and a watchdog for stalls and dead threads."""

    def __init__(
        self, capture: CaptureConfig, clips: ClipsConfig | None, outbox: Outbox, wake: Connection
    ) -> None:
        self._capture, self._clips, self._outbox = capture, clips, outbox
        self._notify = PipeNotifier(wake.fileno())
        # Replaced, never changed in place (copy on write): other threads iterate it unlocked.
        self.workers: dict[str, CameraWorker] = {}
        self._stop = threading.Event()
        self._checking = threading.Lock()  # one watchdog pass; a removal waits for it
        self._watchdog = threading.Thread(target=self._watch, name="capture:watchdog", daemon=True)
        self._watchdog.start()

    def add(self, camera: CameraConfig, ring_name: str) -> None:
        capture, clips = self._capture, self._clips
        ring = FrameRing.attach(ring_name, camera.name, capture.ring_size, camera.frame.shape)
        recorder = None
        if clips is not None and clips.enabled:
            recorder = clip_recorder(clips, _ForwardedClips(camera.name, self._outbox))
        threads = int(capture.decoder_threads)  # resolved by the main process for all cameras
        worker = CameraWorker(camera, capture, ring, None, recorder, threads, notify=self._notify)
        self.workers = {**self.workers, camera.name: worker}
        worker.start()

    def remove(self, name: str) -> None:
        with self._checking:  # the watchdog must not restart it between these two steps
            worker = self.workers.get(name)
            self.workers = {k: w for k, w in self.workers.items() if k != name}
        if worker is not None:
            worker.stop()

    def stop(self) -> None:
        self._stop.set()
        self._watchdog.join()
        for worker in reversed(self.workers.values()):
            worker.stop()

    def _watch(self) -> None:
        while not self._stop.wait(WATCHDOG_S):
            now = time.monotonic()
            with self._checking:
                for worker in self.workers.values():
                    try:
                        worker.check_stall(now)
                        if not self._stop.is_set():
                            worker.revive()
                    except Exception:  # the watchdog must outlive any one camera's trouble
                        logger.exception("[%s] watchdog check failed", worker.name)


def _report(worker: CameraWorker) -> CameraReport:
    stats = copy.copy(worker.stats)  # its own errors: the camera's thread appends to those
    stats.errors = collections.deque(tuple(worker.stats.errors), maxlen=10)
    delay = worker.recorder.buffer.detect_delay_s if worker.recorder is not None else 0.0
    return CameraReport(worker.state, worker.is_alive(), stats, worker.record_status(), delay)


def _send_loop(cameras: _Cameras, outbox: Outbox, done: threading.Event) -> None:
    while True:
        finished = done.wait(REPORT_S)
        reports = {name: _report(worker) for name, worker in cameras.workers.items()}
        dropped, outbox.dropped = outbox.dropped, 0
        outbox.put(("stats", reports, dropped))
        outbox.flush()
        if finished:
            return


@dataclass(frozen=True)
class Pipes:
    """A capture process's ends: commands in, messages out, wake-ups out."""

    control: Connection
    events: Connection
    wake: Connection


def capture_main(
    pipes: Pipes, capture: CaptureConfig, clips: ClipsConfig | None, log_level: int
) -> None:
    """The capture process's main function (see the module's docstring)."""
    # Ctrl-C and systemd's stop reach the whole process group: the main process stops us in
    # order over the control pipe, or by closing it when it ends.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    outbox = Outbox(pipes.events)
    root = logging.getLogger()
    root.handlers[:] = [_ForwardingHandler(outbox)]
    root.setLevel(log_level)
    logging.getLogger("libav").setLevel(logging.ERROR)
    cameras = _Cameras(capture, clips, outbox, pipes.wake)
    outbox.put(("ready",))
    outbox.flush()
    done = threading.Event()
    sender = threading.Thread(
        target=_send_loop, args=(cameras, outbox, done), name="capture:report", daemon=True
    )
    sender.start()
    try:
        _serve(pipes.control, cameras)
    finally:
        cameras.stop()
        done.set()
        sender.join(5.0)


def _serve(control: Connection, cameras: _Cameras) -> None:
    """Obey the main process until it says stop or goes away."""
    while True:
        try:
            message = control.recv()
        except (EOFError, OSError):
            return
        if message[0] == "stop":
            return
        if message[0] == "add":
            cameras.add(message[1], message[2])
        elif message[0] == "remove":
            cameras.remove(message[1])
