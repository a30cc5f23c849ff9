"""The alert stage: scored frames -> event rules -> durable store -> sinks.

Runs on the asyncio loop. Every ``poll_s`` it drains the inference stage's bounded hand-off,
feeds each camera's rules, and records every start/update/end in the store — before any sink
sees it. The peak frame of an open event is copied out of the ring at once (rings are short)
and its snapshot written with the heatmap. One dispatcher task per sink delivers from the
store's outbox, so a failing sink delays only itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import numpy as np

from streamdet.alert.retention import prune
from streamdet.alert.rules import Change, EventTracker, Observation, RuleSettings, Update
from streamdet.alert.sinks import Dispatcher, JsonlSink, MqttSink, Sink, WebhookSink
from streamdet.alert.snapshot import render_snapshot, write_jpeg
from streamdet.alert.store import EventStore
from streamdet.capture.stage import CaptureStage
from streamdet.config import AlertsConfig, JsonlSinkConfig, MqttSinkConfig, WebhookSinkConfig
from streamdet.frames import ScoredFrame
from streamdet.inference.stage import InferenceStage

logger = logging.getLogger(__name__)


@dataclass
class _Open:
    """What the stage keeps of an open event besides its rules state."""

    event_id: str
    peak_frame: np.ndarray | None = None
    peak_map: np.ndarray | None = None


class AlertStage:
    def __init__(
        self,
        config: AlertsConfig,
        capture: CaptureStage,
        inference: InferenceStage,
        poll_s: float = 0.1,
    ) -> None:
        self.config = config
        self.capture, self.inference = capture, inference
        self.poll_s = poll_s
        rules = RuleSettings(**config.rules.model_dump())
        self.trackers = {name: EventTracker(name, rules) for name in inference.detectors}
        self.store: EventStore | None = None
        self.sinks: list[Sink] = [self._sink(s) for s in config.sinks]
        self.dispatchers: list[Dispatcher] = []
        self.events_started: dict[str, int] = dict.fromkeys(self.trackers, 0)
        self._open: dict[str, _Open] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def _sink(self, sink: JsonlSinkConfig | WebhookSinkConfig | MqttSinkConfig) -> Sink:
        if isinstance(sink, JsonlSinkConfig):
            path = sink.path if sink.path.is_absolute() else self.config.dir / sink.path
            return JsonlSink(sink.name, path)
        if isinstance(sink, MqttSinkConfig):
            return MqttSink(sink)
        return WebhookSink(sink.name, sink.url, sink.timeout_s)

    async def start(self) -> None:
        if self._tasks:
            return
        self.store = EventStore(self.config.dir / "events.db")
        self.inference.open_output()
        backoff = {s.name: getattr(s, "max_backoff_s", 60.0) for s in self.config.sinks}
        self.dispatchers = [Dispatcher(s, self.store, backoff[s.name]) for s in self.sinks]
        self._tasks = [asyncio.create_task(self._consume(), name="alert:rules")]
        self._tasks.append(asyncio.create_task(self._retain(), name="alert:retention"))
        self._tasks += [
            asyncio.create_task(d.run(), name=f"alert:sink:{d.sink.name}") for d in self.dispatchers
        ]

    async def stop(self) -> None:
        """Stop the tasks (pending deliveries stay in the outbox for the next start)."""
        for task in reversed(self._tasks):
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for sink in self.sinks:
            await sink.close()
        if self.store is not None:
            self.store.close()
            self.store = None

    async def _consume(self) -> None:
        while True:
            frames = self.inference.drain()
            for frame in frames:
                try:
                    await self._feed(frame)
                except Exception:  # the stage boundary: one bad frame must not end alerting
                    logger.exception("[%s] alert rules failed", frame.ref.camera)
            await asyncio.sleep(self.poll_s)

    async def _retain(self, every_s: float = 60.0) -> None:
        retention = self.config.retention
        while True:
            removed = await asyncio.to_thread(
                prune,
                self.config.dir / "snapshots",
                retention.max_age_days * 86400,
                int(retention.max_megabytes * 1e6),
            )
            if removed:
                logger.info("retention: removed %d old snapshot(s)", len(removed))
            await asyncio.sleep(every_s)

    async def _feed(self, frame: ScoredFrame) -> None:
        camera = frame.ref.camera
        obs = Observation(
            frame.ref.wall_time, frame.ref.seq, frame.smoothed, frame.threshold, frame.anomaly_map
        )
        for update in self.trackers[camera].feed(obs):
            if update.change is not Change.ENDED and update.event.peak_seq == frame.ref.seq:
                self._keep_peak(camera, frame)
            await self._record(update)

    def _keep_peak(self, camera: str, frame: ScoredFrame) -> None:
        state = self._open.setdefault(camera, _Open(""))
        pixels = self.capture.ring(camera).read(frame.ref)
        if pixels is not None:  # gone already if scoring fell far behind: keep the older peak
            state.peak_frame, state.peak_map = pixels, frame.anomaly_map

    async def _record(self, update: Update) -> None:
        camera = update.event.camera
        state = self._open.setdefault(camera, _Open(""))
        detector = self.inference.detectors[camera]
        model = f"{detector.kind} v{detector.model.version if detector.model else 0}"
        names = [s.name for s in self.sinks]
        store = self.store
        if store is None:
            return
        payload = await asyncio.to_thread(
            store.record, update.change, update.event, state.event_id or None, model, names
        )
        state.event_id = payload["id"]
        if update.change is Change.STARTED:
            self.events_started[camera] += 1
            logger.info(
                "[%s] event %s started (score %.2f > %.2f)",
                camera,
                payload["id"],
                update.event.peak_score,
                update.event.threshold,
            )
        if update.change is Change.ENDED:
            await self._snapshot(camera, state, update)
            self._open.pop(camera, None)

    async def _snapshot(self, camera: str, state: _Open, update: Update) -> None:
        if state.peak_frame is None or state.peak_map is None or self.store is None:
            return
        image = render_snapshot(
            state.peak_frame, state.peak_map, update.event.threshold, update.event.region
        )
        path = self.config.dir / "snapshots" / f"{state.event_id}.jpg"
        await asyncio.to_thread(write_jpeg, path, image)
        await asyncio.to_thread(self.store.set_files, state.event_id, str(path), None)
