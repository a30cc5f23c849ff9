"""The composition root: build the stages from config, start them in order, stop in reverse.

capture -> learning -> inference -> alerting -> HTTP server. The App creates the hand-offs
between the stages and gives each stage its ends: inference reads the rings and their frame
signal, puts scored frames into ``scored`` (bounded, drop-oldest, every drop counted), alerting
reads them from it, woken, and reads pixels and footage through a ``FrameReader``
(``CaptureFrames``); a camera without a model learns one in place on the learning stage, which
reads its footage through the same ``CaptureFrames`` — no stage holds another. Metrics and the
web read the stages' ``snapshot()``. ``run`` blocks until SIGINT/SIGTERM, the optional
duration, or the end of every source (files that do not loop), then stops everything it
started, in reverse order, every stop attempted even when one fails (``Lifecycle``).
SIGHUP (or ``POST /api/reload``) calls ``reload``: the config file
is read and checked again, and each camera that changed is stopped (alerting, inference,
learning, capture) and/or started (capture, inference, alerting); ``streamdet.reload`` says
what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from aiohttp import web
from prometheus_client import CollectorRegistry

from streamdet import preflight
from streamdet.alert.stage import AlertStage
from streamdet.capture.clips import ClipBuffer
from streamdet.capture.stage import CaptureStage
from streamdet.config import CameraConfig, Config, load_config
from streamdet.errors import ConfigError, StreamdetError
from streamdet.fleet.metrics import FleetCollector
from streamdet.fleet.worker import FleetWorker
from streamdet.frames import FrameRef, ModelState, ScoredFrame
from streamdet.handoff import DropPolicy, Handoff
from streamdet.inference.stage import InferenceStage
from streamdet.learning.footage import FrameWindows, stream_fps
from streamdet.learning.stage import LearningStage
from streamdet.lifecycle import Lifecycle, StopErrors, stop_all
from streamdet.metrics import PipelineMetrics
from streamdet.reload import ReloadResult, plan
from streamdet.web.server import build_app

logger = logging.getLogger(__name__)

# After the sources end, how long scoring may take to reach their last frames.
SCORING_GRACE_S = 10.0


class App:
    """All stages of one streamdet process."""

    def __init__(
        self,
        config: Config,
        registry: CollectorRegistry | None = None,
        config_path: Path | None = None,
    ) -> None:
        self.config_path = config_path  # what ``reload`` reads again; None: nothing to reload
        self.registry = registry or CollectorRegistry()
        # Fleet mode: the stages start with no camera; the fleet worker starts this worker's
        # share of the fleet's list (``start_fleet_camera``) and moves them as members change.
        self.fleet: FleetWorker | None = None
        if config.fleet.enabled:
            self.fleet = FleetWorker(
                config.fleet, config.cameras, config.models.dir, self, lambda: self.url
            )
            self.registry.register(FleetCollector(self.fleet.snapshot))
            config = config.model_copy(update={"cameras": []})
        self.config = config
        self.metrics = PipelineMetrics(self.registry)
        self.capture = CaptureStage(config.cameras, config.capture, clips=config.alerts.clips)
        self.scored = scored_handoff(config.inference.output_queue, self.metrics)
        frames = CaptureFrames(self.capture)
        self.learning = LearningStage(frames, config.models.learn_seconds)
        self.inference = InferenceStage(
            self.capture,
            config.cameras,
            config.models,
            config.inference,
            self.metrics,
            config.alerts.rules.release_ratio,
            scored=self.scored,
            learning=self.learning,
        )
        self.alerts = AlertStage(
            config.alerts,
            self.scored,
            frames,
            list(self.inference.detectors),
            self.inference.health_baseline,
        )
        self.metrics.watch(self.capture, self.inference.snapshot, self.alerts.snapshot)
        self._lifecycle = Lifecycle("stopping the pipeline")
        self.url: str | None = None
        self.http: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self._stop: asyncio.Event | None = None
        self._reloading = asyncio.Lock()  # one reload at a time, and none while stopping
        self._reloads: set[asyncio.Task[None]] = set()  # started by SIGHUP

    def on_score(self, listener: Callable[[ScoredFrame], None]) -> None:
        self.inference.listeners.append(listener)

    async def start(self) -> None:
        """Start capture, learning, inference, alerting, the HTTP server, in that order (no-op
        if started); a start that fails stops what had started."""
        if self._lifecycle.started:
            return
        start = self._lifecycle.start
        await start("capture", self.capture.start, self.capture.stop)
        # after inference has stopped, waits for trainings in progress (before capture stops)
        await start("learning", self.learning.start, self.learning.stop)
        await start("inference", self.inference.start, self.inference.stop)
        await start("alerting", self.alerts.start, self.alerts.stop)
        if self.config.server.enabled:
            await start("the HTTP server", self._start_server, self._stop_server)
        if self.fleet is not None:  # last: the cameras it starts join a running pipeline
            await start("the fleet worker", self.fleet.start, self.fleet.stop)

    async def _start_server(self) -> None:
        server = self.config.server
        reload = self.reload if self.config_path is not None else None
        fleet = None if self.fleet is None else self.fleet.snapshot
        self.http = build_app(
            self.capture,
            self.inference,
            self.alerts,
            self.registry,
            server,
            reload=reload,
            fleet=fleet,
        )
        # No access log: the page's URLs may carry ?token=.
        self._runner = web.AppRunner(self.http, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, server.host, server.port)
        await site.start()
        port = self._runner.addresses[0][1]
        host = f"[{server.host}]" if ":" in server.host else server.host
        self.url = f"http://{host}:{port}"
        logger.info("serving %s (the live view page, /metrics, /healthz, /readyz, /api)", self.url)

    async def _stop_server(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def stop(self) -> None:
        """Stop in reverse order of starting, every stop attempted even when one fails
        (``StopErrors`` after, each error logged). Idempotent."""
        async with self._reloading:  # a reload under way finishes first
            await self._lifecycle.stop()

    async def wait(self, duration_s: float | None = None) -> None:
        """Block until SIGINT/SIGTERM, ``request_stop()``, ``duration_s``, or every source
        has ended (files that do not loop) and what they sent is scored."""
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self._reload_on_signal)
        watch = asyncio.create_task(self._stop_when_sources_end(), name="app:sources-ended")
        try:
            with contextlib.suppress(TimeoutError):  # the duration is over
                await asyncio.wait_for(self._stop.wait(), timeout=duration_s)
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            if self._reloads:
                await asyncio.wait(self._reloads)

    async def _stop_when_sources_end(self, poll_s: float = 0.2) -> None:
        """Set the stop once every source has ended and its last frames are scored (at most
        ``SCORING_GRACE_S`` later: a frame whose window is gone is never scored) and no model
        is still training on its footage. ``stop()`` then ends the open events."""
        ended_at: float | None = None
        while True:
            await asyncio.sleep(poll_s)
            if not self.capture.ended():
                continue
            now = time.monotonic()
            ended_at = ended_at or now
            late = now - ended_at > SCORING_GRACE_S
            if self._training() or not (late or self._scored_up()):
                continue
            logger.info("every source has ended: stopping")
            if self._stop is not None:
                self._stop.set()
            return

    def _training(self) -> bool:
        return any(d.state is ModelState.TRAINING for d in self.inference.detectors.values())

    def _scored_up(self) -> bool:
        """Whether every detecting camera's newest analysable frame has been scored."""
        for name, detector in self.inference.detectors.items():
            if detector.state is not ModelState.DETECTING:
                continue
            newest = self.capture.ring(name).latest(analysable_only=True)
            model = self.inference.snapshot(name).camera(name)
            scored = None if model is None else model.latest
            if newest is not None and (scored is None or scored.ref.seq < newest.seq):
                return False
        return True

    async def run(self, duration_s: float | None = None) -> None:
        """Start, wait for a signal or ``duration_s``, stop."""
        try:
            await self.start()
            await self.wait(duration_s)
        finally:
            await self.stop()

    def request_stop(self) -> None:
        if self._stop is not None:
            self._stop.set()

    # ------------------------------------------------------------------ reload
    async def reload(self) -> ReloadResult:
        """Read the config file again and apply its cameras: added ones start, removed ones
        stop (their metric series go), changed ones restart, the others run on untouched.
        Raises ``ConfigError`` for a file that is invalid, or that this machine cannot run
        (the checks of ``check-config``); the running config is then kept as it is."""
        async with self._reloading:
            try:
                new = await asyncio.to_thread(self._read_config)
            except ConfigError as exc:
                logger.error("reload refused, the running config is kept: %s", exc)
                raise
            if self.fleet is not None:
                return self._reload_fleet(new)
            changes = plan(self.config, new)
            failed: dict[str, str] = {}
            for name in [*changes.removed, *(c.name for c in changes.restarted)]:
                await self._stop_camera(name, failed)
            for camera in [*changes.added, *changes.restarted]:
                await self._start_camera(camera, failed)
            # A camera that could not start is left out: the next reload tries it again.
            cameras = [c for c in new.cameras if c.name not in failed]
            self.config = self.config.model_copy(update={"cameras": cameras})
            self.capture.arrange([c.name for c in cameras])
        result = ReloadResult.of(changes, failed)
        logger.info("reloaded %s: %s", self.config_path, result.summary())
        if result.restart_required:
            logger.warning(
                "reload: %s changed; kept as running until a restart",
                ", ".join(result.restart_required),
            )
        return result

    def _reload_fleet(self, new: Config) -> ReloadResult:
        """Fleet mode: the new cameras are the fleet's list (``fleet.cameras: config``), which
        the worker applies at its next beat; with ``kv`` the file's cameras are not used."""
        assert self.fleet is not None
        running = self.config.model_copy(update={"cameras": self.fleet.cameras})
        if self.config.fleet.cameras == "config":
            self.fleet.set_cameras(new.cameras)
        else:
            new = new.model_copy(update={"cameras": self.fleet.cameras})
        result = ReloadResult.of(plan(running, new), {})
        logger.info("reloaded %s (the fleet's list): %s", self.config_path, result.summary())
        return result

    async def start_fleet_camera(self, camera: CameraConfig) -> str | None:
        """The fleet worker's: start ``camera`` here; why it could not, else None."""
        failed: dict[str, str] = {}
        async with self._reloading:
            await self._start_camera(camera, failed)
            if camera.name not in failed:
                self._set_cameras([*self.config.cameras, camera])
        return failed.get(camera.name)

    async def stop_fleet_camera(self, name: str) -> None:
        """The fleet worker's: stop ``name`` here (it runs on another worker now)."""
        async with self._reloading:
            await self._stop_camera(name, {})
            self._set_cameras([c for c in self.config.cameras if c.name != name])

    def _set_cameras(self, cameras: list[CameraConfig]) -> None:
        self.config = self.config.model_copy(update={"cameras": cameras})
        self.capture.arrange([c.name for c in cameras])

    def _read_config(self) -> Config:
        if self.config_path is None:
            problem = "(reload): this run has no config file to read again (the built-in demo)"
            raise ConfigError("reload", [problem])
        config = load_config(self.config_path)
        preflight.check(config, str(self.config_path))
        return config

    async def _stop_camera(self, name: str, failed: dict[str, str]) -> None:
        """Stop ``name`` in every stage, in reverse order of starting, even when one fails."""
        steps: list[tuple[str, Callable[[], object]]] = [
            ("alerts", lambda: self.alerts.remove_camera(name)),
            ("inference", lambda: asyncio.to_thread(self.inference.remove_camera, name)),
            ("learning", lambda: self.learning.cancel(name)),
            ("capture", lambda: asyncio.to_thread(self.capture.remove_camera, name)),
        ]
        try:
            await stop_all(steps, f"[{name}] reload: stopping the camera")
        except StopErrors as exc:  # logged; the camera's other stages were stopped
            stage, error = exc.steps[-1], exc.exceptions[-1]
            failed[name] = f"{stage}: {error!r}"
        logger.info("[%s] reload: camera stopped", name)

    async def _start_camera(self, camera: CameraConfig, failed: dict[str, str]) -> None:
        """Start ``camera`` in every stage, in order; on a failure, stop what had started."""
        try:
            await asyncio.to_thread(self.capture.add_camera, camera)
            await asyncio.to_thread(self.inference.add_camera, camera)
            self.alerts.add_camera(camera.name)
        except Exception as exc:  # the stage boundary: the other cameras go on
            logger.exception("[%s] reload: the camera could not start", camera.name)
            await self._stop_camera(camera.name, {})
            failed[camera.name] = f"could not start: {exc!r}"
            return
        logger.info("[%s] reload: camera started", camera.name)

    def _reload_on_signal(self) -> None:
        task = asyncio.create_task(self._reload_logged(), name="app:reload")
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload_logged(self) -> None:
        logger.info("SIGHUP: reading %s again", self.config_path)
        with contextlib.suppress(ConfigError):  # logged by reload(), which kept the config
            await self.reload()


def scored_handoff(capacity: int, metrics: PipelineMetrics) -> Handoff[ScoredFrame]:
    """Inference -> alerting: drop-oldest (the newest score matters most), drops counted."""
    return Handoff(
        "scored_frames",
        capacity,
        DropPolicy.DROP_OLDEST,
        camera_of=lambda frame: frame.ref.camera,
        on_drop=metrics.drop_counter("scored_frames"),
    )


class CaptureFrames:
    """The alert stage's ``FrameReader`` and the learning stage's ``LiveFootage`` on the
    capture stage's rings, footage and stream rates."""

    def __init__(self, capture: CaptureStage) -> None:
        self._capture = capture

    def read(self, ref: FrameRef) -> np.ndarray | None:
        try:
            return self._capture.ring(ref.camera).read(ref)
        except StreamdetError:  # the camera was removed (a reload)
            return None

    def newest(self, camera: str, count: int) -> tuple[list[FrameRef], np.ndarray]:
        ring = self._capture.ring(camera)
        return ring.window(min(count, ring.size - 1))

    def windows(self, camera: str) -> FrameWindows:
        return self._capture.ring(camera)

    def fps(self, camera: str) -> float:
        return stream_fps(self._capture, camera)

    def footage(self, camera: str) -> ClipBuffer | None:
        try:
            return self._capture.clips(camera)
        except KeyError:  # the camera was removed (a reload)
            return None
