"""The inference stage keeps scoring the other cameras when one camera's model breaks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from torch import Tensor

from streamdet.capture.stage import CaptureStage
from streamdet.frames import ModelState
from streamdet.inference.stage import InferenceStage, Pace
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


def test_the_pace_scales_a_window_with_a_dropped_frame_and_trusts_nothing_odd() -> None:
    """A camera at 25 fps: a window whose last two frames are 80 ms apart (a frame dropped
    between them) moved everything twice as far, so its moves count half; steady windows,
    too few seen yet, no timestamps, or timestamps that jumped, count as they are."""
    pace = Pace()

    def window(interval: float) -> float:
        return pace.scale(np.array([10.0, 10.0 + interval]))

    assert [window(0.04) for _ in range(Pace.LEAST)] == [1.0] * Pace.LEAST  # too few yet
    assert window(0.04) == pytest.approx(1.0)
    assert window(0.08) == pytest.approx(0.5)  # a frame dropped
    assert window(0.04) == pytest.approx(1.0)
    assert window(float("nan")) == 1.0  # a stream without timestamps
    assert window(-3.0) == 1.0 and window(30.0) == 1.0  # restarted, jumped
    for _ in range(Pace.KEPT):  # the camera now sends 12.5 frames a second for good
        last = window(0.08)
    assert last == pytest.approx(1.0)
