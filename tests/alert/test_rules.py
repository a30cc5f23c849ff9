"""Event rules on hand-made score sequences: start, peak, hysteresis, end, cooldown, lighting."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from streamdet.alert.rules import Change, EventTracker, Observation, RuleSettings, region_of

FPS = 5.0


def observations(
    scores: list[float], threshold: float = 4.0, hot_cell: bool = True
) -> list[Observation]:
    out = []
    for i, score in enumerate(scores):
        amap = np.zeros((6, 8), np.float32)
        if hot_cell:
            amap[2, 5] = score  # the anomaly sits in one cell
        out.append(Observation(i / FPS, i, score, threshold, amap))
    return out


def run(
    scores: list[float], settings: RuleSettings | None = None, **kw: object
) -> list[tuple[Change, float]]:
    tracker = EventTracker(
        "cam", settings or RuleSettings(min_duration_s=0.4, end_after_s=0.6, cooldown_s=2.0)
    )
    changes = []
    for obs in observations(scores, **kw):  # type: ignore[arg-type]
        changes += [(u.change, u.event.peak_score) for u in tracker.feed(obs)]
    return changes


def test_short_blip_raises_nothing() -> None:
    assert run([0, 0, 5, 0, 0, 0]) == []


def test_a_short_blip_far_above_the_threshold_starts_an_event_at_once() -> None:
    """instant_ratio (2) x the threshold: no min_duration_s wait (a thrown bag is gone by
    then); just below it, a blip that short still raises nothing."""
    changes = run([0, 0, 8, 0, 0, 0, 0, 0])  # threshold 4: 8 is 2x it
    assert [c for c, _ in changes] == [Change.STARTED, Change.ENDED]
    assert changes[0][1] == 8
    assert run([0, 0, 7.9, 0, 0, 0, 0, 0]) == []
    off = RuleSettings(min_duration_s=0.4, end_after_s=0.6, instant_ratio=1e6)
    assert run([0, 0, 80, 0, 0, 0, 0, 0], off) == []


def test_sustained_anomaly_is_one_event_with_its_peak() -> None:
    changes = run([0, 5, 5, 6, 7, 6, 0, 0, 0, 0, 0])
    kinds = [c for c, _ in changes]
    assert kinds[0] is Change.STARTED and kinds[-1] is Change.ENDED
    assert kinds.count(Change.STARTED) == 1 and kinds.count(Change.ENDED) == 1
    assert changes[-1][1] == 7  # the peak travels with the event


def test_hysteresis_keeps_a_dipping_event_open() -> None:
    # 3.5 is below the threshold 4 but above the release level 0.8 x 4 = 3.2: the event goes
    # on through the 0.8 s dip (longer than end_after_s) and ends only when the score falls to
    # 0 at 1.8 s. Without hysteresis (release_ratio 1.0) it would end at the dip, 0.6 s.
    settings = RuleSettings(min_duration_s=0.4, end_after_s=0.6, cooldown_s=2.0, release_ratio=0.8)
    tracker = EventTracker("cam", settings)
    scores = [5, 5, 5, 3.5, 3.5, 3.5, 3.5, 5, 5, 0, 0, 0, 0]
    updates = [u for obs in observations(scores) for u in tracker.feed(obs)]
    ended = [u.event for u in updates if u.change is Change.ENDED]
    assert [u.change for u in updates].count(Change.STARTED) == 1 and len(ended) == 1
    assert ended[0].start == pytest.approx(0.0)
    assert ended[0].end == pytest.approx(1.8)


def test_cooldown_prevents_a_storm() -> None:
    scores = [5, 5, 5, 0, 0, 0, 0] + [5, 5, 5, 0, 0, 0, 0] * 2 + [0] * 10 + [5, 5, 5]
    settings = RuleSettings(min_duration_s=0.4, end_after_s=0.6, cooldown_s=3.0)
    starts = [c for c, _ in run(scores, settings)].count(Change.STARTED)
    # The first event ends at 0.6 s: bursts at 1.4 s and 2.8 s fall in the cooldown (to 3.6 s),
    # the last one (5.6 s) comes after it.
    assert starts == 2


def test_global_change_is_not_an_event() -> None:
    scores = [0, 9, 9, 9, 9, 9, 9, 0]
    tracker = EventTracker("cam", RuleSettings(min_duration_s=0.2))
    for i, s in enumerate(scores):
        amap = np.full((6, 8), s, np.float32)  # the whole image changed at once
        assert tracker.feed(Observation(i / FPS, i, s, 4.0, amap)) == []


def test_event_times_and_region() -> None:
    tracker = EventTracker("cam", RuleSettings(min_duration_s=0.4, end_after_s=0.4, cooldown_s=0))
    updates = [u for obs in observations([0, 5, 6, 6, 0, 0, 0, 0]) for u in tracker.feed(obs)]
    started = next(u.event for u in updates if u.change is Change.STARTED)
    ended = next(u.event for u in updates if u.change is Change.ENDED)
    assert started.start == pytest.approx(0.2)  # the first frame above, not the confirming one
    assert ended.end == pytest.approx(0.8)  # when it went below for good
    assert ended.region == pytest.approx((5 / 8, 2 / 6, 6 / 8, 3 / 6))


def test_region_of_several_cells() -> None:
    amap = np.zeros((4, 4))
    amap[1, 1] = amap[2, 3] = 5
    assert region_of(amap, 4) == (0.25, 0.25, 1.0, 0.75)


def test_release_level_rises_to_the_normal_peak_but_never_above_the_threshold() -> None:
    settings = RuleSettings(min_duration_s=0.4, end_after_s=0.6, cooldown_s=0.0)
    # Busy normal traffic at 3.5 after the anomaly: above 0.8 x 4.0 = 3.2, below the threshold.
    scores = [0.0, 5, 5, 5, 5, 3.5, 3.5, 3.5, 3.5, 3.5, 3.5, 3.5, 3.5]

    def ends(normal_peak: float | None) -> list[int]:
        tracker = EventTracker("cam", settings)
        amap = np.zeros((6, 8), np.float32)
        done = []
        for i, s in enumerate(scores):
            obs = Observation(i / FPS, i, s, 4.0, amap, normal_peak)
            done += [i for u in tracker.feed(obs) if u.change is Change.ENDED]
        return done

    assert ends(None) == []  # hysteresis alone: the event lasts as long as the traffic
    assert ends(3.8) == [8]  # normal footage reached 3.8: below it for 0.6 s ends the event
    tracker = EventTracker("cam", settings)
    amap = np.zeros((6, 8), np.float32)
    assert tracker.release_level(Observation(0, 0, 0, 4.0, amap, 9.0)) == 4.0
    assert tracker.release_level(Observation(0, 0, 0, 4.0, amap, 1.0)) == pytest.approx(3.2)


def test_finish_ends_the_open_event_at_its_last_frame_or_where_it_fell() -> None:
    tracker = EventTracker("cam", RuleSettings(min_duration_s=0.4, end_after_s=0.6))
    assert tracker.finish() is None  # nothing open
    for obs in observations([0, 5, 5, 5, 6, 5]):
        tracker.feed(obs)
    update = tracker.finish()
    assert update is not None and update.change is Change.ENDED
    assert update.event.end == pytest.approx(5 / FPS) and update.event.peak_score == 6
    assert tracker.event is None and tracker.finish() is None
    for obs in observations([0, 5, 5, 5, 0, 0]):  # below the release level since frame 4
        tracker.feed(Observation(obs.time + 10, obs.seq, obs.smoothed, 4.0, obs.anomaly_map))
    update = tracker.finish()
    assert update is not None and update.event.end == pytest.approx(10 + 4 / FPS)


def test_event_reason_is_what_most_of_it_said_not_the_peak_frame() -> None:
    """A wrong-way walker that slows at its peak ends as 'wrong way': the reason is the one
    that carried most of the event's excess over the threshold."""
    from streamdet.frames import DetectedObject

    tracker = EventTracker("cam", RuleSettings(min_duration_s=0.4, end_after_s=0.6))
    scores = [5, 6, 6, 6, 6, 6, 7.5, 0, 0, 0, 0, 0]
    reasons = ["wrong way"] * 6 + ["slow"] + [""] * 5
    updates = []
    for obs, reason in zip(observations(scores), reasons, strict=True):
        box = (0.5, 0.3, 0.7, 0.6)
        objects = (DetectedObject(box, obs.smoothed, reason),) if reason else ()
        updates += tracker.feed(replace(obs, objects=objects))
    assert [u.change for u in updates] == [
        Change.STARTED,
        Change.UPDATED,
        Change.UPDATED,
        Change.ENDED,
    ]
    assert updates[0].event.reason == "wrong way"
    assert updates[-1].event.peak_score == 7.5  # the peak is the slow frame's...
    assert updates[-1].event.reason == "wrong way"  # ...but the event was a wrong-way walker
