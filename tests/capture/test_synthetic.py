"""Tests for the deterministic synthetic walkway camera (streamdet.capture.synthetic)."""

from __future__ import annotations

import itertools
import time
from typing import Any

import cv2
import numpy as np
import pytest

from streamdet.capture.synthetic import ScheduledAnomaly, SyntheticScene

W, H = 320, 240


def _frame(scene: SyntheticScene, n: int) -> np.ndarray:
    out = np.full((scene.height, scene.width, 3), 255, np.uint8)  # garbage must be overwritten
    scene.render(n, out)
    return out


def _diff_mask(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pixels where two renders differ (same seed: the background and noise cancel exactly)."""
    b_, g_, r_ = cv2.split(cv2.absdiff(a, b))  # per-channel max: ~5x faster than numpy's
    mask: np.ndarray = cv2.max(cv2.max(b_, g_), r_) > 0
    return mask


def _centre_x(box: tuple[int, int, int, int]) -> float:
    return (box[0] + box[2]) / 2


def test_render_is_deterministic_and_seekable() -> None:
    anomalies = [ScheduledAnomaly("fast", 1.0, 2.0), ScheduledAnomaly("loiter", 2.0, 1.0)]
    a = SyntheticScene(seed=3, anomalies=anomalies)
    b = SyntheticScene(seed=3, anomalies=anomalies)
    frames = [*range(0, 100, 7), 5000]
    in_order = {n: _frame(a, n) for n in frames}
    for n in reversed(frames):
        assert np.array_equal(_frame(b, n), in_order[n]), n
    assert np.array_equal(_frame(a, 42), in_order[42])
    assert not np.array_equal(_frame(SyntheticScene(seed=4), 42), in_order[42])


def test_people_move_between_frames() -> None:
    scene = SyntheticScene()
    y0, y1 = scene.walkway
    for n in (0, 100, 400):
        band = cv2.absdiff(_frame(scene, n), _frame(scene, n + 1))[y0:y1].max(axis=2)
        assert int((band > 40).sum()) > 10, n  # well above the mild sensor noise


def test_scene_is_populated_and_walkers_stay_on_walkway() -> None:
    scene, clean = SyntheticScene(), SyntheticScene(people_per_minute=0)
    y0, y1 = scene.walkway
    frames = range(0, 30 * 25, 3)
    populated = 0
    for n in frames:
        rows = np.flatnonzero(_diff_mask(_frame(scene, n), _frame(clean, n)).any(axis=1))
        populated += rows.size > 10
        assert rows.size == 0 or (rows[0] >= y0 and rows[-1] < y1), n
    assert populated >= 0.9 * len(frames)


def test_walkers_go_left_to_right_at_normal_speed() -> None:
    scene, clean = SyntheticScene(people_per_minute=4), SyntheticScene(people_per_minute=0)
    checked = 0
    for n in range(0, 120 * 25, 8):  # ~8 walkers, one or two in view at a time
        cols = [
            np.flatnonzero(_diff_mask(_frame(scene, m), _frame(clean, m)).any(axis=0))
            for m in (n, n + 5)
        ]
        # only one whole person in view in both frames: its centre moves exactly with it
        if any(c.size == 0 or c[0] == 0 or c[-1] == W - 1 or c[-1] - c[0] > 20 for c in cols):
            continue
        speed = ((cols[1][0] + cols[1][-1]) - (cols[0][0] + cols[0][-1])) / 2 / 5
        assert 0.6 * scene.normal_speed <= speed <= 1.4 * scene.normal_speed, n
        checked += 1
    assert checked >= 40


def test_is_anomalous_matches_schedule_at_frame_boundaries() -> None:
    anomalies = [
        ScheduledAnomaly("fast", 2.2, 0.4),  # [55, 65), though 2.2 * 25 = 55.00000000000001
        ScheduledAnomaly("wrong_way", 4.0, 1.0),  # [100, 125)
        ScheduledAnomaly("loiter", 6.0, 0.01),  # [150, 150.25): frame 150 only
    ]
    scene = SyntheticScene(anomalies=anomalies)
    plain = SyntheticScene()
    for n in range(200):
        expected = 55 <= n < 65 or 100 <= n < 125 or n == 150
        assert scene.is_anomalous(n) == expected, n
        assert bool(scene.anomaly_boxes(n)) == expected, n
    for n in (54, 55, 64, 65, 99, 100, 124, 125, 150, 151):
        # normal frames are exactly the anomaly-free scene; anomalous ones show the object
        same = np.array_equal(_frame(scene, n), _frame(plain, n))
        assert same != scene.is_anomalous(n), n
    odd_fps = SyntheticScene(fps=30.0, anomalies=[ScheduledAnomaly("fast", 0.5, 0.1)])
    assert [n for n in range(40) if odd_fps.is_anomalous(n)] == [15, 16, 17]


@pytest.mark.parametrize("seed", range(4))
def test_forbidden_area_person_is_on_grass(seed: int) -> None:
    anomaly = ScheduledAnomaly("forbidden_area", 1.0, 2.0)
    scene = SyntheticScene(seed=seed, people_per_minute=0, anomalies=[anomaly])
    clean = SyntheticScene(seed=seed, people_per_minute=0)
    y0, y1 = scene.walkway
    for n in range(25, 75, 5):
        [(bx0, by0, bx1, by1)] = scene.anomaly_boxes(n)
        assert by1 <= y0 or by0 >= y1, (n, scene.anomaly_boxes(n))
        mask = _diff_mask(_frame(scene, n), _frame(clean, n))
        inside = int(mask[by0:by1, bx0:bx1].sum())
        assert inside > 50 and inside == int(mask.sum()), n  # visible, and all inside its box


def test_fast_object_is_at_least_four_times_normal_speed() -> None:
    scene = SyntheticScene(anomalies=[ScheduledAnomaly("fast", 1.0, 2.0)])
    y0, y1 = scene.walkway
    boxes = [scene.anomaly_boxes(n)[0] for n in range(25, 75)]
    assert all(y0 <= b[1] and b[3] <= y1 for b in boxes)
    steps = [
        _centre_x(b) - _centre_x(a)
        for a, b in itertools.pairwise(boxes)
        if min(a[0], b[0]) > 0 and max(a[2], b[2]) < W
    ]  # whole in view, no wrap
    assert len(steps) >= 10
    assert float(np.median(steps)) >= 4 * scene.normal_speed


def test_wrong_way_person_walks_right_to_left() -> None:
    scene = SyntheticScene(anomalies=[ScheduledAnomaly("wrong_way", 2.0, 3.0)])
    y0, y1 = scene.walkway
    boxes = [scene.anomaly_boxes(n)[0] for n in range(50, 125, 5)]
    assert all(y0 <= b[1] and b[3] <= y1 for b in boxes)
    xs = [_centre_x(b) for b in boxes]
    assert all(b < a for a, b in itertools.pairwise(xs)), xs


def test_loiterer_stands_still_on_walkway() -> None:
    scene = SyntheticScene(anomalies=[ScheduledAnomaly("loiter", 0.0, 4.0)])
    y0, y1 = scene.walkway
    boxes = [scene.anomaly_boxes(n)[0] for n in range(0, 100, 10)]
    assert all(y0 <= b[1] and b[3] <= y1 for b in boxes)
    xs = [_centre_x(b) for b in boxes]
    assert max(xs) - min(xs) <= 3


@pytest.mark.parametrize("kind", ["fast", "wrong_way", "forbidden_area"])
def test_long_anomalies_wrap_and_stay_visible(kind: Any) -> None:
    scene = SyntheticScene(people_per_minute=0, anomalies=[ScheduledAnomaly(kind, 0.0, 16.0)])
    clean = SyntheticScene(people_per_minute=0)
    for n in range(0, 400, 2):
        [box] = scene.anomaly_boxes(n)
        assert box[2] - box[0] >= 6, n  # at least about half of the body in view
        assert int(_diff_mask(_frame(scene, n), _frame(clean, n)).sum()) > 30, n


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 63},
        {"height": 32},
        {"fps": 0.0},
        {"fps": float("nan")},
        {"seed": -1},
        {"people_per_minute": -1.0},
    ],
)
def test_invalid_scene_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SyntheticScene(**kwargs)


@pytest.mark.parametrize(
    ("kind", "start_s", "duration_s"),
    [("fast", 1.0, 0.0), ("fast", 1.0, -2.0), ("loiter", -1.0, 1.0), ("teleport", 1.0, 1.0)],
)
def test_invalid_anomalies(kind: Any, start_s: float, duration_s: float) -> None:
    with pytest.raises(ValueError):
        SyntheticScene(anomalies=[ScheduledAnomaly(kind, start_s, duration_s)])


def test_render_rejects_bad_output_and_frame_index() -> None:
    scene = SyntheticScene(width=64, height=64)
    with pytest.raises(ValueError):
        scene.render(0, np.empty((64, 64), np.uint8))
    with pytest.raises(ValueError):
        scene.render(0, np.empty((64, 64, 3), np.float32))
    with pytest.raises(ValueError):
        scene.render(-1, np.empty((64, 64, 3), np.uint8))
    _frame(scene, 0)  # the smallest allowed scene renders


def test_render_is_fast() -> None:
    scene = SyntheticScene(anomalies=[ScheduledAnomaly("fast", 0.0, 10.0)])
    out = np.empty((H, W, 3), np.uint8)
    start = time.perf_counter()
    for n in range(250):
        scene.render(n, out)
    assert time.perf_counter() - start < 1.0  # ~0.1 ms/frame; generous for loaded CI machines
