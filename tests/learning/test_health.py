"""Camera health on the synthetic scene: learn the normal look, then each fault is exactly its
own condition (opened after the persistence time, ended after the clear time), and normal
footage the baseline never saw raises none.

The checks run as the pipeline runs them (a frame and the one before it, every 0.5 s of scene
time, resized to the model's size as training footage is), without threads or a clock.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from streamdet.alert.health import HealthTracker
from streamdet.alert.rules import Change, Update
from streamdet.capture.synthetic import SceneFault, SyntheticScene
from streamdet.errors import ModelError
from streamdet.learning.health import (
    HealthBaseline,
    Meter,
    findings,
    frozen_check_possible,
    learn_baseline,
    to_size,
)
from streamdet.views import half
from tests.support.media import footage

FPS = 25.0
FAULT = (110.0, 20.0)  # scene seconds: start, duration; checked from 100 s to 140 s


def checks(
    baseline: HealthBaseline, scene: SyntheticScene, start_s: float, end_s: float
) -> list[Update]:
    tracker = HealthTracker("cam", open_after_s=3.0, clear_after_s=3.0)
    meter = Meter(baseline.reference_image())
    out = np.empty((scene.height, scene.width, 3), np.uint8)
    updates = []
    for t in np.arange(start_s, end_s, 0.5):
        n = round(t * FPS)
        scene.render(n - 1, out)
        before = to_size(out, baseline)
        scene.render(n, out)
        strengths = findings(baseline, meter.measure(to_size(out, baseline), before))
        updates += tracker.feed(float(t), strengths, {})
    return updates


@pytest.fixture(scope="module")
def baseline() -> HealthBaseline:
    return learn_baseline([footage(SyntheticScene(seed=1), 12.0)])


@pytest.mark.parametrize(
    ("fault", "condition"),
    [("cover", "covered"), ("shift", "moved"), ("blur", "blurred"), ("freeze", "frozen")],
)
def test_each_fault_is_exactly_its_own_health_event(
    baseline: HealthBaseline, fault: str, condition: str
) -> None:
    start, duration = FAULT
    scene = SyntheticScene(seed=1, faults=[SceneFault(fault, start, duration)])  # type: ignore[arg-type]
    updates = checks(baseline, scene, 100.0, 140.0)
    assert [(u.change, u.event.condition) for u in updates] == [
        (Change.STARTED, condition),
        (Change.ENDED, condition),
    ], updates
    began, ended = updates[0].event, updates[1].event
    assert began.kind == "health" and began.peak_score > 1
    assert start <= began.start <= start + 0.5  # the first check that showed it
    assert ended.end is not None and start + duration <= ended.end <= start + duration + 0.5


@pytest.mark.parametrize("seed", [1, 2])
def test_normal_footage_the_baseline_never_saw_raises_no_health_event(seed: int) -> None:
    learned = learn_baseline([footage(SyntheticScene(seed=seed), 12.0)])
    assert checks(learned, SyntheticScene(seed=seed), 100.0, 220.0) == []


def test_a_static_scene_with_sensor_noise_is_not_frozen_but_a_frozen_one_is() -> None:
    # No people: only the sensor noise changes between frames. The learned normal change is
    # that noise, so the same empty scene stays healthy and only a stopped picture is frozen.
    learned = learn_baseline([footage(SyntheticScene(seed=3, people_per_minute=0), 8.0)])
    assert frozen_check_possible(learned)
    assert checks(learned, SyntheticScene(seed=3, people_per_minute=0), 100.0, 140.0) == []
    frozen = SyntheticScene(seed=3, people_per_minute=0, faults=[SceneFault("freeze", *FAULT)])
    conditions = [u.event.condition for u in checks(learned, frozen, 100.0, 140.0)]
    assert conditions == ["frozen", "frozen"]


def test_still_footage_that_barely_changes_is_frozen_only_when_its_frames_repeat() -> None:
    # Compressed footage of a still scene: neighbours differ in a row of pixels by one grey
    # level (0.006 on average), far below the ratio check's 0.5, but are never identical.
    base = footage(SyntheticScene(seed=3, people_per_minute=0), 0.04)[0]
    still = np.repeat(base[None], 200, axis=0)
    for i, frame in enumerate(still):
        frame[i % len(base)] += 1
    learned = learn_baseline([still[:120]])
    assert learned.change < 0.5 and learned.repeats == 0 and frozen_check_possible(learned)
    tracker, meter = HealthTracker("cam", 3.0, 3.0), Meter(learned.reference_image())
    frozen = np.concatenate([still[120:160], np.repeat(still[159:160], 40, axis=0)])
    found = []
    for n in range(1, len(frozen)):  # one check a frame, at 2 checks per second
        strengths = findings(learned, meter.measure(frozen[n], frozen[n - 1]))
        found += [
            (u.change, u.event.condition, u.event.start) for u in tracker.feed(n / 2, strengths, {})
        ]
    assert found == [(Change.STARTED, "frozen", 40 / 2)]  # since the first repeat (frame 40)


def test_footage_that_never_changes_turns_the_frozen_check_off() -> None:
    still = np.repeat(footage(SyntheticScene(seed=3), 0.04), 60, axis=0)  # one frame, repeated
    learned = learn_baseline([still])
    assert not frozen_check_possible(learned)
    frozen = SyntheticScene(seed=3, faults=[SceneFault("freeze", *FAULT)])
    assert [u for u in checks(learned, frozen, 100.0, 140.0) if u.event.condition == "frozen"] == []


def test_a_condition_opens_only_after_the_persistence_time_and_ends_only_after_the_clear_time() -> (
    None
):
    tracker = HealthTracker("cam", open_after_s=3.0, clear_after_s=3.0)
    feed = [(t, 2.0) for t in (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)] + [(3.0, 0.0)]  # 2.5 s: too short
    assert [u for t, s in feed for u in tracker.feed(t, {"covered": s}, {})] == []
    held = [(t, 2.0) for t in np.arange(4.0, 7.5, 0.5)]  # 3 s: opens at 7.0, started at 4.0
    opened = [u for t, s in held for u in tracker.feed(float(t), {"covered": s}, {})]
    assert [(u.change, u.event.start) for u in opened] == [(Change.STARTED, 4.0)]
    gap = [(7.5, 0.0), (8.0, 0.0), (9.0, 0.0), (9.5, 2.0)]  # 2 s without: still open
    assert [u for t, s in gap for u in tracker.feed(t, {"covered": s}, {})] == []
    assert tracker.is_open("covered") and tracker.holding()
    clear = [(t, 0.0) for t in np.arange(10.0, 13.5, 0.5)]
    ended = [u for t, s in clear for u in tracker.feed(float(t), {"covered": s}, {})]
    assert [(u.change, u.event.end) for u in ended] == [(Change.ENDED, 10.0)]
    assert not tracker.holding()


def test_the_baseline_round_trips_through_its_metadata_and_a_damaged_one_is_a_model_error(
    baseline: HealthBaseline,
) -> None:
    assert HealthBaseline.from_dict(baseline.as_dict()) == baseline
    damaged = {**baseline.as_dict(), "reference": "AAAA"}
    with pytest.raises(ModelError, match="damaged health baseline"):
        HealthBaseline.from_dict(damaged)
    with pytest.raises(ModelError, match="format"):
        HealthBaseline.from_dict({**baseline.as_dict(), "format": 99})
    with pytest.raises(ModelError, match="damaged health baseline"):
        HealthBaseline.from_dict(dataclasses.asdict(baseline))  # no format


def test_scene_faults_are_validated_and_change_nothing_outside_their_window() -> None:
    with pytest.raises(ValueError, match="fault kind"):
        SceneFault("melt", 1.0, 1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="duration_s"):
        SceneFault("cover", 1.0, 0.0)
    plain, faulty = (
        SyntheticScene(seed=5),
        SyntheticScene(seed=5, faults=[SceneFault("blur", 2, 1)]),
    )
    a, b = np.empty((240, 320, 3), np.uint8), np.empty((240, 320, 3), np.uint8)
    for n in (0, 49, 75, 100):
        plain.render(n, a)
        faulty.render(n, b)
        assert np.array_equal(a, b) == (faulty.fault_at(n) is None), n


def test_an_object_in_front_of_a_few_tiles_does_not_move_the_view_but_a_turn_does() -> None:
    """A left bag or a parked car in front of part of the view shifts the tiles it covers; a
    turned camera shifts all of them."""
    rng = np.random.default_rng(5)
    view = cv2.GaussianBlur(rng.integers(0, 255, (240, 320), dtype=np.uint8), (5, 5), 0)
    view[:, 180:] = 128  # a bare wall on the right: its 3 tiles place nothing, 6 are left
    meter = Meter(half(view))
    assert meter.measure(view, None).shift < 1.0
    occluded = view.copy()  # the left third covered by something textured (3 of the 6 tiles)
    occluded[:, :107] = np.roll(view, 16, axis=1)[:, :107]
    assert meter.measure(occluded, None).shift < 1.0
    turned = np.roll(view, 16, axis=1)
    assert meter.measure(turned, None).shift >= 7.0  # 16 px at full size: 8 at half size
