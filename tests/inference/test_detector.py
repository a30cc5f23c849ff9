"""A camera's detector learning in place: a camera that streams late."""

from __future__ import annotations

import json
from pathlib import Path

from streamdet.config import parse_config
from streamdet.frames import ModelState
from tests.pipeline.test_run import Running
from tests.support.servers import RtspServer, free_port
from tests.support.waiting import wait_for

SMALL = {"width": 160, "height": 120}


def test_a_camera_without_frames_while_learning_keeps_learning_until_it_streams(
    tmp_path: Path, clip: Path
) -> None:
    port = free_port()  # nothing serves here yet: the camera is off
    server = RtspServer({"/cam": str(clip)}, port=port)
    config = parse_config(
        {
            "cameras": [{"name": "late", "source": {"kind": "rtsp", "url": server.url("/cam")}}],
            "capture": {"backoff": {"initial_s": 0.2, "max_s": 0.5}},
            "models": {"dir": str(tmp_path / "models"), "kind": "motion", "learn_seconds": 5},
            "alerts": {"dir": str(tmp_path / "events")},
            "server": {"port": 0},
        }
    )
    with Running(config) as run:
        detector = run.app.inference.detectors["late"]
        wait_for(lambda: detector.error is not None, 15, "the first learning period to end")
        # Not failed for good: still learning, and it says why.
        assert detector.state is ModelState.LEARNING, detector.error
        assert "waiting for footage" in detector.error
        status, body = run.get("/api/cameras")
        assert status == 200
        assert "waiting for footage" in json.loads(body)["cameras"][0]["model"]["error"]
        assert run.get("/readyz")[0] == 200
        server.start()  # the camera comes on
        try:
            wait_for(lambda: detector.state is ModelState.DETECTING, 60, "learning, then detecting")
            wait_for(lambda: run.app.inference.analysed["late"] >= 5, 20, "scores")
        finally:
            server.stop()
        assert detector.error is None
        assert run.get("/readyz")[0] == 200
    assert (tmp_path / "models" / "late" / "model.safetensors").is_file()
