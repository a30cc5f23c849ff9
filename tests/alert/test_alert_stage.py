"""The alert stage alone: hand-made scored frames through its hand-off, the pixels from a ring
of the test's own (no capture, no inference, no model), events to a real JSONL file and a real
webhook on 127.0.0.1. Each test takes well under a second."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from streamdet.alert.stage import AlertStage
from streamdet.app import scored_handoff
from streamdet.capture.clips import ClipBuffer
from streamdet.capture.ring import FrameRing
from streamdet.capture.stage import CaptureStage
from streamdet.config import AlertsConfig
from streamdet.frames import FrameRef, ScoredFrame
from streamdet.handoff import Handoff
from streamdet.metrics import PipelineMetrics
from tests.support.http import Receiver, ThreadedApp
from tests.support.scripted import PEAK_FIRST

SHAPE = (72, 96)  # the ring's frames: grey, at a model's size
FPS = 10.0


class RingFrames:
    """The alert stage's ``FrameReader`` on one real ring (no footage: clips are off)."""

    def __init__(self, ring: FrameRing) -> None:
        self.ring = ring

    def read(self, ref: FrameRef) -> np.ndarray | None:
        return self.ring.read(ref) if ref.camera == self.ring.camera else None

    def newest(self, camera: str, count: int) -> tuple[list[FrameRef], np.ndarray]:
        return self.ring.window(min(count, self.ring.size - 1))

    def footage(self, camera: str) -> ClipBuffer | None:
        return None


def frames_for(ring: FrameRing, scores: list[float], model: str) -> list[ScoredFrame]:
    """One ring frame per score (its brightness is its index, so a snapshot tells which it
    is), scored as given; frame times 1/FPS apart, ending now."""
    start = time.time() - len(scores) / FPS
    scored = []
    for i, score in enumerate(scores):
        ring.writable()[:] = 5 * i
        ref = ring.commit(start + i / FPS, i / FPS, analyse=True)
        cells = np.zeros((6, 8), np.float32)
        cells[2, 3] = score  # one cell: a local anomaly
        scored.append(ScoredFrame(ref, score, score, 4.0, cells, ref.wall_time + 0.05, model=model))
    return scored


def alerts_config(tmp_path: Path, sinks: list[dict[str, object]]) -> AlertsConfig:
    return AlertsConfig.model_validate(
        {
            "dir": str(tmp_path),
            "rules": {"min_duration_s": 0.3, "end_after_s": 0.5},
            "clips": {"enabled": False},
            "health": {"enabled": False},
            "sinks": sinks,
        }
    )


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, ThreadedApp]]:
    hook = Receiver()
    hook.up.set()
    with ThreadedApp(hook.app) as server:
        yield hook, server


def test_scored_frames_alone_make_one_event_with_its_model_and_peak_snapshot(
    tmp_path: Path, receiver: tuple[Receiver, ThreadedApp]
) -> None:
    hook, server = receiver
    sinks = [
        {"kind": "jsonl", "name": "file", "path": "events.jsonl"},
        {"kind": "webhook", "name": "hook", "url": f"http://127.0.0.1:{server.port}/hook"},
    ]
    config = alerts_config(tmp_path, sinks)
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    scored = scored_handoff(256, metrics)
    ring = FrameRing("door", 64, SHAPE)
    alerts = AlertStage(config, scored, RingFrames(ring), ["door"])
    metrics.watch(_no_capture(), lambda: None, alerts.snapshot)
    frames = frames_for(ring, PEAK_FIRST, "objects v7")
    began = time.monotonic()

    async def scenario() -> float:
        await alerts.start()
        try:
            for frame in frames:  # from another thread, as the inference thread does
                await asyncio.to_thread(scored.put, frame)
            while len(hook.received) < 2:  # started, ended
                await asyncio.sleep(0.005)
            return time.monotonic() - began
        finally:
            await alerts.stop()

    took = asyncio.run(asyncio.wait_for(scenario(), 5))
    assert took < 1.0, f"the alert stage alone took {took:.2f} s"
    changes = [payload["change"] for _, payload in hook.received]
    assert changes == ["started", "ended"]
    ended = hook.received[-1][1]
    assert ended["model"] == "objects v7" and ended["camera"] == "door"
    assert ended["peak_score"] == 9.0
    # The snapshot is drawn on the peak frame: the ring's frame 5 (brightness 25).
    snapshot = cv2.imread(str(ended["snapshot"]), cv2.IMREAD_COLOR)
    assert snapshot is not None and snapshot.shape[:2] == SHAPE
    assert abs(float(np.median(snapshot)) - 25) < 12, float(np.median(snapshot))
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["change"] for line in lines] == ["started", "ended"]
    snap = alerts.snapshot()
    assert snap.events_started == {"door": 1}
    assert {s.name: (s.delivered, s.owed) for s in snap.sinks} == {"file": (2, 0), "hook": (2, 0)}
    text = generate_latest(registry).decode()
    assert 'streamdet_sink_deliveries_total{sink="hook"} 2.0' in text


def test_a_full_hand_off_drops_the_oldest_frames_counted_by_camera(tmp_path: Path) -> None:
    """Alerting behind: the frames that did not fit are counted, the newest are taken."""
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    scored = scored_handoff(8, metrics)
    ring = FrameRing("door", 64, SHAPE)
    alerts = AlertStage(alerts_config(tmp_path, []), scored, RingFrames(ring), ["door"])
    frames = frames_for(ring, [1.0] * 20, "motion v1")
    for frame in frames:  # before the stage runs: 12 do not fit
        scored.put(frame)

    async def scenario() -> None:
        await alerts.start()
        try:
            while len(scored):
                await asyncio.sleep(0.005)
        finally:
            await alerts.stop()

    asyncio.run(asyncio.wait_for(scenario(), 5))
    labels = {"camera": "door", "stage": "scored_frames", "reason": "full"}
    assert registry.get_sample_value("streamdet_handoff_dropped_total", labels) == 12
    old = {"camera": "door", "stage": "inference", "reason": "output_full"}
    assert registry.get_sample_value("streamdet_frames_dropped_total", old) == 12
    assert scored.snapshot().dropped == {("door", "full"): 12}


def test_a_scrape_runs_no_sqlite_query_and_shows_what_each_sink_owes(tmp_path: Path) -> None:
    """The outbox depth comes from the store's counts in memory, not a COUNT per sink."""
    sinks = [{"kind": "jsonl", "name": "file", "path": "events.jsonl"}]
    registry = CollectorRegistry()
    metrics = PipelineMetrics(registry)
    scored: Handoff[ScoredFrame] = scored_handoff(256, metrics)
    ring = FrameRing("door", 64, SHAPE)
    alerts = AlertStage(alerts_config(tmp_path, sinks), scored, RingFrames(ring), ["door"])
    metrics.watch(_no_capture(), lambda: None, alerts.snapshot)
    queries: list[str] = []

    async def scenario() -> str:
        await alerts.start()
        try:
            store = alerts.store
            assert store is not None
            for frame in frames_for(ring, PEAK_FIRST, "objects v7"):
                scored.put(frame)
            # delivered is counted once the sink has it, owed once the store has marked it
            while (sink := alerts.snapshot().sinks[0]).delivered < 2 or sink.owed:
                await asyncio.sleep(0.005)
            db: sqlite3.Connection = store._db
            db.set_trace_callback(queries.append)
            text = generate_latest(registry).decode()
            db.set_trace_callback(None)
            return text
        finally:
            await alerts.stop()

    text = asyncio.run(asyncio.wait_for(scenario(), 5))
    assert queries == []
    assert 'streamdet_outbox_depth{sink="file"} 0.0' in text
    assert 'streamdet_events_total{camera="door"} 1.0' in text


def _no_capture() -> CaptureStage:
    """The metrics' capture figures: no camera captures here."""

    class NoCameras:
        def status(self) -> list[object]:
            return []

    return cast(CaptureStage, NoCameras())
