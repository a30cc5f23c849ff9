"""A camera's detector learning in place: a camera that streams late, a model that cannot be
saved."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from streamdet.config import parse_config
from streamdet.frames import ModelState
from tests.support.pipeline import Running
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


def test_a_learned_model_that_cannot_be_saved_still_detects_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    models = tmp_path / "models"
    config = parse_config(
        {
            "cameras": [
                {"name": "cam", "source": {"kind": "synthetic", **SMALL}, "frame": SMALL},
            ],
            "models": {"dir": str(models), "kind": "motion", "learn_seconds": 5},
            "alerts": {"dir": str(tmp_path / "events")},
            "server": {"port": 0},
        }
    )
    caplog.set_level(logging.INFO)
    with Running(config) as run:
        detector = run.app.inference.detectors["cam"]
        assert detector.state is ModelState.LEARNING
        models.write_text("")  # models.dir can no longer be made (e.g. a disk gone)
        wait_for(lambda: detector.state is ModelState.DETECTING, 40, "learning then detecting")
        wait_for(lambda: run.app.inference.analysed["cam"] >= 5, 20, "scores from the model")
        assert detector.error is not None and "learned model not saved" in detector.error
        assert "is under" in detector.error and "which is a file" in detector.error
        status, body = run.get("/api/cameras")
        assert status == 200
        assert "learned model not saved" in json.loads(body)["cameras"][0]["model"]["error"]
    assert any(
        r.levelno == logging.ERROR and "learned model not saved" in r.getMessage()
        for r in caplog.records
    )
    assert not any(r.exc_info for r in caplog.records)  # one clear line, not a traceback
