"""Camera-health events end to end: a synthetic camera learns normal in place (its model and
its normal look), then its picture goes out of focus while a cyclist races through. The blur
is one ``health`` event (stored, delivered to a JSONL sink, listed by /api/events?kind=health,
counted in /metrics); the cyclist, while the camera is blurred, is no anomaly event. A restart
loads the baseline with the model; a checkpoint from before health events runs without one. Over
a real RTSP server, a picture that freezes is one frozen event."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from streamdet.capture.synthetic import SceneFault, SyntheticScene
from streamdet.config import parse_config
from streamdet.inference.detector import Detector
from streamdet.learning.workflow import Budget, Plan, learn
from streamdet.models.base import TrainingData, TrainSettings
from streamdet.models.checkpoint import METADATA, save_checkpoint
from streamdet.models.registry import default_spec
from tests.support.media import footage, make_scene_clip
from tests.support.pipeline import Running
from tests.support.servers import RtspServer
from tests.support.waiting import wait_for

BLUR = (12.0, 10.0)  # scene seconds: start, duration (learning in place takes the first 6 s)
CYCLIST = (15.0, 5.0)  # inside the blur, once its event is open


def config(tmp_path: Path) -> dict[str, object]:
    return {
        "cameras": [
            {
                "name": "gate",
                "source": {
                    "kind": "synthetic",
                    "seed": 2,
                    "width": 320,  # at 160x120 the cyclist is not always an anomaly event
                    "height": 240,
                    "faults": [{"kind": "blur", "start_s": BLUR[0], "duration_s": BLUR[1]}],
                    "anomalies": [
                        {"kind": "fast", "start_s": CYCLIST[0], "duration_s": CYCLIST[1]}
                    ],
                },
                "frame": {"width": 320, "height": 240},
                "analysis_fps": 5,
            }
        ],
        "models": {"dir": str(tmp_path / "models"), "kind": "motion", "learn_seconds": 6},
        "alerts": {
            "dir": str(tmp_path / "events"),
            "health": {"check_fps": 4, "open_after_s": 1, "clear_after_s": 1},
            "sinks": [{"kind": "jsonl"}],
        },
        "server": {"port": 0},
    }


def test_a_blurred_camera_is_one_health_event_stored_delivered_listed_and_counted(
    tmp_path: Path,
) -> None:
    with Running(parse_config(config(tmp_path))) as run:
        alerts = run.app.alerts
        wait_for(lambda: alerts.health_events["gate", "blurred"] >= 1, 40, "the blur event")
        status, text = run.get("/metrics")
        assert 'streamdet_camera_health{camera="gate",condition="blurred"} 1.0' in text
        health = json.loads(run.get("/api/cameras")[1])["cameras"][0]["health"]
        assert health == {"covered": False, "blurred": True, "moved": False, "frozen": False}
        store = alerts.store
        assert store is not None
        ended = lambda: [e for e in store.events(kind="health") if e["end"] is not None]  # noqa: E731
        wait_for(lambda: ended(), 30, "the blur event to end")
        wait_for(lambda: store.pending() == 0, 10, "delivery")
        status, body = run.get("/api/events?kind=health")
        listed = json.loads(body)["events"]
        anomalies = json.loads(run.get("/api/events?kind=anomaly")[1])["events"]
        bad_status, bad_body = run.get("/api/events?kind=storm")
        metrics = run.get("/metrics")[1]
    assert status == 200 and len(listed) == 1, listed
    event = listed[0]
    assert (event["kind"], event["condition"], event["camera"]) == ("health", "blurred", "gate")
    assert event["end"] > event["start"] and "sharpness" in event["reason"]
    assert event["snapshot"] is None and event["clip"] is None
    # the cyclist raced through while the camera was blurred: not an anomaly event
    assert anomalies == [], anomalies
    assert bad_status == 400 and "kind" in bad_body
    assert 'streamdet_health_events_total{camera="gate",condition="blurred"} 1.0' in metrics
    assert 'streamdet_camera_health{camera="gate",condition="blurred"} 0.0' in metrics
    assert 'streamdet_camera_health{camera="gate",condition="covered"} 0.0' in metrics
    lines = (tmp_path / "events" / "events.jsonl").read_text().splitlines()
    delivered = [json.loads(line) for line in lines]
    assert [(d["kind"], d["condition"], d["change"]) for d in delivered] == [
        ("health", "blurred", "started"),
        ("health", "blurred", "ended"),
    ]

    # The baseline was saved with the model: a restart loads both.
    parsed = parse_config(config(tmp_path))
    restarted = Detector(parsed.cameras[0], parsed.models, "cpu")
    restarted.load_or_learn()
    assert (
        restarted.health is not None
        and restarted.health == run.app.inference.detectors["gate"].health
    )


@pytest.mark.rtsp
def test_a_frozen_rtsp_camera_is_one_frozen_event(tmp_path: Path) -> None:
    """Over real RTSP (H.264 from a GStreamer server) a still picture is not bit-identical: the
    encoder keeps refining it. It must still be frozen against the learned normal change."""
    clip = make_scene_clip(
        tmp_path / "freeze.mp4",
        frames=30 * 25,
        width=320,
        height=240,
        faults=(SceneFault("freeze", 20.0, 10.0),),  # after learning (a 2nd period, if need be)
    )
    server = RtspServer({"/cam": str(clip)})
    server.start()
    try:
        settings = config(tmp_path)
        camera = settings["cameras"][0]  # type: ignore[index]
        camera["source"] = {"kind": "rtsp", "url": server.url("/cam")}
        with Running(parse_config(settings)) as run:
            alerts = run.app.alerts
            wait_for(lambda: alerts.health_events["gate", "frozen"] >= 1, 45, "the frozen event")
            assert alerts.store is not None
            events = alerts.store.events(kind="health")
    finally:
        server.stop()
    assert [(e["condition"], e["kind"]) for e in events] == [("frozen", "health")], events
    assert "frame-to-frame change" in events[0]["reason"]


def test_a_checkpoint_from_before_health_events_runs_without_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    parsed = parse_config(config(tmp_path))
    learner = Detector(parsed.cameras[0], parsed.models, "cpu")
    # a model learned the product's way, then saved as older streamdet saved it: no "health"
    spec = default_spec("motion")
    clip = footage(SyntheticScene(seed=2), 8.0, (spec.width, spec.height))
    data = TrainingData([clip], 25.0)
    trained = learn(data, Plan(spec, TrainSettings(seed=0, max_seconds=30), Budget(5, 1, 0.5)))
    meta = trained.metadata("gate")
    assert "health" in meta
    del meta["health"]
    save_checkpoint(trained.model, learner.folder, meta)
    assert "health" not in json.loads((learner.folder / METADATA).read_text())
    with caplog.at_level(logging.INFO, logger="streamdet"):
        learner.load_or_learn()  # a checkpoint: nothing to learn
    assert learner.model is not None and learner.health is None
    assert "no health baseline" in caplog.text
