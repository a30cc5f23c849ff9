"""The whole pipeline on synthetic cameras: learn in place, detect, serve metrics and the API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamdet.app import App
from streamdet.frames import ModelState
from streamdet.models.motion import MotionModel
from tests.support.pipeline import Running, pipeline_config
from tests.support.waiting import wait_for


@pytest.fixture
def models_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "models"


def states(app: App) -> set[ModelState]:
    return {s.state for s in app.inference.status()}


def test_pipeline_learns_in_place_then_detects_and_serves(models_dir: Path) -> None:
    with Running(pipeline_config(models_dir)) as run:
        app = run.app
        assert states(app) == {ModelState.LEARNING}
        status, body = run.get("/readyz")
        assert status == 200, body
        wait_for(lambda: states(app) == {ModelState.DETECTING}, 40, "learning then detecting")
        wait_for(
            lambda: all(app.inference.analysed[c] >= 10 for c in ("cam-0", "cam-1")), 20, "scores"
        )
        status, body = run.get("/api/cameras")
        cameras = {c["name"]: c for c in json.loads(body)["cameras"]}
        assert status == 200 and set(cameras) == {"cam-0", "cam-1"}
        for camera in cameras.values():
            assert camera["state"] == "running"
            assert camera["model"]["state"] == "detecting"
            assert camera["model"]["threshold"] > 0
            assert camera["score"] is not None and camera["latency_s"] < 5
        status, text = run.get("/metrics")
        assert status == 200
        assert 'streamdet_frames_analysed_total{camera="cam-0"}' in text
        assert 'streamdet_model_state{camera="cam-1",state="detecting"} 1.0' in text
        assert "streamdet_inference_batch_size_bucket" in text
        labels = 'camera="cam-0",reason="full",stage="scored_frames"'
        assert f"streamdet_handoff_dropped_total{{{labels}}}" in text  # 0 until alerting lags
        # Every scored frame names the model that scored it (what the events record).
        assert {app.inference.latest[c].model for c in ("cam-0", "cam-1")} == {
            f"motion v{MotionModel.version}"
        }
        assert run.get("/healthz")[0] == 200
        # Both cameras share the motion architecture: at least one batch scored them together.
        batches = app.registry.get_sample_value("streamdet_inference_batch_size_count")
        assert batches is not None and batches > 0
    for name in ("cam-0", "cam-1"):
        assert (models_dir / name / "model.safetensors").is_file()
    assert not [t for t in threading.enumerate() if t.name.startswith(("capture:", "inference"))]


def test_pipeline_loads_checkpoints_and_reports_damaged_ones(models_dir: Path) -> None:
    with Running(pipeline_config(models_dir)) as run:
        wait_for(lambda: states(run.app) == {ModelState.DETECTING}, 40, "first learning")
    (models_dir / "cam-1" / "model.safetensors").write_bytes(b"garbage")
    with Running(pipeline_config(models_dir)) as run:
        detectors = {s.camera: s for s in run.app.inference.status()}
        assert detectors["cam-0"].state is ModelState.DETECTING  # loaded at once, no learning
        assert detectors["cam-1"].state is ModelState.FAILED
        assert "damaged weights" in (detectors["cam-1"].error or "")
        status, body = run.get("/readyz")
        assert status == 503 and "cam-1: model failed" in body
        wait_for(lambda: run.app.inference.analysed["cam-0"] >= 5, 20, "cam-0 keeps scoring")
