"""A small labelled dataset from the synthetic scene, in the layout `streamdet eval` reads."""

from __future__ import annotations

import json
from pathlib import Path

from streamdet.capture.synthetic import ScheduledAnomaly, SyntheticScene
from tests.support.media import make_scene_clip

WIDTH, HEIGHT, FPS = 256, 192, 10


def make_synthetic_dataset(
    root: Path, *, train_clips: int = 3, train_frames: int = 120, test_frames: int = 120
) -> Path:
    """``root/train`` (normal only), ``root/test`` (each with a scheduled anomaly), labels."""
    for i in range(train_clips):
        make_scene_clip(
            root / "train" / f"Train{i:03d}.mp4",
            frames=train_frames,
            width=WIDTH,
            height=HEIGHT,
            fps=FPS,
            gop=20,
            seed=100 + i,
        )
    labels: dict[str, list[int]] = {}
    kinds = ("fast", "forbidden_area", "wrong_way")
    for i, kind in enumerate(kinds):
        anomaly = ScheduledAnomaly(kind, start_s=test_frames / FPS / 2, duration_s=4.0)
        name = f"Test{i:03d}"
        make_scene_clip(
            root / "test" / f"{name}.mp4",
            frames=test_frames,
            width=WIDTH,
            height=HEIGHT,
            fps=FPS,
            gop=20,
            seed=200 + i,
            anomalies=(anomaly,),
        )
        scene = SyntheticScene(WIDTH, HEIGHT, FPS, seed=200 + i, anomalies=[anomaly])
        labels[name] = [int(scene.is_anomalous(n)) for n in range(test_frames)]
    (root / "labels.json").write_text(json.dumps(labels))
    return root
