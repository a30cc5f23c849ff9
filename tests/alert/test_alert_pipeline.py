"""Events end to end: each scheduled anomaly becomes exactly one event (none in between), stored
before delivery, with a snapshot and a clip, delivered to a JSONL file and to a webhook that is
down for a while."""

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

from streamdet.alert.store import EventStore
from streamdet.config import parse_config
from streamdet.frames import FrameRef, ScoredFrame
from tests.support.http import Receiver, ThreadedApp
from tests.support.pipeline import Running
from tests.support.scripted import PEAK_FIRST, run_script, stages
from tests.support.waiting import wait_for


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, ThreadedApp]]:
    hook = Receiver()
    with ThreadedApp(hook.app) as server:
        yield hook, server


ANOMALIES = [(30.0, 5.0), (45.0, 4.0)]  # scene seconds: start, duration; quiet in between


def test_each_anomaly_is_one_event_stored_snapshotted_clipped_and_delivered_once(
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
                        "anomalies": [
                            {"kind": "fast", "start_s": start, "duration_s": duration}
                            for start, duration in ANOMALIES
                        ],
                    },
                    "analysis_fps": 5,
                }
            ],
            "models": {"dir": str(tmp_path / "models"), "kind": "motion", "learn_seconds": 20},
            "alerts": {
                "dir": str(tmp_path / "events"),
                "rules": {"cooldown_s": 5},
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
        alerts = run.app.alerts
        wait_for(lambda: alerts.events_started["path"] >= 1, 40, "the first event")
        wait_for(lambda: hook.refused >= 2, 10, "the webhook to be refused a few times")
        hook.up.set()  # the receiver comes back: everything owed is delivered now
        clock = SceneClock(run)
        wait_for(lambda: clock.now() > 56, 40, "the scene to pass both anomalies")
        try:
            wait_for(lambda: alerts.clips_written >= 2, 20, "the clips")
        except AssertionError as exc:  # say what there was instead
            assert alerts.store is not None
            found = [
                (e["start"] - clock.offset, e["end"] and e["end"] - clock.offset, e["clip"])
                for e in alerts.store.events()
            ]
            raise AssertionError(f"{exc}; events (scene s) {found}") from None
        assert alerts.store is not None
        wait_for(lambda: alerts.store is not None and alerts.store.pending() == 0, 20, "delivery")
        offset = clock.offset
        events = sorted(alerts.store.events(), key=lambda e: e["start"])
        status, body = run.get("/api/events?camera=path")
        listed = json.loads(body)["events"]
        media = [
            (
                run.get(f"/api/events/{e['id']}/snapshot.jpg")[0],
                run.get(f"/api/events/{e['id']}/clip.mp4"),
            )
            for e in events
        ]
        assert run.get("/api/events/..%2F..%2Fetc%2Fpasswd")[0] == 404
        assert run.get(f"/api/events/{'0' * 32}")[0] == 404
        metrics = run.get("/metrics")[1]
    # Each anomaly is one event, and no event comes from the quiet stretches.
    assert len(events) == len(ANOMALIES), events
    for event, (start, duration) in zip(events, ANOMALIES, strict=True):
        assert event["end"] is not None
        # The start lies within the anomaly (give or take the pacing's jitter of wall times).
        assert start - 0.3 <= event["start"] - offset <= start + duration, (event, offset)
        assert event["end"] - offset <= start + duration + 5  # ends soon after (end_after_s 2)
        assert np.isfinite(event["peak_score"]) and event["peak_score"] > event["threshold"]
    assert status == 200 and {e["id"] for e in listed} == {e["id"] for e in events}
    for event, (snap_status, (clip_status, clip_bytes)) in zip(events, media, strict=True):
        assert snap_status == 200
        image = cv2.imread(event["snapshot"])
        # The camera's own frame (a JPEG of its footage), in colour, not the model's 320x240.
        assert image is not None and image.shape == (360, 480, 3)
        assert np.abs(image.astype(int) - image[..., :1]).mean() > 2  # the channels differ
        # The clip plays: decoded back, at the camera's resolution, from pre- to post-roll.
        assert clip_status == 200 and len(clip_bytes) > 1000
        with av.open(event["clip"]) as clip:
            frames = [f.time for f in clip.decode(video=0)]
            shape = (clip.streams.video[0].height, clip.streams.video[0].width)
        assert shape == (360, 480)
        span = event["end"] - event["start"]
        # A busy machine delays frames now and then: the ends may miss by a frame or a few.
        assert span + 2 + 1 - 1.0 <= frames[-1] - frames[0] <= span + 2 + 1 + 0.5, (frames, span)
        assert len(frames) >= 10 * (span + 2)  # 10 frames/s
    # Webhook: every revision exactly once, in spite of the refusals; each event in order.
    keys = Counter(key for key, _ in hook.received)
    assert keys and max(keys.values()) == 1
    for event in events:
        changes = [p["change"] for _, p in hook.received if p["id"] == event["id"]]
        assert changes[0] == "started" and changes[-1] == "ended"
        ended = [p for _, p in hook.received if p["id"] == event["id"]][-1]
        assert ended["snapshot"] == event["snapshot"]  # the end names its snapshot
        assert ended["clip"] == event["clip"]  # and its clip: the end waited for it
    lines = [
        json.loads(line) for line in (tmp_path / "events" / "events.jsonl").read_text().splitlines()
    ]
    for event in events:
        (ended,) = [e for e in lines if e["id"] == event["id"] and e["change"] == "ended"]
        assert ended["clip"] == event["clip"] and ended["snapshot"] == event["snapshot"]
    assert Counter(line["idempotency_key"] for line in lines) == keys
    assert f'streamdet_events_total{{camera="path"}} {len(ANOMALIES)}.0' in metrics
    assert 'streamdet_outbox_depth{sink="webhook"} 0.0' in metrics
    assert f"streamdet_clips_total {len(ANOMALIES)}.0" in metrics
    assert "streamdet_clip_failures_total 0.0" in metrics
    footage = float(metrics.split('streamdet_clip_buffer_bytes{camera="path"} ')[1].split()[0])
    assert footage > 0
    failures = float(metrics.split('streamdet_sink_failures_total{sink="webhook"} ')[1].split()[0])
    assert failures >= 2
    assert time.time() > events[-1]["end"]


class SceneClock:
    """Scene time of the newest scored frame, and the wall-minus-scene offset of the camera.

    The synthetic camera paces frames at real time, so a frame is never decoded before
    ``origin + pts``, but may be late when the machine is busy: the smallest offset seen is the
    camera's clock.
    """

    def __init__(self, run: Running) -> None:
        self.run, self.offset = run, float("inf")

    def now(self) -> float:
        frame = self.run.app.inference.latest.get("path")
        if frame is None or frame.ref.pts_s is None:
            return 0.0
        self.offset = min(self.offset, frame.ref.wall_time - frame.ref.pts_s)
        return frame.ref.pts_s


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


def test_an_event_whose_peak_is_its_first_frame_above_the_threshold_gets_a_snapshot(
    tmp_path: Path,
) -> None:
    """The rules start an event ``min_duration_s`` after its first frame above the threshold,
    which is its peak when the score only falls from there: the snapshot must be of that frame,
    not be skipped because the frame in hand is not the peak."""
    config = parse_config(
        {
            "cameras": [{"name": "path", "source": {"kind": "synthetic", "seed": 1}}],
            "models": {"dir": str(tmp_path / "models"), "learn_in_place": False},
            "alerts": {
                "dir": str(tmp_path / "events"),
                "rules": {"min_duration_s": 0.3, "end_after_s": 0.3},
                "clips": {"enabled": False},
            },
        }
    )

    def scored(ref: FrameRef, score: float) -> ScoredFrame:
        cells = np.zeros((6, 8), np.float32)
        cells[2, 3] = score  # one cell: an anomaly, not a global change
        return ScoredFrame(ref, score, score, 4.0, cells, time.time())

    run_script(stages(config), "path", PEAK_FIRST, scored)
    store = EventStore(tmp_path / "events" / "events.db")
    (event,) = store.events()
    assert event["end"] is not None and event["peak_score"] == 9.0
    assert event["snapshot"] is not None, event
    assert cv2.imread(event["snapshot"]) is not None
