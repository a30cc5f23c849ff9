"""The whole pipeline on synthetic cameras: learn in place, detect, serve metrics and the API."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from streamdet.app import App
from streamdet.config import Config, parse_config
from streamdet.frames import ModelState
from streamdet.models.motion import MotionModel
from tests.support.waiting import wait_for


def pipeline_config(models_dir: Path, **models: Any) -> Config:
    cameras = [
        {
            "name": f"cam-{i}",
            "source": {"kind": "synthetic", "seed": i, "width": 160, "height": 120},
            # cam-1 keeps colour frames: the models still see grey
            "frame": {"width": 160, "height": 120, "color": "bgr" if i else "grey"},
            "analysis_fps": 5,
        }
        for i in range(2)
    ]
    return parse_config(
        {
            "cameras": cameras,
            "models": {"dir": str(models_dir), "kind": "motion", "learn_seconds": 6, **models},
            "alerts": {"dir": str(models_dir.parent / "events")},
            "server": {"port": 0},
        }
    )


class Running:
    """An App running its asyncio loop on a background thread, for a test to poke at."""

    def __init__(self, config: Config, config_path: Path | None = None) -> None:
        self.app = App(config, config_path=config_path)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.done = threading.Event()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.app.start())
            self.loop.run_forever()
            self.loop.run_until_complete(self.app.stop())
        finally:
            self.done.set()

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        return self.request("GET", path, headers)

    def post(self, path: str) -> tuple[int, str]:
        return self.request("POST", path, timeout=20)

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, timeout: float = 5
    ) -> tuple[int, str]:
        async def fetch() -> tuple[int, str]:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
                session.request(method, f"{self.app.url}{path}", headers=headers) as response,
            ):
                return response.status, (await response.read()).decode(errors="replace")

        return asyncio.run_coroutine_threadsafe(fetch(), self.loop).result(timeout + 10)

    def __enter__(self) -> Running:
        self.thread.start()
        wait_for(lambda: self.app.url is not None or self.done.is_set(), 20, "the server")
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        assert self.done.wait(20), "the app did not stop"
        self.thread.join(5)


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
