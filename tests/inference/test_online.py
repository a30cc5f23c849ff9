"""Learning that goes on: which frames a detecting camera learns as normal, and where they go
in the objects model's bank (a ring that ages oldest-first, a taught ring apart, both kept by a
checkpoint)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from prometheus_client import CollectorRegistry

from streamdet.alert.samples import EventSamples
from streamdet.capture.stage import CaptureStage
from streamdet.config import parse_config
from streamdet.errors import ModelError
from streamdet.frames import DetectedObject, FrameRef, ModelState, ScoredFrame
from streamdet.inference.detector import Detector
from streamdet.inference.online import OnlineLearner
from streamdet.inference.stage import InferenceStage
from streamdet.metrics import PipelineMetrics
from streamdet.models.base import ModelSpec
from streamdet.models.checkpoint import load_checkpoint, save_checkpoint
from streamdet.models.objects import FAR, ObjectModel

D = 18  # 10 hand features + the 8-d embedding


def frame_rows(t: float) -> np.ndarray:
    """One frame's two objects; the first column says which frame they came from."""
    return np.full((2, D), t, np.float32)


def run(learner: OnlineLearner, hot: set[int], frames: int, fps: float = 5.0) -> list[float]:
    """Feed ``frames`` frames at ``fps`` (those numbered in ``hot`` above the threshold);
    the times of the frames learned."""
    learned: list[float] = []
    for n in range(frames):
        t = n / fps
        for rows in learner.observe(t, n in hot, frame_rows(t)):
            learned.append(round(float(rows[0, 0]), 3))
    return learned


def test_frames_near_an_event_are_never_learned_and_others_are() -> None:
    learner = OnlineLearner(margin_s=2.0, fps=100.0)  # no subsampling here
    hot = set(range(50, 60))  # an event from 10 s to 12 s
    learned = run(learner, hot, 150)  # 30 s
    assert learned, "normal frames are learned"
    # the event (10 s to 11.8 s) and 2 s each side (the frames at exactly 2 s: float noise)
    assert not [t for t in learned if 8.0 < t < 13.8]
    assert min(learned) == 0.0 and 7.6 in learned and 14.0 in learned
    assert max(learned) <= 30 - 2.0  # the newest frames wait for 2 s of what follows


def test_learning_is_subsampled() -> None:
    learned = run(OnlineLearner(margin_s=1.0, fps=1.0), set(), 100)  # 20 s at 5 fps
    assert learned == [float(s) for s in range(19)]  # one a second


def test_the_buffer_is_bounded_and_counts_its_drops() -> None:
    learner = OnlineLearner(margin_s=1000.0, fps=100.0, max_frames=10)
    assert run(learner, set(), 30) == []
    assert learner.dropped == 20


def small_model(**params: int) -> ObjectModel:
    spec = ModelSpec(
        "objects", 64, 48, 16, {"bank": 8, "online_bank": 4, "taught_bank": 3, **params}
    )
    return ObjectModel(spec)


def test_the_online_ring_replaces_its_oldest_rows_and_leaves_the_trained_ones() -> None:
    model = small_model()
    model.bank[:8] = 0.5  # the trained rows
    assert model.bank.shape == (15, D)
    model.learn_normal(torch.full((3, D), 1.0))
    model.learn_normal(torch.full((3, D), 2.0))  # 6 rows into a ring of 4: 1, 1 are replaced
    ring = model.bank[8:12, 0].tolist()
    assert ring == [2.0, 2.0, 1.0, 2.0]  # slot order: the two oldest 1s went first
    assert int(model.online_next[0]) == 6
    assert (model.bank[:8] == 0.5).all() and (model.bank[12:] == FAR).all()
    model.learn_normal(torch.full((5, D), 3.0))  # more than the ring: its newest 4 stay
    assert (model.bank[8:12] == 3.0).all()


def test_taught_rows_go_into_their_own_ring_that_online_learning_never_ages_out() -> None:
    model = small_model(taught_bank=12)
    assert model.learn_normal(torch.full((2, D), 7.0), "taught") == 2
    for _ in range(10):
        model.learn_normal(torch.full((3, D), 1.0))
    # each taught object k = 5 times: alone, it is a normal neighbourhood of its own
    assert model.bank[12:22, 0].tolist() == [7.0] * 10 and (model.bank[22:, 0] == FAR).all()


def test_rows_of_another_width_are_a_clear_error() -> None:
    with pytest.raises(ModelError, match="do not fit a bank of 18 columns"):
        small_model().learn_normal(torch.zeros(2, 5))


def test_a_learned_object_scores_as_normal() -> None:
    """The bank is what scoring reads: a row learned on line is a near neighbour."""
    model = small_model(k=1)
    z = torch.randn(1, 1, D)
    valid = torch.ones(1, 1, dtype=torch.bool)
    state = {k: v.unsqueeze(0) for k, v in model.named_buffers()}
    out = model._score(z, torch.zeros(1, 1, 4), valid, state)
    before, features = out.objects, out.features
    assert features is not None
    model.learn_normal(features[0])  # as the model gave them out
    state = {k: v.unsqueeze(0) for k, v in model.named_buffers()}
    after = model._score(z, torch.zeros(1, 1, 4), valid, state).objects
    assert before is not None and after is not None
    assert float(before[0, 0, 4]) > 100 and float(after[0, 0, 4]) < 1e-3


def test_a_checkpoint_keeps_the_rings_and_where_they_stand(tmp_path: Path) -> None:
    model = small_model()
    model.learn_normal(torch.full((5, D), 1.0))
    model.learn_normal(torch.full((2, D), 4.0), "taught")
    save_checkpoint(model, tmp_path / "cam", {"calibration": {}})
    loaded, _ = load_checkpoint(tmp_path / "cam")
    assert isinstance(loaded, ObjectModel)
    assert torch.equal(loaded.bank, model.bank)
    # 5 rows into 4 slots: the newest 4 written; 2 taught objects x 5 into 3 slots: 3 written
    assert loaded.online_next.tolist() == [4, 3]
    loaded.learn_normal(torch.full((1, D), 9.0))  # goes on where it stood: the oldest slot
    assert loaded.bank[8:12, 0].tolist() == [9.0, 1.0, 1.0, 1.0]


def test_a_checkpoint_from_before_the_rings_loads_with_empty_rings(tmp_path: Path) -> None:
    old = small_model(online_bank=0, taught_bank=0)
    old.bank[:] = 0.25
    save_checkpoint(old, tmp_path / "cam", {"calibration": {}})
    # an old checkpoint has neither the rings' rows nor their positions
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(tmp_path / "cam" / "model.safetensors"))
    del tensors["online_next"]
    save_file(tensors, str(tmp_path / "cam" / "model.safetensors"))
    meta = (tmp_path / "cam" / "model.json").read_text()
    meta = meta.replace('"online_bank": 0', '"online_bank": 4').replace(
        '"taught_bank": 0', '"taught_bank": 3'
    )
    (tmp_path / "cam" / "model.json").write_text(meta)
    loaded, _ = load_checkpoint(tmp_path / "cam")
    assert isinstance(loaded, ObjectModel)
    assert (loaded.bank[:8] == 0.25).all() and (loaded.bank[8:] == FAR).all()
    assert loaded.online_next.tolist() == [0, 0]


def obj(value: float) -> DetectedObject:
    return DetectedObject((0, 0, 1, 1), 5.0, "fast", np.full(D, value, np.float32))


def test_an_event_keeps_an_even_bounded_sample_of_its_frames_and_its_peak() -> None:
    samples = EventSamples(max_frames=8)
    for n in range(100):
        samples.add((obj(n),))
    samples.add((DetectedObject((0, 0, 1, 1), 5.0, "fast"),))  # no rows: skipped
    rows = samples.rows(peak=(obj(-1.0),))
    assert rows is not None
    kept = rows[:, 0].tolist()
    assert len(kept) <= 9 and kept[-1] == -1.0
    assert kept[:-1] == [float(n) for n in range(0, 100, 16)]  # spread over the whole event
    assert EventSamples().rows() is None


def test_a_detector_never_learns_frames_that_could_hold_an_event_open(tmp_path: Path) -> None:
    """Through a camera's detector (loaded from its checkpoint): a stretch whose smoothed
    score stays between the release level and the threshold (an open event does not end
    there) is not learned, nor the margin around it; the normal frames are."""
    save_checkpoint(
        small_model(online_bank=512),
        tmp_path / "models" / "cam",
        {"calibration": {"threshold": 5.0, "smoothing_alpha": 0.5, "held_out_max": 3.0}},
    )
    config = parse_config(
        {
            "cameras": [{"name": "cam", "source": {"kind": "synthetic"}}],
            "models": {
                "dir": str(tmp_path / "models"),
                "keep_learning_margin_s": 1.0,
                "keep_learning_fps": 30.0,
            },
        }
    )
    detector = Detector(config.cameras[0], config.models, "cpu", release_ratio=0.8)
    detector.load_or_learn()  # a checkpoint: nothing to learn
    assert detector.state is ModelState.DETECTING and isinstance(detector.model, ObjectModel)
    learned = 0
    for n in range(200):  # 40 s at 5 fps; 10 s to 30 s at 4.2: above the release level 4.0
        score = 4.2 if 50 <= n < 150 else 1.0
        ref = FrameRef("cam", 0, n, n / 5, None, True)
        frame = ScoredFrame(ref, score, score, 5.0, np.zeros((3, 4)), 0.0, 3.0, (obj(n),))
        learned += detector.observe(frame)
    first, _ = detector.model.rings()["online"]
    frames = detector.model.bank[first : first + learned, 0].tolist()
    assert frames == [*range(0, 45), *range(155, 195)]  # 1 s margin each side


def test_a_checkpoint_from_before_subspace_scores_keeps_scoring_one_joint_distance(
    tmp_path: Path,
) -> None:
    """Its threshold was calibrated on the joint k-NN distance: it must go on scoring so (and
    say so in its spec, so that a later save keeps it), while new models score subspaces."""
    model = small_model()
    assert model.params["scoring"] == "groups"
    save_checkpoint(model, tmp_path / "cam", {"calibration": {}})
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(tmp_path / "cam" / "model.safetensors"))
    del tensors["sub_ref"]
    save_file(tensors, str(tmp_path / "cam" / "model.safetensors"))
    loaded, _ = load_checkpoint(tmp_path / "cam")
    assert isinstance(loaded, ObjectModel)
    assert loaded.params["scoring"] == "joint" and loaded.spec.params["scoring"] == "joint"
    save_checkpoint(loaded, tmp_path / "again", {"calibration": {}})
    again, _ = load_checkpoint(tmp_path / "again")
    assert isinstance(again, ObjectModel) and again.params["scoring"] == "joint"


def test_a_removed_camera_saves_what_it_learned_on_line(tmp_path: Path) -> None:
    """A reload that removes a camera, or a fleet move, must not lose the rows it learned since
    the last periodic save: its next start (here or on another worker) loads the file."""
    save_checkpoint(
        small_model(),
        tmp_path / "models" / "cam",
        {"calibration": {"threshold": 5.0, "smoothing_alpha": 0.5, "held_out_max": 3.0}},
    )
    config = parse_config(
        {
            "cameras": [{"name": "cam", "source": {"kind": "synthetic"}}],
            "models": {"dir": str(tmp_path / "models"), "save_every_s": 3600},
        }
    )
    stage = InferenceStage(
        CaptureStage(config.cameras, config.capture),
        config.cameras,
        config.models,
        config.inference,
        PipelineMetrics(CollectorRegistry()),
    )
    detector = stage.detectors["cam"]
    detector.load_or_learn()
    assert detector.state is ModelState.DETECTING
    assert detector._learn(np.full((3, D), 1.0, np.float32), "online") == 3
    stage.remove_camera("cam")
    loaded, _ = load_checkpoint(tmp_path / "models" / "cam")
    assert isinstance(loaded, ObjectModel)
    assert loaded.online_next.tolist() == [3, 0]
