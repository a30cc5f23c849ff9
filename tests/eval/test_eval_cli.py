"""`streamdet eval` end to end on a small synthetic dataset: the documented outputs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from streamdet.eval.run import _finite_or_null
from tests.support.datasets import make_synthetic_dataset

STREAMDET = str(Path(sys.executable).with_name("streamdet"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("evalds"), train_clips=4)


def test_eval_writes_documented_outputs(dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        [STREAMDET, "eval", "--dataset", str(dataset), "--out", str(out), "--model", "motion"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "motion" in result.stdout and "framediff" in result.stdout  # baseline beside it
    assert "score test" in result.stderr  # progress is shown

    def no_bare_constants(name: str) -> None:
        raise AssertionError(f"metrics.json holds a bare {name}: not valid JSON")

    metrics = json.loads((out / "metrics.json").read_text(), parse_constant=no_bare_constants)
    events = metrics["events_at_threshold"]
    assert events["anomalous_stretches"] == 3 and 0 <= events["stretches_caught"] <= 3
    assert "anomalous stretches raised an event" in result.stdout
    for key in (
        "auc_micro_streaming",
        "auc_micro_video_normalised",
        "auc_per_clip",
        "equal_error_rate",
        "train_seconds",
        "scoring_fps",
        "first_frames_rule",
    ):
        assert key in metrics, key
    assert set(metrics["models"]) == {"motion", "framediff"}
    assert metrics["stage_ms_per_frame"] is None  # motion keeps no clock of its stages
    assert set(metrics["auc_per_clip"]) == {"Test000", "Test001", "Test002"}
    labels = json.loads((dataset / "labels.json").read_text())
    for name, clip_labels in labels.items():
        with (out / "scores" / f"{name}.csv").open() as handle:
            rows = list(csv.reader(handle))
        assert rows[0] == ["frame", "score"]
        assert [int(r[0]) for r in rows[1:]] == list(range(len(clip_labels)))
        assert (out / f"timeline_{name}.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "roc.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "model" / "model.safetensors").is_file()
    # A cyclist racing along the path is an obvious motion anomaly: the motion model must see it.
    assert metrics["auc_per_clip"]["Test000"] > 0.7, metrics["auc_per_clip"]
    # the checkpoint scored again without naming its kind: reported as what it is, not as the
    # default kind the command line would otherwise name
    args = ["--out", str(tmp_path / "again"), "--checkpoint", str(out / "model")]
    again = subprocess.run(
        [STREAMDET, "eval", "--dataset", str(dataset), *args, "--no-baseline", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    rescored = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert rescored["model"] == "motion" and set(rescored["models"]) == {"motion"}, rescored
    assert rescored["auc_micro_streaming"] == metrics["auc_micro_streaming"]


def test_metrics_json_has_null_where_an_auc_is_undefined() -> None:
    strict = json.dumps(_finite_or_null({"a": float("nan"), "b": [1.0, float("inf")]}))
    assert json.loads(strict) == {"a": None, "b": [1.0, None]}


def test_eval_missing_dataset_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [STREAMDET, "eval", "--dataset", str(tmp_path / "none"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: dataset folder not found: {tmp_path / 'none'}"
