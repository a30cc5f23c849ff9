"""The inference stage keeps scoring the other cameras when one camera's model breaks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry
from torch import Tensor

from streamdet.capture.stage import CaptureStage
from streamdet.frames import ModelState
from streamdet.inference.stage import InferenceStage
from streamdet.metrics import PipelineMetrics
from streamdet.models.motion import MotionModel
from streamdet.models.registry import default_spec
from tests.support.pipeline import pipeline_config


class BrokenMotion(MotionModel):
    """The same architecture as a good model (so it shares its batch), but it always fails."""

    def raw_map(self, frames: Tensor) -> Tensor:
        raise RuntimeError("boom")


def test_a_failing_model_is_taken_out_and_the_others_are_scored(tmp_path: Path) -> None:
    config = pipeline_config(tmp_path / "models")
    capture = CaptureStage(config.cameras, config.capture)
    registry = CollectorRegistry()
    stage = InferenceStage(
        capture, config.cameras, config.models, config.inference, PipelineMetrics(registry)
    )
    spec = default_spec("motion")
    stage.runner.add("cam-0", MotionModel(spec))
    stage.runner.add("cam-1", BrokenMotion(spec))
    windows = {c: np.zeros((2, 120, 160), np.uint8) for c in ("cam-0", "cam-1")}
    results = stage._run_batch(windows)
    assert set(results) == {"cam-0"}
    assert stage.detectors["cam-1"].state is ModelState.FAILED
    assert "boom" in (stage.detectors["cam-1"].error or "")
    assert stage.runner.cameras == ["cam-0"]
    assert set(stage._run_batch({"cam-0": windows["cam-0"]})) == {"cam-0"}  # and it goes on
