"""The alert stage: scored frames -> event rules -> durable store -> sinks.

Runs on the asyncio loop. Woken by its hand-off (``scored``: the frames inference scored, each
naming its model), it takes every frame waiting, feeds each camera's rules, and records every
start/update/end in the store — before any sink sees it. Of the frames it knows only what the
``FrameReader`` the App gave it offers (no capture or inference object). The peak frame of an
open event is copied out of the ring at once (rings are short),
with a reference to its chunk of the camera's footage; before the end is recorded, its snapshot
is written with the heatmap: on the camera's own frame decoded from that footage, or on the
ring's model-size frame when there is none. While an event is open the
camera's clip buffer holds its footage; after the end plus the post-roll a clip task cuts it and
writes the MP4. The end's deliveries wait for the clip (held in the outbox), so that the
``ended`` record every sink gets names both files. One dispatcher task per sink delivers from the
store's outbox, woken by the store, so a failing sink delays only itself. Stopping ends the
open events where they are (every step of the stop is attempted even if one fails), and a
start ends those a killed run left open. ``snapshot()`` is what metrics and the web read.
``add_camera`` / ``remove_camera`` change the set of cameras (a config reload); a removed
camera's open event ends where it is. An event
of an object-level model keeps its unusual objects' feature rows at up to 32 of its frames and
the peak (``EventSamples``), stored with its end, so that an operator can later mark it normal
and the camera learn it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from streamdet.alert.clip import write_clip
from streamdet.alert.health import BaselineOf, HealthChecks
from streamdet.alert.peakframe import FootageError, PeakFootage, decode_peak, find_peak
from streamdet.alert.reader import FrameReader
from streamdet.alert.retention import prune
from streamdet.alert.rules import (
    Change,
    EventState,
    EventTracker,
    Observation,
    RuleSettings,
    Update,
    unusual_objects,
)
from streamdet.alert.samples import EventSamples
from streamdet.alert.sinks import Dispatcher, Sink, make_sink
from streamdet.alert.snapshot import render_snapshot, write_jpeg
from streamdet.alert.store import EventStore
from streamdet.config import AlertsConfig
from streamdet.footage import FootageBuffer
from streamdet.frames import ScoredFrame
from streamdet.handoff import Handoff
from streamdet.lifecycle import cancel_tasks, stop_all
from streamdet.snapshots import AlertSnapshot, SinkSnapshot

logger = logging.getLogger(__name__)


@dataclass
class _Open:
    """What the stage keeps of an open event besides its rules state."""

    event_id: str
    peak_frame: np.ndarray | None = None
    peak_map: np.ndarray | None = None
    peak_seq: int = -1
    peak_footage: PeakFootage | None = None  # the peak frame as the camera sent it
    hold: int | None = None  # keeps the event's footage in the camera's clip buffer
    samples: EventSamples = field(default_factory=EventSamples)  # its objects' feature rows


class AlertStage:
    """Scored frames in, events out (see the module docstring)."""

    def __init__(
        self,
        config: AlertsConfig,
        scored: Handoff[ScoredFrame],
        frames: FrameReader,
        cameras: list[str],
        health_baseline: BaselineOf = lambda camera: None,
        flush_s: float = 5.0,
    ) -> None:
        """``cameras``: those scored; ``health_baseline``: a camera's learned normal look once
        it detects (None: its health is not checked)."""
        self.config = config
        self.scored, self.frames = scored, frames
        self.flush_s = flush_s
        self._rules = rules = RuleSettings(**config.rules.model_dump())
        self.trackers = {name: EventTracker(name, rules) for name in cameras}
        self._models: dict[str, str] = {}  # camera -> the model of its newest scored frame
        self.store: EventStore | None = None
        self.sinks: list[Sink] = [make_sink(s, config.dir) for s in config.sinks]
        self.dispatchers: list[Dispatcher] = []
        self.events_started: dict[str, int] = dict.fromkeys(self.trackers, 0)
        self.clips_written = 0
        self.clip_failures = 0
        self.health: HealthChecks | None = None
        if config.health.enabled:
            self.health = HealthChecks(list(self.trackers), frames, health_baseline, config.health)
        self.health_events: collections.Counter[tuple[str, str]] = collections.Counter()
        self._health_ids: dict[tuple[str, str], str] = {}
        self._open: dict[str, _Open] = {}
        # Each camera's recent frames above the threshold: an event's peak is among them.
        self._hot = {name: collections.deque[ScoredFrame](maxlen=256) for name in self.trackers}
        self._tasks: list[asyncio.Task[None]] = []
        self._clip_tasks: set[asyncio.Task[None]] = set()
        self._closing = asyncio.Event()
        self._feeding = asyncio.Lock()  # a camera is removed between two frames, not inside one
        self._ring_snapshots: set[str] = set()  # cameras told once why a snapshot is small

    async def start(self) -> None:
        if self._tasks:
            return
        self.store = store = EventStore(self.config.dir / "events.db")
        await self._close_earlier_runs(store)
        backoff = {s.name: getattr(s, "max_backoff_s", 60.0) for s in self.config.sinks}
        self.dispatchers = [Dispatcher(s, self.store, backoff[s.name]) for s in self.sinks]
        self._tasks = [asyncio.create_task(self._consume(), name="alert:rules")]
        if self.health is not None:
            self._tasks.append(asyncio.create_task(self._check_health(), name="alert:health"))
        self._tasks.append(asyncio.create_task(self._retain(), name="alert:retention"))
        self._tasks += [
            asyncio.create_task(d.run(), name=f"alert:sink:{d.sink.name}") for d in self.dispatchers
        ]

    def add_camera(self, camera: str) -> None:
        """Watch ``camera``'s scores too (its inference must run already)."""
        self.trackers[camera] = EventTracker(camera, self._rules)
        self.events_started[camera] = 0
        self._hot[camera] = collections.deque(maxlen=256)
        if self.health is not None:
            self.health.add(camera)

    async def remove_camera(self, camera: str) -> None:
        """End ``camera``'s open event where it is (snapshot, clip from the footage there is,
        an ``ended`` record to every sink), then forget the camera (before its inference)."""
        async with self._feeding:
            tracker = self.trackers.pop(camera, None)  # its frames on the way are skipped
            update = None if tracker is None else tracker.finish()
            if update is not None:
                logger.info("[%s] camera removed: ending the open event", camera)
                await self._record(update)
            self.events_started.pop(camera, None)
            self._hot.pop(camera, None)
            self._models.pop(camera, None)
            for ended in self.health.remove(camera) if self.health is not None else []:
                await self._record_health(ended)
            for key in [k for k in self.health_events if k[0] == camera]:
                del self.health_events[key]

    async def _close_earlier_runs(self, store: EventStore) -> None:
        """End what an earlier run left open (it was killed): its events, at their peak time
        (their footage went with it), and the ends that waited for a clip."""
        closed = await asyncio.to_thread(store.close_open, [s.name for s in self.sinks])
        for event in closed:
            logger.warning(
                "[%s] event %s was left open by an earlier run: ended at its peak time",
                event["camera"],
                event["id"],
            )
        if await asyncio.to_thread(store.release):
            logger.info("delivering the ends an earlier run held for their clips")

    async def stop(self) -> None:
        """End the open events (snapshot, clip from the footage there is, an ``ended`` record
        for every sink) and deliver what is owed for up to ``flush_s``; what is still owed
        then stays in the outbox for the next start. Every step is attempted even when one
        fails (``StopErrors`` after). Idempotent."""
        split = 3 if self.health is not None else 2  # rules (and health) checks, retention
        rules, dispatch = self._tasks[:split], self._tasks[split:]
        self._tasks = []
        steps: list[tuple[str, Callable[[], object]]] = [("the rules", lambda: cancel_tasks(rules))]
        if rules:
            steps.append(("the open events", self._end_open_events))
        steps.append(("the clips", self._finish_clips))
        if dispatch:
            steps.append(("the outbox", self._flush))
        steps.append(("the dispatchers", lambda: cancel_tasks(dispatch)))
        steps += [(f"sink {s.name}", s.close) for s in self.sinks]
        steps.append(("the event store", self._close_store))
        await stop_all(steps, "stopping alerting")

    async def _finish_clips(self) -> None:
        """Let the clip tasks write what footage there is (they stop waiting for more)."""
        self._closing.set()
        if self._clip_tasks:
            await asyncio.wait(self._clip_tasks, timeout=60)
        self._closing = asyncio.Event()

    def _close_store(self) -> None:
        for dispatcher in self.dispatchers:
            dispatcher.close()
        if self.store is not None:
            self.store.close()
            self.store = None

    def snapshot(self) -> AlertSnapshot:
        """What metrics and the web read: counts kept in memory (the outbox's too)."""
        owed = self.store.owed() if self.store is not None else {}
        sinks = tuple(
            SinkSnapshot(d.sink.name, d.delivered, d.failures, owed.get(d.sink.name, 0))
            for d in self.dispatchers
        )
        health: dict[str, dict[str, bool]] = {}
        if self.health is not None:
            for camera in list(self.health.trackers):
                conditions = self.health.snapshot(camera)
                if conditions is not None:
                    health[camera] = conditions
        return AlertSnapshot(
            dict(self.events_started),
            sinks,
            self.clips_written,
            self.clip_failures,
            health,
            dict(self.health_events),
        )

    async def _end_open_events(self) -> None:
        """Score what is left in the hand-off, then end every open event where it is."""
        for frame in self.scored.take():
            await self._feed(frame)
        for tracker in self.trackers.values():
            update = tracker.finish()
            if update is not None:
                logger.info("[%s] stopping: ending the open event", tracker.camera)
                await self._record(update)
        for update in self.health.finish() if self.health is not None else []:
            await self._record_health(update)

    async def _flush(self) -> None:
        """Let the dispatchers deliver what is owed, for up to ``flush_s``."""
        store = self.store
        deadline = time.monotonic() + self.flush_s
        while store is not None and time.monotonic() < deadline:
            if sum(store.owed().values()) == 0:
                return
            await asyncio.sleep(0.05)
        if store is not None:
            owed = sum(store.owed().values())
            logger.warning("stopping with %d delivery(ies) owed: sent at the next start", owed)

    async def _consume(self) -> None:
        while True:
            for frame in await self.scored.get():  # woken by the hand-off: no polling
                try:
                    await self._feed(frame)
                except Exception:  # the stage boundary: one bad frame must not end alerting
                    logger.exception("[%s] alert rules failed", frame.ref.camera)

    async def _retain(self, every_s: float = 60.0) -> None:
        retention = self.config.retention
        while True:
            removed = await asyncio.to_thread(
                prune,
                [self.config.dir / "snapshots", self.config.dir / "clips"],
                retention.max_age_days * 86400,
                int(retention.max_megabytes * 1e6),
            )
            if removed:
                logger.info("retention: removed %d old snapshot(s) and clip(s)", len(removed))
            await asyncio.sleep(every_s)

    async def _check_health(self) -> None:
        """Every 1/check_fps: measure each camera against its normal look; record changes."""
        checks, every_s = self.health, 1.0 / self.config.health.check_fps
        while checks is not None:
            for update in await asyncio.to_thread(checks.check):
                try:
                    await self._record_health(update)
                except Exception:  # the stage boundary: one failed write must not end checks
                    logger.exception("[%s] health event not recorded", update.event.camera)
            await asyncio.sleep(every_s)

    async def _record_health(self, update: Update) -> None:
        """Store a health event's start or end and queue it for every sink (no files)."""
        event, store = update.event, self.store
        key = (event.camera, event.condition or "")
        if store is None:
            return
        payload = await asyncio.to_thread(
            store.record,
            update.change,
            event,
            self._health_ids.get(key),
            self._model_name(event.camera),
            [s.name for s in self.sinks],
        )
        if update.change is Change.STARTED:
            self._health_ids[key] = payload["id"]
            self.health_events[key] += 1
            logger.warning(
                "[%s] camera health: %s (%s), event %s",
                event.camera,
                event.condition,
                event.reason,
                payload["id"],
            )
        else:
            self._health_ids.pop(key, None)
            logger.info("[%s] camera health: %s is over", event.camera, event.condition)

    async def _feed(self, frame: ScoredFrame) -> None:
        async with self._feeding:
            if frame.ref.camera in self.trackers:  # else removed while its frame was on the way
                if frame.model:
                    self._models[frame.ref.camera] = frame.model
                await self._feed_tracker(frame)

    async def _feed_tracker(self, frame: ScoredFrame) -> None:
        camera = frame.ref.camera
        health = self.health
        if health is not None and health.suppresses(camera):  # a covered lens: no anomalies
            update = self.trackers[camera].finish()
            if update is not None:
                logger.info("[%s] camera health condition: ending the open event", camera)
                await self._record(update)
            self._hot[camera].clear()
            return
        obs = Observation.of(frame)
        hot = self._hot[camera]
        if frame.above:
            hot.append(frame)
        elif hot and self.trackers[camera].event is None:
            hot.clear()  # no event can start from frames before a dip below
        updates = self.trackers[camera].feed(obs)
        for update in updates:
            if update.change is not Change.ENDED:
                self._keep_peak(camera, update, frame)
            if update.change is Change.STARTED:
                self._hold_footage(camera, update)
            await self._record(update)
        self._sample(camera, obs, started=any(u.change is Change.STARTED for u in updates))

    def _sample(self, camera: str, obs: Observation, started: bool) -> None:
        """Keep the open event's unusual objects' feature rows (a start: those of the frames
        above the threshold that started it, this one among them)."""
        if self.trackers[camera].event is None:
            return
        samples = self._open.setdefault(camera, _Open("")).samples
        frames = [Observation.of(f) for f in self._hot[camera]] if started else [obs]
        for each in frames:
            samples.add(unusual_objects(each))

    def _model_name(self, camera: str) -> str:
        """The model of the camera's newest scored frame (its id and version)."""
        return self._models.get(camera, "unknown")

    def _hold_footage(self, camera: str, update: Update) -> None:
        buffer = self.frames.footage(camera)
        if buffer is not None:
            state = self._open.setdefault(camera, _Open(""))
            state.hold = buffer.hold(update.event.start - self.config.clips.pre_roll_s)

    def _keep_peak(self, camera: str, update: Update, frame: ScoredFrame) -> None:
        """Copy the event's peak frame out of the ring, for its snapshot. A start's peak is
        its first frame above the threshold, ``min_duration_s`` before the frame in hand."""
        state = self._open.setdefault(camera, _Open(""))
        seq = update.event.peak_seq
        peak = next((f for f in reversed(self._hot[camera]) if f.ref.seq == seq), frame)
        pixels = self.frames.read(peak.ref)
        if pixels is None and state.peak_frame is None:
            # Overwritten already (scoring fell far behind): the frame in hand, which is
            # above the threshold too, rather than no snapshot at all.
            peak, pixels = frame, self.frames.read(frame.ref)
        if pixels is not None:  # else keep the older peak
            state.peak_frame, state.peak_map = pixels, peak.anomaly_map
            buffer = self.frames.footage(camera)
            if buffer is not None and peak.ref.seq != state.peak_seq:
                state.peak_footage = find_peak(buffer, peak.ref)
            state.peak_seq = peak.ref.seq

    async def _record(self, update: Update) -> None:
        camera = update.event.camera
        state = self._open.setdefault(camera, _Open(""))
        model = self._model_name(camera)
        names = [s.name for s in self.sinks]
        store = self.store
        if store is None:
            return
        ended = update.change is Change.ENDED
        if ended:  # the end's deliveries name the snapshot, and whether it can be taught
            await self._snapshot(state, update)
            rows = state.samples.rows(update.event.objects)
            if rows is not None and state.event_id:
                await asyncio.to_thread(store.set_features, state.event_id, rows)
        payload = await asyncio.to_thread(
            functools.partial(
                store.record,
                update.change,
                update.event,
                state.event_id or None,
                model,
                names,
                held=ended and state.hold is not None,  # delivered once its clip is written
            )
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
            self._open.pop(camera, None)
            # The buffer is taken now: a camera removed by a reload leaves the capture next.
            buffer = self.frames.footage(camera)
            if state.hold is not None and buffer is not None:
                task = asyncio.create_task(
                    self._clip(camera, state.event_id, update.event, state.hold, buffer),
                    name=f"alert:clip:{state.event_id}",
                )
                self._clip_tasks.add(task)
                task.add_done_callback(self._clip_tasks.discard)

    async def _clip(
        self, camera: str, event_id: str, event: EventState, hold: int, buffer: FootageBuffer
    ) -> None:
        """After the post-roll, cut the event's footage and write its MP4; then the event's
        held end is delivered."""
        clips = self.config.clips
        start = event.start - clips.pre_roll_s
        until = min((event.end or event.start) + clips.post_roll_s, start + clips.max_s)
        give_up = until + 10.0  # a camera that went away: write what there is
        try:
            while (buffer.newest() or 0.0) < until and time.time() < give_up:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), 0.25)
                if self._closing.is_set():
                    break
            footage = buffer.cut(start, until)
            if footage is None or self.store is None:
                logger.warning("[%s] event %s: no footage left for a clip", camera, event_id)
                self.clip_failures += 1
                return
            path = await asyncio.to_thread(
                write_clip, footage, self.config.dir / "clips" / f"{event_id}.mp4"
            )
            await asyncio.to_thread(self.store.set_files, event_id, None, str(path))
            self.clips_written += 1
            logger.info("[%s] event %s: clip of %.1f s", camera, event_id, footage.seconds)
        except Exception:  # one clip failing must not end alerting
            self.clip_failures += 1
            logger.exception("[%s] event %s: the clip could not be written", camera, event_id)
        finally:
            buffer.release(hold)
            if self.store is not None:  # the end goes out now, naming the clip if there is one
                await asyncio.to_thread(self.store.release, event_id)

    async def _snapshot(self, state: _Open, update: Update) -> None:
        if state.peak_frame is None or state.peak_map is None or self.store is None:
            return
        path = self.config.dir / "snapshots" / f"{state.event_id}.jpg"
        frame = await asyncio.to_thread(
            self._peak_pixels, update.event.camera, state.peak_footage, state.peak_frame
        )
        event = update.event
        image = await asyncio.to_thread(
            render_snapshot, frame, state.peak_map, event.threshold, event.region, event.objects
        )
        await asyncio.to_thread(write_jpeg, path, image)
        await asyncio.to_thread(self.store.set_files, state.event_id, str(path), None)

    def _peak_pixels(
        self, camera: str, footage: PeakFootage | None, ring_frame: np.ndarray
    ) -> np.ndarray:
        """The peak frame at the camera's resolution and colour, decoded from its footage;
        else the ring's model-size frame, so that no event goes without a snapshot."""
        if self.frames.footage(camera) is None:
            return ring_frame  # clips are off: no footage to take it from
        try:
            if footage is None:
                raise FootageError("no footage of the peak frame is left")
            return decode_peak(footage)
        except FootageError as exc:
            log = logger.debug if camera in self._ring_snapshots else logger.info
            self._ring_snapshots.add(camera)
            log("[%s] snapshot at the model's size: %s", camera, exc)
            return ring_frame
