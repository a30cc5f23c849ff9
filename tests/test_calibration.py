"""Calibration maths on distributions whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamdet.scoring.calibration import calibrate, short_margin, upcrossings
from streamdet.scoring.smoothing import Ema, ema


def test_upcrossings() -> None:
    assert upcrossings(np.array([0, 2, 2, 0, 3, 0]), 1) == 2
    assert upcrossings(np.array([5, 5, 0]), 1) == 1
    assert upcrossings(np.array([0, 0]), 1) == 0


def test_exponential_iid_threshold_matches_the_true_quantile() -> None:
    rng = np.random.default_rng(0)
    scores = rng.exponential(1.0, 20000)
    # 2 false events/hour at 5 fps: p = 2 / 18000 per frame; iid: theta ~ 1, P(s > T) = e^-T.
    cal = calibrate([scores], analysis_fps=5, false_events_per_hour=2, smoothing_alpha=1.0)
    expected = math.log(18000 / 2)
    assert cal.threshold == pytest.approx(expected, rel=0.08)
    assert cal.extremal_index == pytest.approx(0.9, abs=0.1)


def test_budget_is_met_on_fresh_normal_data() -> None:
    rng = np.random.default_rng(1)
    alpha = 0.5
    held_out = ema(rng.normal(size=5000), alpha)
    cal = calibrate([held_out], analysis_fps=5, false_events_per_hour=60, smoothing_alpha=alpha)
    # Ten simulated hours of fresh normal scores at 5 fps: about 600 events allowed.
    fresh = ema(rng.normal(size=180000), alpha)
    events_per_hour = upcrossings(fresh, cal.threshold) / 10
    assert 30 <= events_per_hour <= 75, events_per_hour


def test_threshold_grows_with_a_stricter_budget() -> None:
    rng = np.random.default_rng(2)
    scores = [rng.normal(size=400) for _ in range(3)]
    loose = calibrate(scores, analysis_fps=5, false_events_per_hour=100, smoothing_alpha=1.0)
    strict = calibrate(scores, analysis_fps=5, false_events_per_hour=0.1, smoothing_alpha=1.0)
    assert strict.threshold > loose.threshold


def test_too_little_data_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="at least 10"):
        calibrate([np.zeros(9)], analysis_fps=5, false_events_per_hour=1, smoothing_alpha=1)


def test_short_footage_is_said_and_gets_a_conservative_threshold() -> None:
    rng = np.random.default_rng(4)
    few = [rng.normal(size=59)]  # 12 s at 5 fps: the 59 frames the issue saw fail 90x
    short = calibrate(few, analysis_fps=5, false_events_per_hour=1, smoothing_alpha=1.0)
    assert short.short_footage and short.note is not None and "12 s of held-out" in short.note
    peak, median = float(few[0].max()), float(np.median(few[0]))
    # 12 s of the 60 wanted: the margin is 2.5 x (1 - 12/60) = 2 spreads above the maximum
    assert short.threshold >= peak + 2.0 * (peak - median) - 1e-9
    longer = calibrate(
        [rng.normal(size=59)],
        analysis_fps=5,
        false_events_per_hour=1,
        smoothing_alpha=1.0,
        seconds=48.0,
    )
    assert longer.short_footage
    # the margin shrinks as footage grows: 0.5 spreads at 48 s, not a cliff at 60 s
    assert short_margin(12.0) == pytest.approx(2.0) and short_margin(48.0) == pytest.approx(0.5)
    assert short_margin(60.0) == 0.0 and short_margin(0.0) == 2.5
    enough = calibrate(
        [rng.normal(size=600)], analysis_fps=5, false_events_per_hour=1, smoothing_alpha=1.0
    )
    assert not enough.short_footage and enough.note is None


def test_ema_is_causal_and_matches_streaming_form() -> None:
    scores = np.array([0.0, 10.0, 0.0, 0.0])
    smoothed = ema(scores, 0.5)
    assert smoothed.tolist() == [0.0, 5.0, 2.5, 1.25]
    stream = Ema(0.5)
    assert [stream.update(s) for s in scores] == smoothed.tolist()
    changed = scores.copy()
    changed[3] = 100
    assert ema(changed, 0.5)[:3].tolist() == smoothed[:3].tolist()  # the future changes nothing
    with pytest.raises(ValueError):
        Ema(0)


def test_extrapolated_budget_is_not_exceeded() -> None:
    rng = np.random.default_rng(3)
    alpha = 0.3
    held_out = ema(rng.normal(size=3000), alpha)
    cal = calibrate([held_out], analysis_fps=5, false_events_per_hour=4, smoothing_alpha=alpha)
    fresh = ema(rng.normal(size=180000), alpha)  # ten hours at 5 fps
    assert upcrossings(fresh, cal.threshold) / 10 <= 4
    assert cal.threshold < held_out.max() + 3 * held_out.std()  # conservative, not absurd


def test_footage_shorter_than_the_budgets_period_never_puts_the_threshold_under_its_peak() -> None:
    rng = np.random.default_rng(5)
    scores = rng.normal(size=3000)
    scores[1500] = 40.0  # one moment far above the rest: the exponential tail stays below it
    ten_minutes = calibrate(
        [scores], analysis_fps=5, false_events_per_hour=1, smoothing_alpha=1.0, seconds=600
    )
    assert not ten_minutes.short_footage
    assert ten_minutes.threshold == 40.0  # reached once in 10 min: 6 an hour, not 1
    # two hours of footage that reached it once: under the budget of one an hour
    two_hours = calibrate(
        [scores], analysis_fps=5, false_events_per_hour=1, smoothing_alpha=1.0, seconds=7200
    )
    assert two_hours.threshold < 40.0
