"""Checkpoints round-trip exactly, damage gives clear errors, ONNX export matches PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch

from streamdet.errors import ModelError
from streamdet.models.base import AnomalyModel, score_clip
from streamdet.models.checkpoint import load_checkpoint, save_checkpoint
from streamdet.models.export import export_onnx
from streamdet.models.kinds import MODEL_KINDS
from streamdet.models.registry import MODELS, build_model, default_spec


def clip(frames: int = 12, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (160, 240), dtype=np.uint8)
    return np.stack([np.roll(base, 3 * i, axis=1) for i in range(frames)])


def perturbed(kind: str) -> AnomalyModel:
    """A model whose weights and buffers are not the defaults, so a lost tensor would show."""
    torch.manual_seed(1)
    model = build_model(default_spec(kind))
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.add_(torch.rand_like(tensor) * 0.1)
    return model


def test_registry_lists_every_kind() -> None:
    assert set(MODELS) == set(MODEL_KINDS)


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_checkpoint_round_trip_gives_identical_scores(kind: str, tmp_path: Path) -> None:
    model = perturbed(kind)
    save_checkpoint(model, tmp_path / kind, {"calibration": {"threshold": 3.5}})
    loaded, meta = load_checkpoint(tmp_path / kind)
    assert meta["calibration"]["threshold"] == 3.5 and meta["kind"] == kind
    frames = clip()
    before, before_map = score_clip(model, frames)
    after, after_map = score_clip(loaded, frames)
    assert np.array_equal(before, after) and np.array_equal(before_map, after_map)


def test_damaged_and_mismatched_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    folder = save_checkpoint(perturbed("ae"), tmp_path / "ae")
    with pytest.raises(ModelError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing")
    weights = folder / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[: len(good) // 2])
    with pytest.raises(ModelError, match="damaged weights"):
        load_checkpoint(folder)
    weights.write_bytes(good)
    meta = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(
        json.dumps({**meta, "spec": {**meta["spec"], "kind": "predictor"}})
    )
    with pytest.raises(ModelError, match="do not fit a predictor model"):
        load_checkpoint(folder)
    (folder / "model.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(ModelError, match="retrain"):
        load_checkpoint(folder)
    (folder / "model.json").write_text("{broken")
    with pytest.raises(ModelError, match="damaged metadata"):
        load_checkpoint(folder)
    (folder / "model.json").write_text(
        json.dumps({**meta, "spec": {**meta["spec"], "kind": "nope"}})
    )
    with pytest.raises(ModelError, match="unknown model kind 'nope'"):
        load_checkpoint(folder)


@pytest.mark.parametrize("kind", ["motion", "ae"])
def test_onnx_export_matches_pytorch(kind: str, tmp_path: Path) -> None:
    model = perturbed(kind).eval()
    path = export_onnx(model, tmp_path / f"{kind}.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    frames = clip(model.context + 3)
    windows = np.stack([frames[i : i + model.context + 1] for i in range(3)])
    score, amap = session.run(None, {"frames": windows})
    with torch.inference_mode():
        expected = model(torch.from_numpy(windows))
    np.testing.assert_allclose(score, expected.score.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(amap, expected.anomaly_map.numpy(), rtol=1e-4, atol=1e-4)
