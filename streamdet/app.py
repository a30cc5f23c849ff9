"""The composition root: build the stages from config, start them in order, stop in reverse.

capture -> inference -> alerting -> HTTP server. ``run`` blocks until SIGINT/SIGTERM, the
optional duration, or the end of every source (files that do not loop), then stops everything
it started, in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from streamdet.alert.stage import AlertStage
from streamdet.capture.stage import CaptureStage
from streamdet.config import Config
from streamdet.frames import ModelState, ScoredFrame
from streamdet.inference.stage import InferenceStage
from streamdet.metrics import PipelineMetrics
from streamdet.web.server import build_app

logger = logging.getLogger(__name__)

# After the sources end, how long scoring may take to reach their last frames.
SCORING_GRACE_S = 10.0


class App:
    """All stages of one streamdet process."""

    def __init__(self, config: Config, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry or CollectorRegistry()
        self.metrics = PipelineMetrics(self.registry)
        self.capture = CaptureStage(config.cameras, config.capture, clips=config.alerts.clips)
        self.inference = InferenceStage(
            self.capture,
            config.cameras,
            config.models,
            config.inference,
            self.metrics,
            config.alerts.rules.release_ratio,
        )
        self.alerts = AlertStage(config.alerts, self.capture, self.inference)
        self.metrics.watch(self.capture, lambda: self.inference, lambda: self.alerts)
        self.url: str | None = None
        self.http: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self._stop: asyncio.Event | None = None

    def on_score(self, listener: Callable[[ScoredFrame], None]) -> None:
        self.inference.listeners.append(listener)

    async def start(self) -> None:
        self.capture.start()
        self.inference.start()
        await self.alerts.start()
        if self.config.server.enabled:
            await self._start_server()

    async def _start_server(self) -> None:
        server = self.config.server
        self.http = build_app(self.capture, self.inference, self.alerts, self.registry, server)
        # No access log: the page's URLs may carry ?token=.
        self._runner = web.AppRunner(self.http, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, server.host, server.port)
        await site.start()
        port = self._runner.addresses[0][1]
        host = f"[{server.host}]" if ":" in server.host else server.host
        self.url = f"http://{host}:{port}"
        logger.info("serving %s (the live view page, /metrics, /healthz, /readyz, /api)", self.url)

    async def stop(self) -> None:
        """Stop in reverse order of starting (idempotent)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.alerts.stop()
        self.inference.stop()
        self.capture.stop()

    async def wait(self, duration_s: float | None = None) -> None:
        """Block until SIGINT/SIGTERM, ``request_stop()``, ``duration_s``, or every source
        has ended (files that do not loop) and what they sent is scored."""
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stop.set)
        watch = asyncio.create_task(self._stop_when_sources_end(), name="app:sources-ended")
        try:
            with contextlib.suppress(TimeoutError):  # the duration is over
                await asyncio.wait_for(self._stop.wait(), timeout=duration_s)
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

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
            scored = self.inference.latest.get(name)
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
