"""The capture stage: one ring and one capture thread per camera, plus a watchdog.

The threads run in ``capture.processes`` capture processes (``remote.py``: the cameras spread
over them, frames in shared-memory rings, footage and status sent back), or with 0 (and with a
``source_factory``, which a test hands in) in this process. Readers see the same rings,
workers' stats and clip buffers either way. The watchdog also supervises the processes:
one that dies is restarted, and only its cameras blink.

``start()`` starts the processes and cameras, then the watchdog; ``stop()`` stops them in
reverse order. Both are idempotent. Consumers read frames from ``ring(camera)`` and status
from ``status()``.
``add_camera`` / ``remove_camera`` change the set while it runs (a config reload); the other
cameras' threads and rings are not touched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from streamdet.capture.clips import ClipBuffer
from streamdet.capture.record import RecordStatus
from streamdet.capture.remote import CaptureProcess, RemoteWorker, resolve_processes
from streamdet.capture.ring import FrameRing
from streamdet.capture.sources import VideoSource, resolve_decoder_threads
from streamdet.capture.wake import FrameSignal
from streamdet.capture.worker import CameraWorker, clip_recorder
from streamdet.config import (
    CameraConfig,
    CaptureConfig,
    ClipsConfig,
    FileSource,
    MjpegSource,
    RtspSource,
    WebcamSource,
)
from streamdet.errors import StreamdetError
from streamdet.frames import SourceState
from streamdet.log import redact

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraStatus:
    """A snapshot of one camera, safe to show (credentials redacted)."""

    name: str
    source: str
    state: SourceState
    frames: int
    analysable: int
    fps: float
    reconnects: int
    stalls: int
    overwrites: int
    first_frame_s: float | None
    seconds_since_frame: float | None
    codec: str | None
    resolution: tuple[int, int] | None
    errors: tuple[str, ...]
    started: float = 0.0  # when this run of the camera began (time.time()); new after a reload
    record: RecordStatus | None = None  # the camera's record stream, when it has one


class CaptureStage:
    """Decodes every enabled camera into its ring and keeps the cameras alive."""

    def __init__(
        self,
        cameras: list[CameraConfig],
        capture: CaptureConfig,
        *,
        watchdog_interval_s: float = 0.25,
        source_factory: Callable[[CameraConfig], VideoSource] | None = None,
        clips: ClipsConfig | None = None,
    ) -> None:
        enabled = [camera for camera in cameras if camera.enabled]
        self._capture, self._factory, self._clips = capture, source_factory, clips
        # Readers wait on it: woken after every frame marked for analysis, from any camera.
        self.frames = FrameSignal()
        self._threads = resolve_decoder_threads(capture.decoder_threads, len(enabled))
        self._processes = self._start_pool(len(enabled))
        # Replaced, never changed in place (copy on write): other threads iterate it unlocked.
        self._workers: dict[str, CameraWorker | RemoteWorker] = {
            c.name: self._worker(c) for c in enabled
        }
        self._interval = watchdog_interval_s
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._checking = threading.Lock()  # one watchdog pass; a removal waits for it

    def _start_pool(self, cameras: int) -> list[CaptureProcess]:
        if self._factory is not None:
            return []  # a test's sources: threads here
        self._most_processes = resolve_processes(self._capture.processes)
        if not self._most_processes:
            return []
        # Children decode on threads; each gets the decoder threads chosen for all cameras.
        self._inner = self._capture.model_copy(
            update={"processes": 0, "decoder_threads": self._threads}
        )
        count = min(self._most_processes, max(cameras, 1))  # more start as cameras are added
        return [CaptureProcess(i, self._inner, self._clips, self.frames) for i in range(count)]

    def _process_for_new_camera(self) -> CaptureProcess:
        """The least busy process, or a new one while there are fewer than configured."""
        process = min(self._processes, key=lambda p: p.cameras)
        if process.cameras and len(self._processes) < self._most_processes:
            process = CaptureProcess(len(self._processes), self._inner, self._clips, self.frames)
            self._processes = [*self._processes, process]
            if self._watchdog is not None:
                process.start()
        return process

    @property
    def processes(self) -> list[CaptureProcess]:
        """The capture processes (none when the cameras' threads run in this process)."""
        return list(self._processes)

    def _worker(self, camera: CameraConfig) -> CameraWorker | RemoteWorker:
        clips = self._clips
        recorder = clip_recorder(clips) if clips is not None and clips.enabled else None
        size, shape = self._capture.ring_size, camera.frame.shape
        if self._processes:
            process = self._process_for_new_camera()
            ring = FrameRing.shared(camera.name, size, shape)
            worker = RemoteWorker(camera, ring, process, recorder)
            process.place(worker)
            return worker
        ring, notify = FrameRing(camera.name, size, shape), self.frames.notify
        return CameraWorker(
            camera, self._capture, ring, self._factory, recorder, self._threads, notify=notify
        )

    def add_camera(self, camera: CameraConfig) -> None:
        """Add ``camera`` (enabled, with a name not in use), started at once if the stage runs."""
        if camera.name in self._workers:
            raise StreamdetError(f"camera {camera.name!r} is already capturing")
        worker = self._worker(camera)
        self._workers = {**self._workers, camera.name: worker}
        if self._watchdog is not None:
            worker.start()
        logger.info("[%s] capture added", camera.name)

    def remove_camera(self, camera: str) -> None:
        """Stop ``camera``'s thread and forget it (its ring goes with it); no-op if unknown."""
        with self._checking:  # the watchdog must not restart it between these two steps
            worker = self._workers.get(camera)
            self._workers = {k: w for k, w in self._workers.items() if k != camera}
        if worker is not None:
            worker.stop()
            worker.ring.close()
            worker.ring.unlink()
            logger.info("[%s] capture removed", camera)

    def arrange(self, order: list[str]) -> None:
        """Put the cameras in ``order`` (the config's), for ``status()``; others go last."""
        rank = {name: i for i, name in enumerate(order)}
        ordered = sorted(self._workers.items(), key=lambda item: rank.get(item[0], len(rank)))
        self._workers = dict(ordered)

    @property
    def cameras(self) -> list[str]:
        return list(self._workers)

    def ring(self, camera: str) -> FrameRing:
        try:
            return self._workers[camera].ring
        except KeyError:
            raise StreamdetError(f"unknown camera {camera!r}") from None

    def worker(self, camera: str) -> CameraWorker | RemoteWorker:
        return self._workers[camera]

    def clips(self, camera: str) -> ClipBuffer | None:
        """The camera's recent footage for event clips, or None when clips are off."""
        recorder = self._workers[camera].recorder
        return recorder.buffer if recorder is not None else None

    def ended(self) -> bool:
        """True once no camera will send another frame: every one reads a file that does not
        loop and has come to its end (or given up on it). Never for a live camera."""
        finite = (
            isinstance(w.camera.source, FileSource) and not w.camera.source.loop
            for w in self._workers.values()
        )
        if not self._workers or not all(finite) or self._watchdog is None:
            return False
        finished = (SourceState.STOPPED, SourceState.FAILED)
        return all(w.state in finished and not w.is_alive() for w in self._workers.values())

    def start(self) -> None:
        """Start every camera, then the watchdog (no-op if running)."""
        if self._watchdog is not None:
            return
        self._stop.clear()
        for process in self._processes:  # all at once: each takes a fork and its imports
            process.launch()
        for process in self._processes:
            process.hand_over()
        for worker in self._workers.values():
            if isinstance(worker, RemoteWorker) and worker.ring.shm_name is None:
                worker.ring = FrameRing.shared(worker.name, worker.ring.size, worker.ring.shape)
            worker.start()
        self._watchdog = threading.Thread(target=self._watch, name="capture:watchdog", daemon=True)
        self._watchdog.start()
        where = f" in {len(self._processes)} processes" if self._processes else ""
        logger.info("capture started: %d camera(s)%s", len(self._workers), where)

    def stop(self) -> None:
        """Stop the watchdog, then every camera (idempotent)."""
        self._stop.set()
        if self._watchdog is not None:
            self._watchdog.join()
            self._watchdog = None
        for process in reversed(self._processes):
            process.stop()
        for worker in reversed(self._workers.values()):
            worker.stop()
            worker.ring.unlink()

    def __enter__(self) -> CaptureStage:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _watch(self) -> None:
        while not self._stop.wait(self._interval):
            now = time.monotonic()
            with self._checking:
                for process in self._processes:
                    try:
                        process.check()
                    except Exception:  # the others' cameras must keep their supervisor
                        logger.exception("capture process %d: restart failed", process.index)
                for worker in self._workers.values():
                    try:
                        worker.check_stall(now)
                        self._check_alive(worker)
                    except Exception:  # the watchdog must outlive any one camera's trouble
                        logger.exception("[%s] watchdog check failed", worker.name)

    def _check_alive(self, worker: CameraWorker | RemoteWorker) -> None:
        """Restart a worker whose thread died without reaching a final state (a capture
        process does this for its own threads; ``process.check`` restarts the process)."""
        if isinstance(worker, CameraWorker) and not self._stop.is_set():
            worker.revive()

    def status(self) -> list[CameraStatus]:
        """One snapshot per camera, in config order."""
        now = time.monotonic()
        return [self._status(worker, now) for worker in self._workers.values()]

    @staticmethod
    def _status(worker: CameraWorker | RemoteWorker, now: float) -> CameraStatus:
        stats = worker.stats
        stream = stats.stream
        last = stats.last_frame_monotonic
        return CameraStatus(
            name=worker.name,
            source=_describe_source(worker.camera),
            state=worker.state,
            frames=stats.frames,
            analysable=stats.analysable,
            fps=stats.fps,
            reconnects=stats.reconnects,
            stalls=stats.stalls,
            overwrites=worker.ring.overwrites,
            first_frame_s=stats.first_frame_s,
            seconds_since_frame=None if last is None else now - last,
            codec=stream.codec if stream else None,
            resolution=stats.resolution,
            errors=tuple(stats.errors),
            started=worker.created,
            record=worker.record_status(),
        )


def _describe_source(camera: CameraConfig) -> str:
    source = camera.source
    if isinstance(source, RtspSource | MjpegSource):
        return redact(source.url)
    if isinstance(source, FileSource):
        return str(source.path)
    if isinstance(source, WebcamSource):
        return source.device
    return f"synthetic:seed={source.seed}"
