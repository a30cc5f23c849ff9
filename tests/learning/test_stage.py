"""The learning stage alone: a live ring fed by a thread, footage read through ``LiveFootage``,
a camera learned in place off any scoring loop; too little footage means another period; stop
waits for a training in progress."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from streamdet.capture.ring import FrameRing
from streamdet.capture.synthetic import SyntheticScene
from streamdet.frames import ModelState
from streamdet.learning.footage import FrameWindows
from streamdet.learning.stage import LearningStage, Outcome
from streamdet.learning.workflow import Budget, Plan, Trained
from streamdet.models.base import TrainSettings
from streamdet.models.registry import default_spec, entry
from tests.support.waiting import wait_for

FPS = 50.0  # frames written per second, real time
KIND = "motion"  # trains in seconds


class Camera:
    """A ring written by a thread of its own with the synthetic scene, while ``on`` is set."""

    def __init__(self) -> None:
        self.ring = FrameRing("cam", size=16, shape=(120, 160))
        self.on = threading.Event()
        self.asked: list[str] = []  # the cameras whose frames the stage asked for
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, name="camera:cam", daemon=True)

    def _write(self) -> None:
        scene, colour, n = (
            SyntheticScene(160, 120, FPS, seed=3),
            np.empty((120, 160, 3), np.uint8),
            0,
        )
        while not self._stop.wait(1 / FPS):
            if not self.on.is_set():
                continue
            scene.render(n, colour)
            cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY, dst=self.ring.writable())
            self.ring.commit(time.time(), n / FPS, analyse=n % 5 == 0)
            n += 1

    # LiveFootage
    def windows(self, camera: str) -> FrameWindows:
        self.asked.append(camera)
        return self.ring

    def fps(self, camera: str) -> float:
        return FPS

    def __enter__(self) -> Camera:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


class Told:
    """What the job told the camera, in order."""

    def __init__(self) -> None:
        self.learned: list[Trained] = []
        self.waiting: list[str] = []
        self.failed: list[str] = []

    def outcome(self) -> Outcome:
        return Outcome(self.learned.append, self.waiting.append, self.failed.append)


def plan() -> Plan:
    budget = Budget(FPS / 5, 1.0, entry(KIND).smoothing_alpha)
    return Plan(default_spec(KIND), TrainSettings(seed=0, max_seconds=20), budget)


@pytest.fixture
def camera() -> Iterator[Camera]:
    with Camera() as cam:
        yield cam


def test_a_camera_learns_in_place_on_the_learning_stage(camera: Camera) -> None:
    camera.on.set()
    # 4 s: 200 frames at 50 fps, twice the 100 needed even on a busy machine
    stage, told = LearningStage(camera, learn_seconds=4.0), Told()
    stage.start()
    try:
        job = stage.learn("cam", plan(), told.outcome())
        assert camera.asked == ["cam"] and job.state is ModelState.LEARNING
        wait_for(lambda: job.progress() > 0.25, 5, "the learning period to go on")
        assert job.state is ModelState.LEARNING and job.frames > 0
        wait_for(lambda: job.state is ModelState.TRAINING, 10, "training")
        assert job.progress() == 1.0
        wait_for(lambda: bool(told.learned or told.failed), 60, "a model")
    finally:
        stage.stop()
    assert told.failed == [] and told.waiting == []
    (trained,) = told.learned
    assert job.collector is None  # its copy of the footage went with the job's end
    assert trained.model.kind == KIND and np.isfinite(trained.calibration.threshold)
    # up to 4 s of frames at 50 fps, learned from (all but the held-out share, >= 50)
    held = trained.summary["held_out_clips"]
    assert held >= 1 and 100 <= trained.summary["frames"] + 50 <= 4.5 * FPS


def test_too_little_footage_is_another_period_then_stop_waits_for_the_training(
    camera: Camera,
) -> None:
    stage, told = LearningStage(camera, learn_seconds=1.5), Told()
    stage.start()
    try:
        job = stage.learn("cam", plan(), told.outcome())
        wait_for(lambda: bool(told.waiting), 10, "the first period to end without footage")
        assert "too few to learn" in told.waiting[0] and job.state is ModelState.LEARNING
        camera.on.set()  # the camera comes on: the next period has enough (2 x 1.5 s)
        # (the period under way when it came on may be short of frames too: one more then);
        # the job lets go of its frames once the training has them
        wait_for(lambda: job.collector is None, 15, "a training with enough footage")
        training = job.training  # training takes seconds: it is under way
    finally:
        stage.stop()  # returns once the training under way is over
    assert training and not job.training
    assert len(told.learned) == 1 and told.failed == [], told.failed


def test_a_cancelled_camera_collects_no_more(camera: Camera) -> None:
    camera.on.set()
    stage, told = LearningStage(camera, learn_seconds=60.0), Told()
    stage.start()
    try:
        job = stage.learn("cam", plan(), told.outcome())
        wait_for(lambda: job.frames > 0, 5, "frames")
        stage.cancel("cam")
        time.sleep(0.2)  # a look of the loop may have been under way
        frames = job.frames
        time.sleep(0.5)
        assert job.frames == frames
    finally:
        stage.stop()
    assert told.learned == [] and told.waiting == []


def test_a_camera_removed_while_its_footage_is_read_is_no_error(
    camera: Camera, caplog: pytest.LogCaptureFixture
) -> None:
    """A reload removes the camera between the loop's look at its jobs and its read of the
    camera's footage: the read fails (the ring and the stream are gone). The job was
    cancelled, so that is no error: nothing is logged (CI once had this traceback in a
    reload's log), and the stage goes on."""

    class Removed:
        stage: LearningStage

        def windows(self, name: str) -> FrameWindows:
            return camera.windows(name)

        def fps(self, name: str) -> float:
            self.stage.cancel(name)  # the reload, just then
            raise KeyError(name)

    footage = Removed()
    stage, told = LearningStage(footage, learn_seconds=60.0), Told()
    footage.stage = stage
    stage.start()
    try:
        job = stage.learn("cam", plan(), told.outcome())
        wait_for(lambda: "cam" not in stage._jobs, 5, "the cancel")
        time.sleep(0.2)
        assert stage._thread is not None and stage._thread.is_alive()
    finally:
        stage.stop()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.records
    assert job.state is ModelState.LEARNING and told.failed == []
