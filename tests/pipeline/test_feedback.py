"""Operator feedback through a running pipeline: an event marked normal does not recur when the
same situation is replayed, while another kind of anomaly still alarms.

A synthetic camera (real time, 25 fps, analysed at 5 fps) with an objects model trained on its
normal footage stages a person loitering on the path. The pipeline raises an event; the test
marks it normal over real HTTP (``POST /api/events/{id}/normal``), stops the pipeline, and starts
it again from the saved checkpoint: the same frames come again (the scene is deterministic),
and this time the loiterer raises no event, while a cyclist staged later in the replay does.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamdet.alert.rules import Change, EventState
from streamdet.capture.synthetic import SyntheticScene
from streamdet.config import Config, parse_config
from streamdet.frames import ScoredFrame
from streamdet.learning.workflow import Budget, Plan, learn
from streamdet.models.base import ModelSpec, TrainingData, TrainSettings
from streamdet.models.checkpoint import load_checkpoint, save_checkpoint
from streamdet.models.objects import ObjectModel
from streamdet.models.registry import entry
from streamdet.scoring.calibration import release_level
from tests.support.pipeline import Running
from tests.support.waiting import wait_for

W, H, FPS, SEED, ANALYSIS_FPS = 320, 240, 25.0, 3, 5
LOITER = {"kind": "loiter", "start_s": 8.0, "duration_s": 5.0}
FAST = {"kind": "fast", "start_s": 22.0, "duration_s": 4.0}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint for camera ``path`` learned from 3 minutes of the scene's normal footage
    (frames it never shows in these runs: they start at frame 0, training starts at 6000)."""
    scene = SyntheticScene(W, H, FPS, seed=SEED)
    out = np.empty((H, W, 3), np.uint8)
    clip = np.empty((4500, H, W), np.uint8)
    for i in range(len(clip)):
        scene.render(6000 + i, out)
        clip[i] = out.mean(axis=2).astype(np.uint8)
    trained = learn(
        TrainingData([clip[i : i + 750] for i in range(0, len(clip), 750)], FPS),
        Plan(
            ModelSpec("objects", W, H, 16),
            TrainSettings(seed=0),
            Budget(ANALYSIS_FPS, 1.0, entry("objects").smoothing_alpha),
        ),
    )
    models = tmp_path_factory.mktemp("feedback") / "models"
    extra = {"camera": "path", "calibration": trained.calibration.as_dict(), "training": {}}
    save_checkpoint(trained.model, models / "path", extra)
    return models


@pytest.fixture
def models(trained: Path, tmp_path: Path) -> Path:
    """The trained checkpoint, copied for one test (the tests' runs change it)."""
    shutil.copytree(trained, tmp_path / "models")
    return tmp_path / "models"


def config(models: Path, anomalies: list[dict[str, Any]], **learning: float) -> Config:
    source = {"kind": "synthetic", "seed": SEED, "width": W, "height": H, "fps": FPS}
    camera = {
        "name": "path",
        "source": {**source, "anomalies": anomalies},
        "frame": {"width": W, "height": H},
        "analysis_fps": ANALYSIS_FPS,
    }
    return parse_config(
        {
            "cameras": [camera],
            "models": {"dir": str(models), "learn_in_place": False, **learning},
            "alerts": {"dir": str(models.parent / "events"), "rules": {"cooldown_s": 2.0}},
            "server": {"port": 0},
        }
    )


def post(run: Running, path: str) -> tuple[int, dict[str, Any]]:
    status, body = run.post(path)
    return status, json.loads(body)


def events(run: Running) -> list[dict[str, Any]]:
    status, body = run.get("/api/events?limit=50")
    assert status == 200, body
    found: list[dict[str, Any]] = json.loads(body)["events"]
    return sorted(found, key=lambda e: e["start"])


class Scene:
    """Scene time (the source's frame n is at n / fps) of what a running pipeline scores."""

    def __init__(self, run: Running) -> None:
        self.newest = -1.0
        self._offsets: list[float] = []
        self.frames: list[tuple[float, bool, list[np.ndarray]]] = []  # wall time, hot, rows
        self.scores: list[tuple[float, float, float]] = []  # scene time, smoothed, threshold
        run.app.on_score(self._scored)

    def _scored(self, frame: ScoredFrame) -> None:
        self.newest = frame.ref.seq / FPS
        self._offsets.append(frame.ref.wall_time - self.newest)
        rows = [o.features for o in frame.objects if o.features is not None]
        # what could start an event or hold one open (the rules' default release ratio)
        level = release_level(frame.threshold, frame.normal_peak, 0.8)
        hot = frame.smoothed > level or frame.score > frame.threshold
        self.frames.append((frame.ref.wall_time, hot, rows))
        self.scores.append((self.newest, frame.smoothed, frame.threshold))

    def highest(self, window: tuple[float, float]) -> tuple[float, float]:
        """The highest smoothed score scored in a window of scene time, and the threshold."""
        inside = [(s, t) for when, s, t in self.scores if window[0] <= when <= window[1]]
        return max(inside) if inside else (float("nan"), float("nan"))

    def of(self, event: dict[str, Any]) -> tuple[float, float]:
        """An event's start and end in scene seconds (real time: wall time minus an offset)."""
        offset = float(np.median(self._offsets))
        return event["start"] - offset, (event["end"] or event["start"]) - offset


@pytest.mark.timeout(480)  # training (about 75 s alone) and two runs of 20 s and 30 s
def test_an_event_marked_normal_does_not_recur_on_a_replay(models: Path) -> None:
    loiter = (LOITER["start_s"], LOITER["start_s"] + LOITER["duration_s"])
    run = Running(config(models, [LOITER]))
    scene = Scene(run)
    with run:
        wait_for(lambda: scene.newest > loiter[1] + 4, 60, "the loiterer and a while after")
        wait_for(lambda: any(e["end"] for e in events(run)), 20, "the loiter event to end")
        first = [e for e in events(run) if overlaps(scene.of(e), loiter)]
        assert first, f"the loiterer raised no event: nothing to teach ({events(run)})"
        taught = 0
        for event in first:
            assert event["teachable"] and event["feedback"] is None
            status, body = post(run, f"/api/events/{event['id']}/normal")
            assert status == 200, body
            assert body["feedback"] == "normal"
            taught += body["taught_objects"]
        assert taught > 0
        print(f"first run: loiterer peak {scene.highest(loiter)}; taught {taught} objects")
        assert all(e["feedback"] == "normal" for e in events(run) if e["id"] in ids(first))
        learned = run.app.registry.get_sample_value(
            "streamdet_objects_learned_total", {"camera": "path", "how": "taught"}
        )
        assert learned == taught
        status, text = run.get("/api/cameras")
        assert json.loads(text)["cameras"][0]["model"]["learned"]["taught"] == taught
    # The same frames again, from the checkpoint the feedback saved, and a cyclist later.
    fast = (FAST["start_s"], FAST["start_s"] + FAST["duration_s"])
    run = Running(config(models, [LOITER, FAST]))
    scene = Scene(run)
    with run:
        wait_for(lambda: scene.newest > fast[1] + 4, 60, "the replay and the cyclist")
        replay = [(scene.of(e), e) for e in events(run)]
    print(f"replay: loiterer peak {scene.highest(loiter)}, cyclist {scene.highest(fast)}")
    again = [e for when, e in replay if overlaps(when, loiter)]
    assert again == [], f"the loiterer alarmed again: {again}"
    assert [e for when, e in replay if overlaps(when, fast)], f"no event for the cyclist: {replay}"


def overlaps(when: tuple[float, float], window: tuple[float, float], slack: float = 2.0) -> bool:
    return when[0] < window[1] + slack and when[1] > window[0] - slack


def ids(found: list[dict[str, Any]]) -> set[str]:
    return {e["id"] for e in found}


def test_marking_normal_refuses_what_it_cannot_teach(tmp_path: Path) -> None:
    """404 for no such event; 409, saying why, for an open event, one without object
    features (another model kind, from before them) and a camera whose model cannot learn."""
    with Running(config(tmp_path / "models", [])) as run:  # no model: nothing detects
        store = run.app.alerts.store
        assert store is not None
        state = EventState("path", 1.0, None, 9.0, 1.5, 7, (0, 0, 1, 1), 5.0)
        open_id = store.record(Change.STARTED, state, None, "objects v1", [])["id"]
        ended = replace(state, end=3.0)
        old_id = store.record(Change.STARTED, ended, None, "motion v1", [])["id"]
        store.record(Change.ENDED, ended, old_id, "motion v1", [])

        for missing in ("0" * 32, "not-an-id"):
            status, text = run.post(f"/api/events/{missing}/normal")
            assert (status, text) == (404, "no such event")
        status, body = post(run, f"/api/events/{open_id}/normal")
        assert status == 409 and "still open" in body["detail"], body
        status, body = post(run, f"/api/events/{old_id}/normal")
        assert (status, body["error"]) == (409, "conflict"), body
        assert "no object features" in body["detail"]
        store.set_features(old_id, np.zeros((3, 18), np.float32))
        status, body = post(run, f"/api/events/{old_id}/normal")
        assert status == 409, body
        assert "cannot teach camera 'path'" in body["detail"] and "no_model" in body["detail"]
        status, text = run.get(f"/api/events/{old_id}")
        assert status == 200 and json.loads(text)["feedback"] is None


@pytest.mark.timeout(300)
def test_a_detecting_camera_learns_frames_far_from_events_and_never_event_frames(
    models: Path,
) -> None:
    """While detecting, frames far from every hot frame go into the online ring (and are saved
    at stop); none of the frames within the margin of a hot frame (the loiterer's) does."""
    margin = 2.0
    run = Running(config(models, [LOITER], keep_learning_margin_s=margin, keep_learning_fps=5.0))
    scene = Scene(run)
    with run:
        end = LOITER["start_s"] + LOITER["duration_s"]
        wait_for(lambda: scene.newest > end + margin + 4, 60, "the loiterer and a while after")
    counted = run.app.registry.get_sample_value(
        "streamdet_objects_learned_total", {"camera": "path", "how": "online"}
    )
    model, _ = load_checkpoint(models / "path")
    assert isinstance(model, ObjectModel)
    first, size = model.rings()["online"]
    ring = model.bank[first : first + min(int(model.online_next[0]), size)].numpy()
    assert len(ring) > 0 and counted == int(model.online_next[0])
    hot = np.array([t for t, is_hot, _ in scene.frames if is_hot])
    assert len(hot), "the loiterer made no frame hot: the test shows nothing"
    near = [rows for t, _, rows in scene.frames if np.abs(hot - t).min() <= margin and rows]
    assert near, "no objects near the hot frames: the test shows nothing"
    when = {}
    for t, _, rows in scene.frames:
        for row in rows:
            when[row.tobytes()] = t
    for row in ring:
        t = when.get(row.astype(np.float32).tobytes())
        assert t is not None, "a ring row that no scored frame had"
        assert np.abs(hot - t).min() > margin, (
            f"learned a frame {np.abs(hot - t).min():.2f} s from a hot one"
        )
