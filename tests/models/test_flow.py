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


def test_row_and_global_scales_ignore_where_a_cell_is() -> None:
    features = torch.zeros(100, 1, 2, 3)
    features[:, 0, 0, 0] = 4.0  # a busy cell
    features[:, 0, 0, 1] = 0.1  # a cell normal footage rarely moves in
    features[:, 0, 1] = 2.0  # a uniform row
    row = flow.cell_scales(features, 1.0, 0.5, "row")
    assert row[0, 0].tolist() == pytest.approx([4.0, 4.0, 4.0])  # the row's tail, every cell
    assert row[0, 1].tolist() == pytest.approx([2.0, 2.0, 2.0])
    assert flow.cell_scales(features, 1.0, 0.5, "global").flatten().tolist() == pytest.approx(
        [4.0] * 6
    )
    quiet = torch.zeros(100, 1, 2, 1)
    quiet[:, 0, 0] = 2.0  # the second row never moves: floored by the global tail
    assert flow.cell_scales(quiet, 1.0, 0.5, "row")[0, 1, 0] == pytest.approx(1.0)


def test_moving_speed_is_the_speed_of_what_moves_not_how_much_moves() -> None:
    speed = torch.zeros(1, 1, 16, 16)
    speed[0, 0, 2:6, 2:6] = 3.0  # a small object moving 3 px/frame
    speed[0, 0, 8:16, 8:16] = 1.0  # a big slow one
    speed[0, 0, 0, 15] = 9.0  # one noisy flow pixel
    out = flow.moving_speed(speed, 0.5, 8, (2, 2))[0, 0]
    assert out[0, 0] == pytest.approx(3.0)  # the plain mean over its square would be ~0.75
    assert out[1, 1] == pytest.approx(1.0)
    assert out[0, 1] < 1.5  # the lone pixel is under the moving share: no object


def test_top_k_mean_of_cells() -> None:
    cells = torch.tensor([[[1.0, 5.0], [3.0, 0.0]]])
    assert flow.top_k_mean(cells, 1).item() == pytest.approx(5.0)
    assert flow.top_k_mean(cells, 2).item() == pytest.approx(4.0)
    assert flow.top_k_mean(cells, 9).item() == pytest.approx(2.25)


def test_speed_only_size_and_top_k_options_give_their_outputs() -> None:
    params = {"directions": 0, "scale": "row", "moving": 0.3, "size_weight": 1.0, "top_k": 2}
    model = flow.build(ModelSpec("flow", W, H, PATCH, params)).eval()
    assert model.cell_scale.shape == (2, H // PATCH, W // PATCH)  # speed and size
    generator = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (2, 2, H, W), dtype=torch.uint8, generator=generator)
    with torch.inference_mode():
        out = model(frames)
    assert torch.allclose(out.score, flow.top_k_mean(out.anomaly_map, 2))
    with pytest.raises(ModelError, match="scale"):
        flow.build(ModelSpec("flow", W, H, PATCH, {"scale": "pixel"}))
    with pytest.raises(ModelError, match="top_k"):
        flow.build(ModelSpec("flow", W, H, PATCH, {"top_k": 0}))
