"""Capture processes, seen from the main process: the process handle and its cameras' proxies.

A ``CaptureProcess`` starts a child running ``child.capture_main``, tells it which cameras to
decode into which shared-memory rings, and reads back what it sends on one thread
(``capture:events-<i>``): stats into each camera's ``RemoteWorker``, footage into the camera's
``ClipBuffer`` (so clips are cut here, as with threads), log records into this process's
loggers. ``check()`` is the supervisor: called from the capture stage's watchdog, it restarts a
process that died; its cameras show RECONNECTING (with the reason among their errors) until
the new process streams them again, and their counters carry on from where they were.

Children come from a fork server: a clean process that has imported capture once, so a
restart costs a fork, not an interpreter start, and nothing of this process's threads or
models is copied into them.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import multiprocessing
import os
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from streamdet.capture.child import CameraReport, Pipes, capture_main
from streamdet.capture.clips import Recorder
from streamdet.capture.record import RecordStatus
from streamdet.capture.ring import FrameRing
from streamdet.capture.wake import FrameSignal, relay
from streamdet.capture.worker import CameraStats
from streamdet.config import CameraConfig, CaptureConfig, ClipsConfig
from streamdet.frames import SourceState

logger = logging.getLogger(__name__)

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["streamdet.capture.child"])
QUICK_DEATH_S = 10.0  # a process that dies sooner after its start is restarted later each time
MAX_RESTART_DELAY_S = 30.0
_COUNTERS = ("frames", "analysable", "reconnects", "connect_failures", "stalls")
_OTHERS = tuple(  # taken as the child reports them
    f.name for f in dataclasses.fields(CameraStats) if f.name not in {*_COUNTERS, "errors"}
)


def restart_delay(quick_deaths: int) -> float:
    """Seconds before restarting a process that died ``quick_deaths`` times in a row soon after
    its start: at once the first time, then 0.5, 1, 2 ... up to ``MAX_RESTART_DELAY_S``."""
    if quick_deaths <= 1:
        return 0.0
    return float(min(MAX_RESTART_DELAY_S, 0.5 * 2 ** (quick_deaths - 2)))


def resolve_processes(setting: int | str, cores: int | None = None) -> int:
    """``capture.processes``: "auto" is one per core (0 stays 0: threads in this process)."""
    return (cores or os.cpu_count() or 1) if setting == "auto" else int(setting)


class RemoteWorker:
    """A camera decoded in a capture process: its ring, footage and status, here."""

    def __init__(
        self,
        camera: CameraConfig,
        ring: FrameRing,
        process: CaptureProcess,
        recorder: Recorder | None,
    ) -> None:
        self.camera = camera
        self.name = camera.name
        self.ring = ring
        self.recorder = recorder  # only its buffer is used here: the child records
        self.process = process
        self.stats = CameraStats()  # as of its process's last report (every child.REPORT_S)
        self.created = time.time()
        self._state = SourceState.NOT_STARTED
        self._alive = False  # its thread runs in the child, as last reported
        self._base: dict[str, int] = dict.fromkeys(_COUNTERS, 0)  # earlier processes' counts
        self._old_errors: tuple[str, ...] = ()
        self._record: RecordStatus | None = None

    @property
    def state(self) -> SourceState:
        return self._state

    def start(self) -> None:
        """Have the process decode this camera (no-op if it does)."""
        self.process.add(self)

    def stop(self, timeout: float = 10.0) -> None:
        """Have the process stop this camera (idempotent)."""
        self.process.remove(self.name)
        self.stopped()

    def handed_over(self) -> None:
        """Its process was told to decode it: it connects (as a thread does on its start)."""
        if self._state in (SourceState.NOT_STARTED, SourceState.STOPPED):
            self._state = SourceState.CONNECTING

    def stopped(self) -> None:
        """Its process stopped it (or ended)."""
        self._alive = False
        if self._state not in (SourceState.FAILED, SourceState.NOT_STARTED):
            self._state = SourceState.STOPPED

    def is_alive(self) -> bool:
        return self.process.alive() and self.process.has(self.name) and self._alive

    def check_stall(self, now: float) -> bool:
        return False  # the capture process's own watchdog checks for stalls

    def record_status(self) -> RecordStatus | None:
        """Its record stream's status, as last reported."""
        return self._record

    def record_error(self, message: str) -> None:
        self._old_errors = (*self._old_errors, f"{time.strftime('%H:%M:%S')} {message}")[-10:]
        self.stats.errors = collections.deque(self._old_errors, maxlen=10)

    def update(self, report: CameraReport) -> None:
        """A report from the capture process (on its events thread)."""
        stats, theirs = self.stats, report.stats
        for name in _OTHERS:
            setattr(stats, name, getattr(theirs, name))
        for counter in _COUNTERS:
            setattr(stats, counter, self._base[counter] + getattr(theirs, counter))
        stats.errors = collections.deque((*self._old_errors, *theirs.errors), maxlen=10)
        self._state, self._alive = report.state, report.alive
        self._record = report.record
        if self.recorder is not None:  # where a record stream's peak frames are found
            self.recorder.buffer.detect_delay_s = report.detect_delay_s

    def process_died(self, reason: str) -> None:
        """Its process is gone: keep the counts so far, and show the camera reconnecting."""
        self._base = {counter: getattr(self.stats, counter) for counter in _COUNTERS}
        self._base["reconnects"] += 1
        self._old_errors = tuple(self.stats.errors)
        self.record_error(reason)
        self._alive, self.stats.fps = False, 0.0
        if self._state not in (SourceState.STOPPED, SourceState.FAILED):
            self._state = SourceState.RECONNECTING


class CaptureProcess:
    """One capture process and its cameras (see the module's docstring)."""

    def __init__(
        self, index: int, capture: CaptureConfig, clips: ClipsConfig | None, frames: FrameSignal
    ) -> None:
        self.index = index
        self._frames = frames
        self._capture, self._clips = capture, clips
        self._workers: dict[str, RemoteWorker] = {}  # every camera placed here
        self._sent: set[str] = set()  # cameras the running process was told to decode
        self._lock = threading.Lock()  # the control pipe and the two collections above
        self._process: Any = None
        self._control: Connection | None = None
        self._reader: threading.Thread | None = None
        self._stopping = False
        self._ready = threading.Event()
        self._started_at = 0.0
        self._restart_at: float | None = None  # set while a dead process waits for its restart
        self._quick_deaths = 0
        self.restarts = 0

    @property
    def cameras(self) -> int:
        return len(self._workers)

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    def has(self, name: str) -> bool:
        return name in self._sent

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 20.0) -> None:
        """Start the process (no-op if it runs), wait until it listens (up to ``timeout``),
        and hand it every camera placed here."""
        self.launch()
        self.hand_over(timeout)

    def launch(self) -> None:
        """Start the process, not waiting for it (no-op if it runs): ``hand_over`` then."""
        if self.alive():
            return
        self._stopping = False
        self._ready.clear()
        self._started_at = time.monotonic()
        control_read, control_write = _CONTEXT.Pipe(duplex=False)
        events_read, events_write = _CONTEXT.Pipe(duplex=False)
        wake_read, wake_write = _CONTEXT.Pipe(duplex=False)
        level = logging.getLogger().getEffectiveLevel()
        process = _CONTEXT.Process(
            target=capture_main,
            args=(Pipes(control_read, events_write, wake_write), self._capture, self._clips, level),
            name=f"streamdet-capture-{self.index}",
            daemon=True,
        )
        process.start()
        for end in (control_read, events_write, wake_write):
            end.close()  # the child's ends: when it dies, our reads end
        threading.Thread(
            target=self._relay, args=(wake_read,), name=f"capture:wake-{self.index}", daemon=True
        ).start()
        with self._lock:
            self._process, self._control, self._sent = process, control_write, set()
        self._reader = threading.Thread(
            target=self._read_events,
            args=(events_read,),
            name=f"capture:events-{self.index}",
            daemon=True,
        )
        self._reader.start()

    def hand_over(self, timeout: float = 20.0) -> None:
        """Wait until the launched process listens (up to ``timeout``), then hand it every
        camera placed here."""
        if not self._ready.wait(timeout):
            logger.warning("capture process %d: not ready after %.0f s", self.index, timeout)
        for worker in list(self._workers.values()):
            self.add(worker)
        logger.info("capture process %d started (pid %s)", self.index, self.pid)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the process to stop its cameras and end; kill it if it does not (idempotent)."""
        self._stopping = True
        process = self._process
        if process is None:
            return
        with self._lock:
            self._send(("stop",))
        process.join(timeout)
        if process.is_alive():
            logger.warning(
                "capture process %d did not stop within %.1f s: killing", self.index, timeout
            )
            process.kill()
            process.join(2.0)
        if self._reader is not None:
            self._reader.join(2.0)
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.stopped()
        with self._lock:
            self._process, self._sent = None, set()
            if self._control is not None:
                self._control.close()
                self._control = None

    def check(self) -> bool:
        """The supervisor's check: restart the process if it died; True if it did. The first
        restart is at once; one that dies again within ``QUICK_DEATH_S`` of its start waits
        twice as long each time (up to ``MAX_RESTART_DELAY_S``): a decoder that crashes on
        every open must not keep its process's other cameras blinking."""
        process = self._process
        if process is None or self._stopping or process.is_alive():
            return False
        now = time.monotonic()
        if self._restart_at is None:  # a death not yet seen
            self._bury(process, now)
        if self._restart_at is not None and now < self._restart_at:
            return False
        self._restart_at = None
        self.start()
        self.restarts += 1
        return True

    def _bury(self, process: Any, now: float) -> None:
        code = process.exitcode
        reason = f"capture process {self.index} (pid {process.pid}) died" + (
            f" (signal {-code})" if code is not None and code < 0 else f" (exit code {code})"
        )
        if self._reader is not None:  # its last reports first: the counts carry on from them
            self._reader.join(1.0)
        with self._lock:
            self._sent = set()
            if self._control is not None:
                self._control.close()
                self._control = None
            workers = list(self._workers.values())
        quick = now - self._started_at < QUICK_DEATH_S
        self._quick_deaths = self._quick_deaths + 1 if quick else 0
        delay = restart_delay(self._quick_deaths)
        self._restart_at = now + delay
        names = ", ".join(w.name for w in workers) or "no camera"
        logger.error("%s: restarting it in %.1f s for %s", reason, delay, names)
        for worker in workers:
            worker.process_died(reason)

    # ------------------------------------------------------------------ cameras
    def place(self, worker: RemoteWorker) -> None:
        """Make ``worker``'s camera one of this process's (started by ``add``)."""
        with self._lock:
            self._workers[worker.name] = worker

    def add(self, worker: RemoteWorker) -> None:
        with self._lock:
            self._workers[worker.name] = worker
            if worker.name in self._sent or not self.alive():
                return
            ring = worker.ring.shm_name
            if self._send(("add", worker.camera, ring)):
                self._sent.add(worker.name)
                worker.handed_over()

    def remove(self, name: str) -> None:
        with self._lock:
            self._workers.pop(name, None)
            if name in self._sent:
                self._sent.discard(name)
                self._send(("remove", name))

    def _send(self, message: tuple[Any, ...]) -> bool:
        """Send on the control pipe (with the lock held); False if the process is gone."""
        if self._control is None:
            return False
        try:
            self._control.send(message)
        except (OSError, ValueError):  # it died: the supervisor restarts it
            return False
        return True

    # ------------------------------------------------------------------ events
    def _relay(self, wake: Connection) -> None:
        try:
            relay(wake.fileno(), self._frames)
        finally:
            wake.close()

    def _read_events(self, events: Connection) -> None:
        try:
            while True:
                try:
                    batch = events.recv()
                except (EOFError, OSError):
                    return  # the process ended (or died mid-message)
                for message in batch:
                    self._handle(message)
        finally:
            events.close()

    def _handle(self, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "clip":
            worker = self._workers.get(message[1])
            if worker is not None and worker.recorder is not None:
                worker.recorder.buffer.add(message[2])
        elif kind == "stats":
            for name, report in message[1].items():
                worker = self._workers.get(name)
                if worker is not None:
                    worker.update(report)
            if message[2]:
                logger.warning("capture process %d dropped %d messages", self.index, message[2])
        elif kind == "clip_begin":
            worker = self._workers.get(message[1])
            if worker is not None and worker.recorder is not None:
                worker.recorder.buffer.begin(message[2])
        elif kind == "ready":
            self._ready.set()
        elif kind == "log":
            record = logging.makeLogRecord(message[1])
            logging.getLogger(record.name).handle(record)
