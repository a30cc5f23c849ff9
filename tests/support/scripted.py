"""Events by script: the real capture and alert stages around an inference stage that is not
started; the test scores each new frame of the ring itself, so it knows which frame is the peak."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from streamdet.alert.stage import AlertStage
from streamdet.app import CaptureFrames, scored_handoff
from streamdet.capture.stage import CaptureStage
from streamdet.config import Config
from streamdet.frames import FrameRef, ScoredFrame
from streamdet.inference.stage import InferenceStage
from streamdet.metrics import PipelineMetrics

# Scores in order: quiet, then the peak (the first above a threshold of 4), lower but still
# above for longer than a min_duration_s of 0.3 s, then quiet until the event ends.
PEAK_FIRST = [1.0] * 5 + [9.0] + [6.0] * 15 + [1.0] * 25


@dataclass
class Stages:
    capture: CaptureStage
    inference: InferenceStage
    alerts: AlertStage


def stages(config: Config) -> Stages:
    """The stages of ``config`` (capture keeping footage when clips are on), not started."""
    capture = CaptureStage(config.cameras, config.capture, clips=config.alerts.clips)
    metrics = PipelineMetrics(CollectorRegistry())
    scored = scored_handoff(config.inference.output_queue, metrics)
    inference = InferenceStage(
        capture, config.cameras, config.models, config.inference, metrics, scored=scored
    )
    cameras = list(inference.detectors)
    frames = CaptureFrames(capture)
    alerts = AlertStage(config.alerts, scored, frames, cameras, inference.health_baseline)
    return Stages(capture, inference, alerts)


def run_script(
    stages: Stages,
    camera: str,
    scores: list[float],
    scored: Callable[[FrameRef, float], ScoredFrame],
    settle_s: float = 0.3,
) -> None:
    """Capture runs; each new frame of ``camera`` gets the next of ``scores`` (``scored`` makes
    its record) until none is left; the alert stage then has ``settle_s`` and is stopped."""
    scores = list(scores)

    async def scenario() -> None:
        await stages.alerts.start()
        ring, last = stages.capture.ring(camera), -1
        try:
            while scores:
                await asyncio.sleep(0.01)
                ref = ring.latest()
                if ref is None or ref.seq == last:
                    continue
                last = ref.seq
                stages.inference._publish(scored(ref, scores.pop(0)))
            await asyncio.sleep(settle_s)  # the rules task takes the last frames
        finally:
            await stages.alerts.stop()

    with stages.capture:
        asyncio.run(scenario())
