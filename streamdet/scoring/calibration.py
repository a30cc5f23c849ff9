"""Thresholds from normal footage alone, for a false-alarm budget.

The operator states a budget — at most N false events per hour at the camera's analysis rate —
and no anomalous examples are needed. An event starts where the smoothed score crosses the
threshold upwards, so the budget is a rate of up-crossings per analysed frame::

    target = N / (3600 * analysis_fps)

When the held-out footage is long enough to see at least ``MIN_CROSSINGS`` crossings at the
target rate, the threshold is the lowest level whose measured crossing rate meets it. Usually it
is far too short for such rare crossings, so the tail of the score distribution is extrapolated
(peaks over a threshold): above ``u``, the 90th percentile, the excess is modelled as a
generalised Pareto tail of shape ``xi`` and scale ``sigma``, so
``P(s > T) = 0.1 * (1 + xi (T - u) / sigma) ** (-1 / xi)`` (``0.1 * exp(-(T - u) / sigma)`` at
``xi = 0``, the exponential). The shape is fitted (``tail_fit``) but taken one standard error
heavier than the estimate and never heavier than the exponential: normal scores have light
tails, and the exponential put Ped2's threshold 1.6 x above its held-out maximum, yet a shape
from a few dozen clusters is noisy (the point estimate went 5 x over a budget on simulated
scores; one standard error keeps the simulated rates within what the exponential gave).
Exceedances of a smoothed score come in clusters; the extremal index ``theta`` (clusters
per exceedance, measured at ``u``) turns the exceedance probability into an up-crossing rate:
``rate(T) = theta * P(s > T)``. Solving ``rate(T) = target`` gives the threshold. It is never
below the held-out maximum while the footage is shorter than the budget's period (an hour for
1 event an hour): a level normal footage reached once in that time is crossed more often than
the budget allows (four folds of 90 s of an indoor camera gave a tail below their maximum,
0.98 x it, and a false event 1.6 x above it in the next 49 s, which this does not prevent).

With less than ``ENOUGH_SECONDS`` of held-out footage (a minute) the tail is a guess from a
few dozen values, and a threshold just above them failed its budget ~90x on real footage. Then
the calibration says so (``short_footage``, with a note for the log, the API and the console)
and takes a conservative threshold instead: the extrapolated one, but at least the held-out
maximum plus a margin of its distance above the median — 2.5 times it (``SHORT_MARGIN``, chosen
on the real clips of ``benchmarks/real_validation.py``: with 2, one of them still had a false
event, at 1.04 x the threshold, with 2.5 none, at 0.99) with almost nothing held out, less as
the footage grows, none at a minute (``short_margin``; a cliff at a minute gave Ped2's 38 s of
held-out clips twice its maximum and caught 8 of 21 pasted anomalies in its validation set,
the slope 16, both with 0 false events).
So only what is clearly beyond everything seen raises an event until more footage is learned.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

TAIL_QUANTILE = 0.90
MIN_CROSSINGS = 10
MIN_FRAMES = 10  # fewer held-out frames cannot calibrate anything
ENOUGH_SECONDS = 60.0  # held-out footage below which it is called short
SHORT_MARGIN = 2.5
SHAPE_MIN = -0.5  # the lightest tail a fit may take (the heaviest is the exponential)
MIN_CLUSTERS = 10  # fewer clusters of exceedances cannot tell a tail's shape


@dataclass(frozen=True)
class Calibration:
    threshold: float  # on the smoothed, normalised frame score
    false_events_per_hour: float  # the budget the threshold was set for
    analysis_fps: float
    smoothing_alpha: float
    held_out_frames: int
    held_out_max: float
    tail_start: float  # u
    tail_scale: float  # sigma
    extremal_index: float  # theta
    tail_shape: float = 0.0  # xi (0: exponential; saved before it existed, it was 0)
    short_footage: bool = False  # too little held-out footage: conservative threshold
    note: str | None = None  # what an operator should know about this threshold

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def short_margin(seconds: float) -> float:
    """How far above the held-out maximum a short footage's threshold goes, in multiples of
    the maximum's distance above the median: ``SHORT_MARGIN`` with almost nothing held out,
    falling linearly to none at ``ENOUGH_SECONDS`` (where the extrapolated tail takes over)."""
    return SHORT_MARGIN * max(0.0, 1.0 - seconds / ENOUGH_SECONDS)


def tail_fit(excess: np.ndarray, clusters: int) -> tuple[float, float]:
    """Shape ``xi`` and scale ``sigma`` of a generalised Pareto tail for the excesses over
    ``u``, which came in ``clusters`` runs.

    The method of moments (mean ``m``, variance ``v``) estimates ``xi = (1 - m^2/v) / 2``; its
    standard error, for ``n`` independent excesses, is ``(1 - xi)(1 - 2 xi)
    sqrt((1 - xi + 6 xi^2) / ((1 - 3 xi)(1 - 4 xi) n))`` (Hosking & Wallis, 1987). Excesses
    of a smoothed score are not independent, so ``n`` is the number of clusters. The shape
    used is the estimate plus one standard error, kept within [``SHAPE_MIN``, 0]: a tail
    is taken as lighter than exponential only as far as the footage shows it, never heavier
    (the exponential stays the cautious default). Then ``sigma = m (1 - xi)`` keeps the
    measured mean excess. With fewer than ``MIN_CLUSTERS`` clusters: the exponential."""
    if len(excess) == 0:
        return 0.0, 1e-6
    m = float(excess.mean())
    v = float(excess.var())
    shape = 0.0
    if clusters >= MIN_CLUSTERS and v > 0:
        xi = max(0.5 * (1.0 - m * m / v), SHAPE_MIN)
        if xi < 0:
            error = (1 - xi) * (1 - 2 * xi)
            error *= math.sqrt((1 - xi + 6 * xi * xi) / ((1 - 3 * xi) * (1 - 4 * xi) * clusters))
            shape = min(xi + error, 0.0)
    return shape, max(m * (1.0 - shape), 1e-6)


def tail_level(shape: float, scale: float, ratio: float) -> float:
    """How far above ``u`` the tail's exceedance probability is ``1 / ratio`` of its own:
    ``sigma / xi * (ratio^xi - 1)``, ``sigma * ln(ratio)`` for the exponential."""
    if abs(shape) < 1e-9:
        return scale * math.log(ratio)
    return float(scale / shape * (ratio**shape - 1.0))


def upcrossings(scores: np.ndarray, level: float) -> int:
    """How many times the series goes from <= level to > level (a start above counts once)."""
    above = np.asarray(scores) > level
    return int(above[0]) + int(np.count_nonzero(above[1:] & ~above[:-1]))


def calibrate(
    clips: list[np.ndarray],
    *,
    analysis_fps: float,
    false_events_per_hour: float,
    smoothing_alpha: float,
    seconds: float | None = None,
) -> Calibration:
    """Threshold for smoothed held-out normal scores ``clips`` (one array per clip, each at the
    analysis rate). ``seconds``: how much footage they come from (default: their frames at
    ``analysis_fps``; more when one footage gave several interleaved analysis-rate series)."""
    if analysis_fps <= 0 or false_events_per_hour <= 0:
        raise ValueError("analysis_fps and false_events_per_hour must be > 0")
    scores = np.concatenate([np.asarray(c, np.float64) for c in clips])
    if len(scores) < MIN_FRAMES:
        raise ValueError(
            f"need at least {MIN_FRAMES} held-out frames to calibrate, got {len(scores)}"
        )
    u = float(np.quantile(scores, TAIL_QUANTILE))
    exceed = int(np.count_nonzero(scores > u))
    crossings = sum(upcrossings(c, u) for c in clips)
    shape, scale = tail_fit(scores[scores > u] - u, crossings)
    theta = min(1.0, crossings / exceed) if exceed else 1.0
    target = false_events_per_hour / (3600.0 * analysis_fps)
    p_exceed = target / max(theta, 1e-6)
    tail_p = 1.0 - TAIL_QUANTILE
    if target * len(scores) >= MIN_CROSSINGS:
        threshold = _empirical(clips, scores, target)
    elif p_exceed < tail_p:
        threshold = u + tail_level(shape, scale, tail_p / p_exceed)
    else:
        threshold = u
    held_out_max = float(scores.max())
    footage_s = len(scores) / analysis_fps if seconds is None else seconds
    if footage_s * false_events_per_hour < 3600.0:
        # footage shorter than the budget's one event: what it reached once in that time it
        # reaches more often than the budget allows, whatever the tail says
        threshold = max(threshold, held_out_max)
    short = footage_s < ENOUGH_SECONDS
    note = None
    if short:
        median = float(np.median(scores))
        threshold = max(threshold, held_out_max + short_margin(footage_s) * (held_out_max - median))
        note = (
            f"only {footage_s:.0f} s of held-out footage ({ENOUGH_SECONDS:.0f} s wanted): "
            f"conservative threshold, learn from more footage to detect subtler anomalies"
        )
    return Calibration(
        threshold=threshold,
        false_events_per_hour=false_events_per_hour,
        analysis_fps=analysis_fps,
        smoothing_alpha=smoothing_alpha,
        held_out_frames=len(scores),
        held_out_max=held_out_max,
        tail_start=u,
        tail_scale=scale,
        tail_shape=shape,
        extremal_index=theta,
        short_footage=short,
        note=note,
    )


def _empirical(clips: list[np.ndarray], scores: np.ndarray, target: float) -> float:
    """The lowest candidate level whose measured up-crossing rate is at most ``target``."""
    levels = np.unique(np.quantile(scores, np.linspace(0.5, 1.0, 501)))
    for level in levels:
        if sum(upcrossings(c, float(level)) for c in clips) / len(scores) <= target:
            return float(level)
    return float(levels[-1])


def release_level(threshold: float, normal_peak: float | None, ratio: float) -> float:
    """Below this, an open event may end: ``ratio`` x threshold (hysteresis), raised to the
    highest score the camera's held-out normal footage reached when that is higher, never
    above the threshold. (The event rules end events by it; learning on line treats a frame
    above it as part of an event.)"""
    level = threshold * ratio
    if normal_peak is not None:
        level = min(max(level, normal_peak), threshold)
    return level
