"""A camera removed by a config reload while its event is open: the event ends where it is,
with a snapshot and a clip of the footage there is, and is delivered; the other cameras go on."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from streamdet.alert.stage import AlertStage
from streamdet.alert.store import EventStore
from streamdet.capture.stage import CaptureStage
from streamdet.config import parse_config
from streamdet.frames import ScoredFrame
from streamdet.inference.stage import InferenceStage
from streamdet.metrics import PipelineMetrics


def test_removing_a_camera_ends_its_open_event_and_skips_its_late_frames(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = parse_config(
        {
            "cameras": [
                {"name": name, "source": {"kind": "synthetic", "seed": seed}}
                for seed, name in enumerate(("path", "other"))
            ],
            "models": {"dir": str(tmp_path / "models"), "learn_in_place": False},
            "alerts": {
                "dir": str(tmp_path / "events"),
                # An event that would stay open for a minute on its own.
                "rules": {"min_duration_s": 0.3, "end_after_s": 60},
                "clips": {"pre_roll_s": 1, "post_roll_s": 1, "fps": 10},
            },
        }
    )
    capture = CaptureStage(config.cameras, config.capture, clips=config.alerts.clips)
    inference = InferenceStage(
        capture,
        config.cameras,
        config.models,
        config.inference,
        PipelineMetrics(CollectorRegistry()),
    )
    alerts = AlertStage(config.alerts, capture, inference, poll_s=0.02)

    def publish(camera: str, score: float) -> None:
        ref = capture.ring(camera).latest()
        assert ref is not None
        cells = np.zeros((6, 8), np.float32)
        cells[2, 3] = score  # one cell: an anomaly, not a global change
        inference._publish(ScoredFrame(ref, score, score, 4.0, cells, time.time()))

    async def until(what: str, done: Callable[[], object], seconds: float = 10.0) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    async def scenario() -> None:
        await alerts.start()
        try:
            await until("frames", lambda: all(capture.ring(c).latest() for c in capture.cameras))
            while alerts.events_started["path"] == 0:
                publish("path", 9.0)
                publish("other", 1.0)
                await until("a rules pass", lambda: not inference.output)
                await asyncio.sleep(0.1)
            publish("path", 9.0)  # on its way to the rules when the camera goes
            # The App's order: alerting lets go first, then inference, then capture.
            await alerts.remove_camera("path")
            inference.remove_camera("path")
            await asyncio.to_thread(capture.remove_camera, "path")
            for _ in range(5):
                publish("other", 1.0)
                await asyncio.sleep(0.05)
            await until("the rules to take other's frames", lambda: not inference.output)
        finally:
            await alerts.stop()  # ends the clip's wait for footage that will not come

    with caplog.at_level(logging.INFO), capture:
        asyncio.run(scenario())
    (event,) = EventStore(tmp_path / "events" / "events.db").events()
    assert event["camera"] == "path" and event["end"] is not None
    assert event["snapshot"] is not None and event["clip"] is not None, event
    lines = (tmp_path / "events" / "events.jsonl").read_text().splitlines()
    changes = [json.loads(line)["change"] for line in lines]
    assert changes[0] == "started" and changes[-1] == "ended", changes
    assert json.loads(lines[-1])["clip"] == event["clip"]
    assert "camera removed: ending the open event" in caplog.text
    assert "alert rules failed" not in caplog.text
    assert set(alerts.trackers) == {"other"} and set(alerts.events_started) == {"other"}
