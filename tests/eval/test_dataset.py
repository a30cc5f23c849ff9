"""Dataset layout checks give clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from streamdet.eval.dataset import DatasetError, load_dataset
from streamdet.learning.videos import FootageError, read_clip
from tests.support.datasets import HEIGHT, WIDTH, make_synthetic_dataset


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(
        tmp_path_factory.mktemp("ds"), train_clips=2, train_frames=40, test_frames=40
    )


def test_loads_a_valid_dataset(dataset: Path) -> None:
    ds = load_dataset(dataset)
    assert [c.name for c in ds.train] == ["Train000", "Train001"]
    assert [c.name for c in ds.test] == ["Test000", "Test001", "Test002"]
    assert ds.fps == 10
    assert len(ds.labels["Test000"]) == 40
    clip = read_clip(ds.test[0].path, 120, 90)
    assert clip.shape == (40, 90, 120) and clip.dtype.name == "uint8"
    assert WIDTH > 120 and HEIGHT > 90


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="dataset folder not found"):
        load_dataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match="missing folder train/"):
        load_dataset(tmp_path)


def test_missing_or_broken_labels(dataset: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    (copy / "labels.json").unlink()
    with pytest.raises(DatasetError, match=r"missing labels\.json"):
        load_dataset(copy)
    (copy / "labels.json").write_text("{not json")
    with pytest.raises(DatasetError, match="invalid JSON"):
        load_dataset(copy)
    (copy / "labels.json").write_text(json.dumps({"Test000": [0]}))
    with pytest.raises(DatasetError, match="no labels for test clip 'Test001'"):
        load_dataset(copy)


def test_undecodable_clip(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"junk" * 100)
    with pytest.raises(FootageError, match="cannot decode"):
        read_clip(bad, 64, 48)
