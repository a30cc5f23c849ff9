"""Events end to end: a scheduled anomaly becomes exactly one event, stored before delivery,
with a snapshot and a clip, delivered to a JSONL file and to a webhook that is down for a while."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from streamdet.config import parse_config
from tests.pipeline.test_run import Running
from tests.support.http import Receiver, ThreadedApp
from tests.support.waiting import wait_for


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, ThreadedApp]]:
    hook = Receiver()
    with ThreadedApp(hook.app) as server:
        yield hook, server


def test_an_anomaly_is_one_event_stored_snapshotted_clipped_and_delivered_once(
    tmp_path: Path, receiver: tuple[Receiver, ThreadedApp]
) -> None:
    hook, server = receiver
    config = parse_config(
        {
            "cameras": [
                {
                    "name": "path",
                    "source": {
                        "kind": "synthetic",
                        "seed": 1,
                        "width": 480,  # the camera's resolution; the model sees 320x240
                        "height": 360,
                        "anomalies": [{"kind": "fast", "start_s": 18, "duration_s": 5}],
                    },
                    "analysis_fps": 5,
                }
            ],
            "models": {"dir": str(tmp_path / "models"), "kind": "motion", "learn_seconds": 8},
            "alerts": {
                "dir": str(tmp_path / "events"),
                "rules": {"cooldown_s": 60},
                "clips": {"pre_roll_s": 2, "post_roll_s": 1, "fps": 10},
                "sinks": [
                    {"kind": "jsonl"},
                    {
                        "kind": "webhook",
                        "url": f"http://127.0.0.1:{server.port}/hook",
                        "max_backoff_s": 1,
                    },
                ],
            },
            "server": {"port": 0},
        }
    )
    with Running(config) as run:
        store = run.app.alerts
        wait_for(lambda: store.events_started["path"] >= 1, 40, "the event")
        wait_for(lambda: hook.refused >= 2, 10, "the webhook to be refused a few times")
        hook.up.set()  # the receiver comes back: everything owed is delivered now
        assert store.store is not None
        wait_for(
            lambda: store.store is not None and store.store.events()[0]["end"] is not None,
            20,
            "the event to end",
        )
        wait_for(lambda: store.store is not None and store.store.pending() == 0, 20, "delivery")
        wait_for(lambda: store.clips_written == 1, 20, "the clip")
        events = store.store.events()
        status, body = run.get("/api/events?camera=path")
        listed = json.loads(body)["events"]
        eid = events[0]["id"]
        snap_status, _ = run.get(f"/api/events/{eid}/snapshot.jpg")
        clip_status, clip_bytes = run.get(f"/api/events/{eid}/clip.mp4")
        assert run.get("/api/events/..%2F..%2Fetc%2Fpasswd")[0] == 404
        assert run.get(f"/api/events/{'0' * 32}")[0] == 404
        metrics = run.get("/metrics")[1]
    assert len(events) == 1, events  # one anomaly, one event: no duplicates, no storm
    event = events[0]
    assert status == 200 and [e["id"] for e in listed] == [eid]
    assert snap_status == 200
    image = cv2.imread(event["snapshot"])
    assert image is not None and image.shape[0] > 0
    # The clip plays: decoded back, at the camera's resolution, from pre-roll to post-roll.
    assert clip_status == 200 and len(clip_bytes) > 1000
    with av.open(event["clip"]) as clip:
        frames = [f.time for f in clip.decode(video=0)]
        shape = (clip.streams.video[0].height, clip.streams.video[0].width)
    assert shape == (360, 480)
    span = event["end"] - event["start"]
    assert span + 2 + 1 - 0.5 <= frames[-1] - frames[0] <= span + 2 + 1 + 0.5, (frames, span)
    assert len(frames) >= 10 * (span + 2)  # 10 frames/s
    # Webhook: every revision exactly once, in spite of the refusals.
    keys = Counter(key for key, _ in hook.received)
    assert keys and max(keys.values()) == 1
    changes = [payload["change"] for _, payload in hook.received]
    assert changes[0] == "started" and changes[-1] == "ended"
    assert hook.received[-1][1]["snapshot"] == event["snapshot"]  # the end names its snapshot
    lines = [
        json.loads(line) for line in (tmp_path / "events" / "events.jsonl").read_text().splitlines()
    ]
    assert [line["idempotency_key"] for line in lines] == sorted(
        keys, key=lambda k: int(k.split("-")[1])
    )
    assert 'streamdet_events_total{camera="path"} 1.0' in metrics
    assert 'streamdet_outbox_depth{sink="webhook"} 0.0' in metrics
    assert "streamdet_clips_total 1.0" in metrics and "streamdet_clip_failures_total 0.0" in metrics
    footage = float(metrics.split('streamdet_clip_buffer_bytes{camera="path"} ')[1].split()[0])
    assert footage > 0
    failures = float(metrics.split('streamdet_sink_failures_total{sink="webhook"} ')[1].split()[0])
    assert failures >= 2
    assert np.isfinite(event["peak_score"]) and event["peak_score"] > event["threshold"]
    assert time.time() > event["end"] > event["start"]


def test_a_masked_anomaly_raises_no_event(tmp_path: Path) -> None:
    whole_frame = [(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]
    config = parse_config(
        {
            "cameras": [
                {
                    "name": "path",
                    "source": {
                        "kind": "synthetic",
                        "seed": 1,
                        "anomalies": [{"kind": "fast", "start_s": 10, "duration_s": 6}],
                    },
                    "masks": [whole_frame],  # e.g. a road the operator does not care about
                }
            ],
            "models": {"dir": str(tmp_path / "models"), "kind": "motion", "learn_seconds": 6},
            "alerts": {"dir": str(tmp_path / "events")},
            "server": {"port": 0},
        }
    )
    with Running(config) as run:
        inference = run.app.inference
        wait_for(lambda: inference.latest.get("path") is not None, 40, "scores")
        wait_for(
            lambda: (
                (f := inference.latest.get("path")) is not None
                and f.ref.pts_s is not None
                and f.ref.pts_s > 17
            ),
            30,
            "the anomaly to pass",
        )
        assert run.app.alerts.events_started["path"] == 0
        frame = inference.latest["path"]
        assert frame.score == float(frame.anomaly_map.min())  # only the floor is left
