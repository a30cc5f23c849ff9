"""The default model ("motionflow"): its cues on known inputs, its score, and that it learns."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from streamdet.capture.synthetic import ScheduledAnomaly, SyntheticScene
from streamdet.errors import ModelError
from streamdet.models import motionflow
from streamdet.models.base import ModelSpec, TrainingData, TrainSettings, no_progress, score_clip
from streamdet.models.export import export_onnx

W, H, PATCH = 160, 128, 16
FPS = 5.0


def _textured_square(shift: int) -> np.ndarray:
    """A grey frame with a 32x32 random-textured square whose left edge is at 40 + shift."""
    rng = np.random.default_rng(0)
    frame = np.full((H, W), 100, np.uint8)
    frame[48:80, 40 + shift : 72 + shift] = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    return frame


def test_cues_see_a_moving_square_where_and_as_fast_as_it_moves() -> None:
    model = motionflow.build(ModelSpec("motionflow", W, H, PATCH))
    frames = torch.from_numpy(np.stack([_textured_square(0), _textured_square(3)]))[None]
    cues = model.pixel_cues(frames)[0]
    moving, speed = cues[0].numpy(), cues[1].numpy()
    assert moving[50:78, 44:74].mean() > 0.5  # the textured body differs almost everywhere
    assert moving[:40].sum() == 0 and moving[:, 100:].sum() == 0  # the still background does not
    assert np.median(speed[56:72, 50:66]) == pytest.approx(3.0, abs=0.75)  # 3 px to the right
    assert np.median(speed[:30, :30]) < 0.3
    features = model.features(frames)[0]
    assert features.shape == (2, H // PATCH, W // PATCH)
    row, col = np.unravel_index(int(features[1].argmax()), features.shape[1:])
    assert 2 <= row <= 5 and 2 <= col <= 5  # the cell the square is in (rows 3-4, cols 2-4)


def test_a_batch_split_over_the_pool_gives_each_windows_own_cues() -> None:
    # 9 windows: 3 chunks over the worker pool, each thread reusing its DIS object; every
    # window's features equal the window scored alone, in a fresh thread's first DIS call
    model = motionflow.build(ModelSpec("motionflow", W, H, PATCH))
    shifts = [0, 3, 1, 5, 2, 0, 4, 6, 1]
    frames = torch.from_numpy(
        np.stack([np.stack([_textured_square(0), _textured_square(s)]) for s in shifts])
    )
    together = model.features(frames)
    alone: list[torch.Tensor] = []
    for i in range(len(shifts)):
        thread = threading.Thread(
            target=lambda i=i: alone.append(model.features(frames[i : i + 1]))
        )
        thread.start()
        thread.join()
    assert torch.equal(together, torch.cat(alone))


def test_score_is_the_sum_of_each_cues_z_scored_maximum() -> None:
    model = motionflow.build(ModelSpec("motionflow", W, H, PATCH)).eval()
    model.cue_mean.copy_(torch.tensor([0.1, 0.5]))
    model.cue_std.copy_(torch.tensor([0.2, 0.25]))
    frames = torch.from_numpy(np.stack([_textured_square(0), _textured_square(3)]))[None]
    features = model.features(frames)
    with torch.inference_mode():
        out = model(frames)
    peaks = features.amax(dim=(2, 3))[0]
    expected = (peaks[0] - 0.1) / 0.2 + (peaks[1] - 0.5) / 0.25
    assert out.score.item() == pytest.approx(expected.item(), rel=1e-5)
    cells = (features[0, 0] - 0.1) / 0.2 + (features[0, 1] - 0.5) / 0.25
    assert torch.allclose(out.anomaly_map[0], cells)
    assert out.score.item() >= out.anomaly_map.max().item() - 1e-5  # the map's peak, at most


def test_bad_params_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"unknown params.*'levle'"):
        motionflow.build(ModelSpec("motionflow", W, H, PATCH, {"levle": 10}))
    with pytest.raises(ModelError, match="finest_scale"):
        motionflow.build(ModelSpec("motionflow", W, H, PATCH, {"finest_scale": 9}))
    with pytest.raises(ModelError, match="outside torch"):
        export_onnx(motionflow.build(ModelSpec("motionflow", W, H, PATCH)), tmp_path / "m.onnx")


def _grey(scene: SyntheticScene, frames: range) -> np.ndarray:
    bgr = np.empty((scene.height, scene.width, 3), np.uint8)
    out = np.empty((len(frames), scene.height, scene.width), np.uint8)
    for i, n in enumerate(frames):
        scene.render(n, bgr)
        out[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    return out


def test_learns_walkers_and_flags_a_cyclist() -> None:
    # a camera's default analysis size (320x240), resized by the model to its own (360x240)
    normal = SyntheticScene(320, 240, fps=FPS, seed=1)
    model = motionflow.build(motionflow.default_spec())
    data = TrainingData([_grey(normal, range(200))], FPS)
    motionflow.train_motionflow(model, data, TrainSettings(), no_progress)
    assert model.cue_std.min() > 1e-3  # statistics came from footage, not the defaults
    fast = ScheduledAnomaly(kind="fast", start_s=50.0, duration_s=8.0)
    scene = SyntheticScene(320, 240, fps=FPS, seed=1, anomalies=(fast,))
    frames = range(int(40 * FPS), int(64 * FPS))
    scores, _ = score_clip(model, _grey(scene, frames))
    labels = np.array([fast.start_s <= n / FPS < fast.start_s + fast.duration_s for n in frames])
    # The cyclist crosses the frame in about 2 s of its 8 s labelled stretch, so most labelled
    # frames show an ordinary scene; the frames that show it stand far above every normal one.
    normal_max = scores[~labels].max()
    assert scores[labels].max() > 3 * normal_max
    assert (scores[labels] > normal_max).sum() >= 5


def test_too_little_footage_is_a_clear_error() -> None:
    model = motionflow.build(ModelSpec("motionflow", W, H, PATCH))
    one_pair = TrainingData([np.zeros((2, H, W), np.uint8)], FPS)
    with pytest.raises(ModelError, match="at least 2 training windows"):
        motionflow.train_motionflow(model, one_pair, TrainSettings(), no_progress)
