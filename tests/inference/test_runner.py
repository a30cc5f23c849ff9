"""The runner: per-camera models, one vmapped call per architecture (or one call per camera,
whichever is faster), same answers as alone."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from streamdet.inference.runner import ModelRunner, choose_device
from streamdet.models.base import AnomalyModel
from streamdet.models.registry import build_model, default_spec


def model_with_stats(kind: str, shift: float) -> AnomalyModel:
    """A model whose normalisation differs per camera, as two cameras' trained models would."""
    model = build_model(default_spec(kind))
    with torch.no_grad():
        model.norm_mean.fill_(shift)
        model.norm_std.fill_(1.0 + shift)
        for name, buffer in model.named_buffers():  # motionflow: its cue statistics too
            if name.startswith("cue_"):
                buffer.copy_(torch.tensor([shift, 0.5 + shift]) + (name == "cue_std"))
    return model


def windows(n: int, context: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        f"cam{i}": rng.integers(0, 255, (context + 1, 120, 160), dtype=np.uint8) for i in range(n)
    }


# motionflow and objects cannot run under vmap (OpenCV inside): their own forward_grouped is the
# grouped call (objects maps each camera's own CNN over its crops with vmap inside it)
@pytest.mark.parametrize("kind", ["motion", "framediff", "motionflow", "objects"])
def test_grouped_vmap_call_matches_each_model_alone(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    runner = ModelRunner("cpu", grouping="vmap")
    models = {f"cam{i}": model_with_stats(kind, 0.1 * i) for i in range(4)}
    for camera, model in models.items():
        runner.add(camera, model)
    inputs = windows(4, models["cam0"].context)
    with caplog.at_level(logging.WARNING):
        batched = runner.run(inputs)
    assert "cannot run under vmap" not in caplog.text  # the grouped path really ran
    assert runner.modes() == {"cam0": "vmap"}
    for camera, model in models.items():
        with torch.inference_mode():
            alone = model(torch.from_numpy(inputs[camera][None]))
        assert batched[camera].score == pytest.approx(alone.score.item(), rel=1e-5, abs=1e-5)
        np.testing.assert_allclose(
            batched[camera].anomaly_map, alone.anomaly_map[0].numpy(), rtol=1e-5, atol=1e-5
        )
        if alone.objects is not None:  # object rows too, through each camera's own CNN
            np.testing.assert_allclose(
                batched[camera].objects, alone.objects[0].numpy(), rtol=1e-5, atol=1e-4
            )
    scores = [batched[c].score for c in models]
    assert len(set(scores)) == 4  # each camera used its own statistics
    part = runner.run({c: inputs[c] for c in ("cam3", "cam1")})  # a subset, in another order
    for camera in ("cam3", "cam1"):
        assert part[camera].score == pytest.approx(batched[camera].score, rel=1e-5, abs=1e-5)


def test_auto_grouping_times_both_ways_and_keeps_the_faster(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = ModelRunner("cpu")  # grouping="auto"
    for i in range(3):
        runner.add(f"cam{i}", model_with_stats("motion", 0.1 * i))
    inputs = windows(3, 1)
    with caplog.at_level(logging.INFO, logger="streamdet.inference.runner"):
        first = runner.run(inputs)
    group = runner._groups[runner._camera_group["cam0"]]
    assert set(group.timings) == {"vmap", "loop"} and min(group.timings.values()) > 0
    assert group.mode == min(group.timings, key=group.timings.__getitem__)
    assert "one call per camera" in caplog.text and "ms" in caplog.text
    # The other way gives the same answers, so the choice changes speed only.
    other = ModelRunner("cpu", grouping="loop" if group.mode == "vmap" else "vmap")
    for i in range(3):
        other.add(f"cam{i}", model_with_stats("motion", 0.1 * i))
    for camera, scored in other.run(inputs).items():
        assert scored.score == pytest.approx(first[camera].score, rel=1e-5, abs=1e-5)
    # A change of the group's cameras makes the runner choose again on the next batch.
    runner.add("cam3", model_with_stats("motion", 0.5))
    assert runner.modes() == {"cam0": None}
    runner.run({**inputs, "cam3": inputs["cam0"]})
    assert runner.modes()["cam0"] in ("vmap", "loop")
    with pytest.raises(ValueError, match="grouping"):
        ModelRunner("cpu", grouping="fast")


def test_auto_grouping_takes_a_models_own_grouped_call_untimed() -> None:
    # 9 cameras: motionflow spreads the windows over its worker pool in chunks of 4
    models = {f"cam{i}": model_with_stats("motionflow", 0.1 * i) for i in range(9)}
    inputs = windows(9, 1)
    results = {}
    for grouping in ("auto", "loop"):
        runner = ModelRunner("cpu", grouping=grouping)
        for camera, model in models.items():
            runner.add(camera, model)
        results[grouping] = runner.run(inputs)
        group = runner._groups[runner._camera_group["cam0"]]
        assert group.mode == ("vmap" if grouping == "auto" else "loop")
        assert group.timings == {}  # chosen without timing either way
    for camera in models:
        grouped, alone = results["auto"][camera], results["loop"][camera]
        assert grouped.score == pytest.approx(alone.score, rel=1e-5, abs=1e-5)
        np.testing.assert_allclose(grouped.anomaly_map, alone.anomaly_map, rtol=1e-5, atol=1e-5)
    assert len({results["auto"][c].score for c in models}) == 9


def test_subset_of_a_group_and_removal() -> None:
    runner = ModelRunner("cpu")
    for i in range(3):
        runner.add(f"cam{i}", model_with_stats("motion", 0.2 * i))
    inputs = windows(3, 1)
    full = runner.run(inputs)
    part = runner.run({"cam2": inputs["cam2"]})
    assert part["cam2"].score == pytest.approx(full["cam2"].score, rel=1e-5)
    runner.remove("cam1")
    assert sorted(runner.cameras) == ["cam0", "cam2"]
    again = runner.run({c: inputs[c] for c in ("cam0", "cam2")})
    assert again["cam0"].score == pytest.approx(full["cam0"].score, rel=1e-5)


def test_different_architectures_are_scored_separately() -> None:
    runner = ModelRunner("cpu")
    runner.add("a", model_with_stats("motion", 0.0))
    runner.add("b", model_with_stats("framediff", 0.0))
    out = runner.run({"a": windows(1, 1)["cam0"], "b": windows(1, 1, seed=1)["cam0"]})
    assert set(out) == {"a", "b"} and out["a"].anomaly_map.ndim == 2


def test_device_choice_without_cuda() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert choose_device("auto").type == expected
    assert choose_device("cpu").type == "cpu"


def test_a_model_that_learned_in_place_is_scored_with_what_it_learned_in_its_group() -> None:
    """An objects model learns rows into its bank (online learning, feedback) while it is
    scored in a grouped call over stacked state: ``refresh`` makes that call see them."""
    runner = ModelRunner("cpu", grouping="vmap")
    models = {f"cam{i}": model_with_stats("objects", 0.1 * i) for i in range(2)}
    for camera, model in models.items():
        runner.add(camera, model)
    inputs = windows(2, 1)
    before = runner.run(inputs)
    rows, features = before["cam1"].objects, before["cam1"].features
    assert rows is not None and features is not None and rows[:, 6].sum() > 0
    valid = features[rows[:, 6] > 0]
    learner = models["cam1"]
    assert hasattr(learner, "learn_normal")
    learner.learn_normal(torch.from_numpy(valid).repeat(5, 1))  # k = 5 copies: distance 0
    runner.refresh("cam1")
    after = runner.run(inputs)
    assert after["cam1"].score < before["cam1"].score
    with torch.inference_mode():
        alone = learner(torch.from_numpy(inputs["cam1"][None]))
    assert after["cam1"].score == pytest.approx(alone.score.item(), rel=1e-5, abs=1e-5)
    assert after["cam0"].score == pytest.approx(before["cam0"].score, rel=1e-5, abs=1e-5)
