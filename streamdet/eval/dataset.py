"""Labelled datasets for evaluation: ``DIR/train/*.mp4`` (normal only), ``DIR/test/*.mp4`` and
``DIR/labels.json`` (``{"clip": [0/1 per decoded frame]}``), e.g. UCSD Ped2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamdet.learning.videos import FootageError, clip_fps, video_files


class DatasetError(FootageError):
    """The dataset folder is missing or malformed."""


@dataclass(frozen=True)
class ClipRef:
    name: str
    path: Path


@dataclass(frozen=True)
class Dataset:
    root: Path
    train: list[ClipRef]
    test: list[ClipRef]
    labels: dict[str, np.ndarray]  # test clip name -> (N,) 0/1 per frame
    fps: float


def load_dataset(root: str | Path) -> Dataset:
    """Check the layout and read the labels. Raises DatasetError with what is wrong."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset folder not found: {root}")
    for part in ("train", "test"):
        if not (root / part).is_dir():
            raise DatasetError(f"{root}: missing folder {part}/ (expected {part}/*.mp4)")
    labels_path = root / "labels.json"
    try:
        raw = json.loads(labels_path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{root}: missing labels.json") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{labels_path}: invalid JSON: {exc}") from None
    train = [ClipRef(p.stem, p) for p in video_files(root / "train")]
    test = [ClipRef(p.stem, p) for p in video_files(root / "test")]
    if not train or not test:
        raise DatasetError(f"{root}: train/ and test/ must each hold at least one video")
    labels: dict[str, np.ndarray] = {}
    for clip in test:
        if clip.name not in raw:
            raise DatasetError(f"{labels_path}: no labels for test clip {clip.name!r}")
        labels[clip.name] = np.asarray(raw[clip.name], dtype=np.int8)
    return Dataset(root, train, test, labels, fps=clip_fps(test[0].path))
