"""The optical-flow model ("flow"): its pure parts on known inputs, and that it learns normal."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from streamdet.capture.synthetic import ScheduledAnomaly, SyntheticScene
from streamdet.errors import ModelError
from streamdet.eval.metrics import auc
from streamdet.models import flow
from streamdet.models.base import ModelSpec, TrainingData, TrainSettings, no_progress, score_clip
from streamdet.models.export import export_onnx

W, H, PATCH = 160, 128, 16
FPS = 5.0


def test_direction_channels_put_each_pixel_in_its_nearest_sector() -> None:
    # right, left, down, up (image y points down), and a diagonal just off the horizontal
    u = torch.tensor([3.0, -2.0, 0.0, 0.0, 2.0])
    v = torch.tensor([0.0, 0.0, 4.0, -1.0, 1.5])
    out = flow.direction_channels(torch.stack([u, v]).view(1, 2, 1, 5), 4)[0, :, 0]
    speed = torch.hypot(u, v)
    assert torch.allclose(out[0], speed)
    assert torch.allclose(out[1:].sum(dim=0), speed)  # every pixel lands in exactly one sector
    assert out[1:].argmax(dim=0).tolist() == [0, 1, 2, 3, 0]
    assert flow.direction_channels(torch.stack([u, v]).view(1, 2, 1, 5), 0).shape[1] == 1


def test_cell_scales_are_floored_by_their_row() -> None:
    features = torch.zeros(100, 1, 2, 3)
    features[:, 0, 0, 0] = 4.0  # a busy cell
    features[:, 0, 0, 1] = 0.1  # a cell normal footage rarely moves in
    features[:, 0, 1] = 2.0  # a uniform row
    scale = flow.cell_scales(features, 0.999, 0.5)
    assert scale.shape == (1, 2, 3)
    assert scale[0, 0, 0] == pytest.approx(4.0)
    assert scale[0, 0, 1] == pytest.approx(2.0)  # floor: half the row's tail, not 0.1
    assert scale[0, 1].tolist() == pytest.approx([2.0, 2.0, 2.0])


def test_bad_params_are_clear_errors() -> None:
    with pytest.raises(ModelError, match="preset"):
        flow.build(ModelSpec("flow", W, H, PATCH, {"preset": "warp"}))
    with pytest.raises(ModelError, match="directions"):
        flow.build(ModelSpec("flow", W, H, PATCH, {"directions": 8}))


def test_output_shapes_at_its_size_and_another() -> None:
    model = flow.build(ModelSpec("flow", W, H, PATCH)).eval()
    for size in ((H, W), (96, 120)):  # the model's size, and one it must resize itself
        # a local generator: the global torch RNG seeds other tests' initial weights
        generator = torch.Generator().manual_seed(0)
        frames = torch.randint(0, 256, (3, 2, *size), dtype=torch.uint8, generator=generator)
        with torch.inference_mode():
            out = model(frames)
        assert out.anomaly_map.shape == (3, H // PATCH, W // PATCH)
        assert torch.equal(out.score, out.anomaly_map.amax(dim=(1, 2)))


def test_onnx_export_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="outside torch"):
        export_onnx(flow.build(ModelSpec("flow", W, H, PATCH)), tmp_path / "flow.onnx")


def _grey(scene: SyntheticScene, frames: range) -> np.ndarray:
    bgr = np.empty((scene.height, scene.width, 3), np.uint8)
    out = np.empty((len(frames), H, W), np.uint8)
    for i, n in enumerate(frames):
        scene.render(n, bgr)
        out[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    return out


def test_learns_walkers_and_flags_a_cyclist() -> None:
    normal = SyntheticScene(W, H, fps=FPS, seed=1)
    model = flow.build(ModelSpec("flow", W, H, PATCH))
    flow.train_flow(
        model, TrainingData([_grey(normal, range(200))], FPS), TrainSettings(), no_progress
    )
    fast = ScheduledAnomaly(kind="fast", start_s=50.0, duration_s=8.0)
    scene = SyntheticScene(W, H, fps=FPS, seed=1, anomalies=(fast,))
    frames = range(int(40 * FPS), int(64 * FPS))
    scores, _ = score_clip(model, _grey(scene, frames))
    labels = np.array([fast.start_s <= n / FPS < fast.start_s + fast.duration_s for n in frames])
    # the cyclist crosses the small frame in a few frames, so it is out of view for much of its
    # labelled stretch (the motion model reaches 0.78 here too); where it is seen, it stands out
    assert auc(labels, scores) > 0.7
    assert scores[labels].max() > 2 * scores[~labels].max()
