"""The learning workflow on a short synthetic clip: footage from a file, learn (hold out,
train, calibrate, health baseline), save, load; footage from a live ring; a configured
camera's plan; checkpoints that cannot detect."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from streamdet.capture.ring import FrameRing
from streamdet.config import parse_config
from streamdet.errors import ModelError, SourceError
from streamdet.learning import saved
from streamdet.learning.footage import FootageCollector, collect_files
from streamdet.learning.workflow import (
    MIN_HELD_OUT,
    Budget,
    Plan,
    Trained,
    folds_for,
    learn,
    split_blocks,
)
from streamdet.models.base import ModelSpec, TrainingData, TrainSettings, score_clip
from streamdet.models.checkpoint import save_checkpoint
from streamdet.models.registry import build_model, default_spec, entry, train_model
from streamdet.scoring.calibration import Calibration, calibrate
from streamdet.scoring.smoothing import ema
from tests.support.media import make_scene_clip

FPS, ANALYSIS_FPS, FRAMES = 25, 5.0, 200
KIND = "motion"  # trains in seconds, and its scores depend on what it learned


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 s of the synthetic scene (textured, noisy, people walking) as H.264."""
    path = tmp_path_factory.mktemp("learning") / "scene.mp4"
    return make_scene_clip(path, frames=FRAMES, width=320, height=180, fps=FPS, seed=5)


def plan() -> Plan:
    settings = TrainSettings(seed=0, max_seconds=30)
    budget = Budget(ANALYSIS_FPS, 1.0, entry(KIND).smoothing_alpha)
    return Plan(default_spec(KIND), settings, budget)


def test_learned_saved_and_loaded_the_threshold_is_the_held_out_tails(
    scene: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    data = collect_files([scene], plan().spec, lambda *_: None)
    assert [c.shape for c in data.clips] == [(FRAMES, 160, 240)] and data.fps == FPS
    trained = learn(data, plan())
    held = max(MIN_HELD_OUT, math.ceil(FRAMES * plan().budget.holdout))
    assert trained.summary["frames"] == FRAMES - held  # the tail is never trained on
    assert trained.health is not None

    folder = trained.save(tmp_path / "cam", "cam", source="test")
    learned = saved.load(folder)
    assert learned.threshold == trained.calibration.threshold
    assert learned.calibration() == trained.calibration
    assert learned.smoothing_alpha == entry(KIND).smoothing_alpha
    assert learned.normal_peak == trained.calibration.held_out_max
    assert learned.health is not None and learned.health.as_dict() == trained.health.as_dict()
    assert learned.health_error is None
    assert learned.metadata["camera"] == "cam" and learned.metadata["training"]["source"] == "test"

    # The threshold is the one of the held-out tail's own scores, at the analysis rate: each of
    # its 5 phases (25 fps analysed at 5) a smoothed series of its own.
    tail = data.clips[0][-held:]
    raw = score_clip(learned.model, tail)[0][learned.model.context :]
    alpha = learned.smoothing_alpha
    series = [ema(raw[phase::5], alpha) for phase in range(5)]
    expected = calibrate(
        series,
        analysis_fps=ANALYSIS_FPS,
        false_events_per_hour=1.0,
        smoothing_alpha=alpha,
        seconds=len(raw) / FPS,
    )
    assert learned.threshold == pytest.approx(expected.threshold, rel=1e-9)
    assert learned.normal_peak == pytest.approx(expected.held_out_max, rel=1e-9)
    # Learning again on the same footage gives the same threshold (seeded, deterministic).
    assert learn(data, plan()).calibration.threshold == trained.calibration.threshold
    assert time.monotonic() - started < 60


def test_footage_too_short_to_hold_out_is_a_model_error(scene: Path) -> None:
    data = collect_files([scene], plan().spec, lambda *_: None)
    data.clips = [data.clips[0][: 2 * MIN_HELD_OUT - 1]]
    with pytest.raises(ModelError, match=r"only 99 frames of footage: need at least 100"):
        learn(data, plan())


def test_footage_is_cut_into_contiguous_blocks_in_order() -> None:
    clips = [np.arange(70), np.arange(70, 200)]
    blocks = split_blocks(clips, 4)
    assert [first for first, _ in blocks] == [0, 50, 100, 150]
    assert [[len(c) for c in b] for _, b in blocks] == [[50], [20, 30], [50], [50]]
    assert np.array_equal(np.concatenate([c for _, b in blocks for c in b]), np.arange(200))


def test_folds_are_fewer_where_a_block_would_be_too_short_and_none_below_two() -> None:
    eight = Plan(default_spec("objects"), TrainSettings(), Budget(5.0, 1.0, 0.5))
    assert entry("objects").calibration_folds == 8 and entry(KIND).calibration_folds == 0
    assert folds_for(eight, 10_000) == 8
    assert folds_for(eight, 3 * MIN_HELD_OUT + 10) == 3
    assert folds_for(eight, 2 * MIN_HELD_OUT - 1) == 0  # a held-out tail (which then refuses)
    assert folds_for(plan(), 10_000) == 0  # the kind's own: a tail


def test_with_folds_a_model_that_cannot_leave_a_block_out_is_trained_per_block(
    scene: Path,
) -> None:
    """A kind without ``leaving_out`` (``motion``) calibrated on 2 folds: a model is trained
    on each block's other half and scores it; the camera's model learns all of the footage."""
    data = collect_files([scene], plan().spec, lambda *_: None)
    folded = Plan(plan().spec, plan().settings, Budget(ANALYSIS_FPS, 1.0, 1.0, folds=2))
    trained = learn(data, folded)
    assert trained.summary["folds"] == 2 and trained.summary["frames"] == FRAMES
    half = FRAMES // 2
    series, seconds = [], 0.0
    for first, end in ((0, half), (half, FRAMES)):
        rest = np.concatenate([data.clips[0][:first], data.clips[0][end:]])
        torch.manual_seed(0)
        model = build_model(folded.spec)
        train_model(model, TrainingData([rest], FPS), folded.settings, lambda *_: None)
        raw = score_clip(model, data.clips[0][first:end])[0][model.context :]
        series += [raw[0::5], raw[2::5]]  # two of the five analysis-rate series
        seconds += len(raw) / FPS
    expected = calibrate(
        series,
        analysis_fps=ANALYSIS_FPS,
        false_events_per_hour=1.0,
        smoothing_alpha=1.0,
        seconds=seconds,
    )
    assert trained.calibration.threshold == pytest.approx(expected.threshold, rel=1e-6)
    assert trained.calibration.held_out_frames == sum(map(len, series))


def test_a_checkpoint_without_a_calibration_cannot_detect(tmp_path: Path) -> None:
    model = build_model(default_spec("framediff"))
    save_checkpoint(model, tmp_path / "none")
    with pytest.raises(ModelError, match=r"none/model\.json: no calibration"):
        saved.load(tmp_path / "none")
    save_checkpoint(model, tmp_path / "half", {"calibration": {"threshold": 2.0}})
    with pytest.raises(ModelError, match=r"no calibration\.smoothing_alpha"):
        saved.load(tmp_path / "half")


def test_an_old_checkpoint_loads_without_what_it_predates(tmp_path: Path) -> None:
    old = {"calibration": {"threshold": 2.0, "smoothing_alpha": 0.5}, "health": "garbage"}
    save_checkpoint(build_model(default_spec("framediff")), tmp_path / "old", old)
    learned = saved.load(tmp_path / "old")
    assert (learned.threshold, learned.smoothing_alpha) == (2.0, 0.5)
    assert learned.normal_peak is None and learned.note is None and learned.health is None
    assert learned.health_error is not None and "not an object" in str(learned.health_error)
    with pytest.raises(ModelError, match="incomplete calibration"):
        learned.calibration()


def test_live_footage_starts_a_new_clip_where_the_ring_lapped_the_collector() -> None:
    ring = FrameRing("cam", size=8, shape=(16, 16))
    collector = FootageCollector(ring, ModelSpec("framediff", 16, 16))
    written = 0

    def write(count: int) -> None:
        nonlocal written
        for _ in range(count):
            ring.writable()[:] = written
            ring.commit(time.time(), None, analyse=True)
            written += 1

    write(5)
    collector.poll(FPS)
    write(20)  # more than the ring holds: frames 5..17 are gone before the next look
    collector.poll(FPS)
    write(3)
    collector.poll(FPS)
    values = [[int(f[0, 0]) for f in clip] for clip in collector.clips]
    assert values == [[0, 1, 2, 3, 4], [18, 19, 20, 21, 22, 23, 24, 25, 26, 27]]
    # a clip of fewer than 8 frames is not learned from
    assert [len(c) for c in collector.data(FPS, min_frames=10).clips] == [10]
    with pytest.raises(SourceError, match=r"\[cam\] only 15 frames: too few to learn"):
        collector.data(FPS, min_frames=11)


def test_a_cameras_plan_is_its_model_its_rate_and_the_models_budget(tmp_path: Path) -> None:
    config = parse_config(
        {
            "cameras": [
                {"name": "a", "source": {"kind": "synthetic"}, "analysis_fps": 2},
                {"name": "b", "source": {"kind": "synthetic"}, "model": "framediff"},
            ],
            "models": {
                "dir": str(tmp_path),
                "kind": "motion",
                "seed": 7,
                "max_train_seconds": 42,
                "false_events_per_hour": 0.5,
            },
        }
    )
    a = Plan.for_camera(config.cameras[0], config.models, "cpu")
    assert a.spec == default_spec("motion")
    assert a.budget == Budget(2, 0.5, entry("motion").smoothing_alpha)
    assert a.settings == TrainSettings(seed=7, max_seconds=42, device="cpu")
    b = Plan.for_camera(config.cameras[1], config.models, "cpu")
    assert b.spec.kind == "framediff" and b.budget.smoothing_alpha == 1.0
    assert Plan.for_camera(config.cameras[1], config.models, "cpu", "motion").spec.kind == "motion"


def test_metadata_names_the_camera_only_when_there_is_one() -> None:
    fake = Trained(build_model(default_spec("framediff")), _calibration(), {"frames": 1})
    assert "camera" not in fake.metadata() and "health" not in fake.metadata()
    assert fake.metadata("x", source="s")["camera"] == "x"
    assert fake.metadata("x", source="s")["training"] == {"frames": 1, "source": "s"}


def _calibration() -> Calibration:
    return calibrate(
        [np.linspace(0, 1, 50)], analysis_fps=5, false_events_per_hour=1, smoothing_alpha=1
    )
