"""The composition root: build the stages from config, start them in order, stop in reverse.

capture -> inference -> alerting -> HTTP server. ``run`` blocks until SIGINT/SIGTERM or
the optional duration, then stops everything it started, in reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from streamdet.alert.stage import AlertStage
from streamdet.capture.stage import CaptureStage
from streamdet.config import Config
from streamdet.frames import ScoredFrame
from streamdet.inference.stage import InferenceStage
from streamdet.metrics import PipelineMetrics
from streamdet.web.server import build_app

logger = logging.getLogger(__name__)


class App:
    """All stages of one streamdet process."""

    def __init__(self, config: Config, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.registry = registry or CollectorRegistry()
        self.metrics = PipelineMetrics(self.registry)
        self.capture = CaptureStage(config.cameras, config.capture, clips=config.alerts.clips)
        self.inference = InferenceStage(
            self.capture, config.cameras, config.models, config.inference, self.metrics
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
        """Block until SIGINT/SIGTERM, ``request_stop()`` or ``duration_s``."""
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._stop.set)
        try:
            with contextlib.suppress(TimeoutError):  # the duration is over
                await asyncio.wait_for(self._stop.wait(), timeout=duration_s)
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

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
