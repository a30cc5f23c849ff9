"""Does a model see every anomaly of the demo's synthetic scene, and nothing else?

For each demo camera (``streamdet.demo.demo_config``): learn from the camera's first
``--learn-seconds`` of normal scene (as ``streamdet run`` does in place: the same training and
calibration code), then score the rest of the scene at the camera's analysis rate with the
causal EMA and the calibrated threshold. Reported per camera: the peak smoothed score during each
scheduled anomaly as a multiple of the threshold (``peak_over_threshold``, > 1 means detected),
and the highest smoothed score and threshold crossings on the normal stretches (scene time outside
every anomaly, with a 2 s margin after each for the EMA to settle).

Run: ``python benchmarks/demo_scene.py [--model KIND]``; last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2
import numpy as np
import torch

from streamdet.capture.synthetic import ScheduledAnomaly, SyntheticScene
from streamdet.config import SyntheticSource
from streamdet.demo import demo_config
from streamdet.learning.workflow import Budget, Plan, learn
from streamdet.models.base import TrainingData, TrainSettings
from streamdet.models.kinds import DEFAULT_KIND
from streamdet.models.registry import default_spec, entry
from streamdet.scoring.calibration import upcrossings
from streamdet.scoring.smoothing import Ema


def render(source: SyntheticSource, start: int, count: int, size: tuple[int, int]) -> np.ndarray:
    """Scene frames [start, start+count) as grey at ``size`` (width, height)."""
    scene = SyntheticScene(
        source.width,
        source.height,
        source.fps,
        source.seed,
        source.people_per_minute,
        [ScheduledAnomaly(a.kind, a.start_s, a.duration_s) for a in source.anomalies],
    )
    bgr = np.empty((source.height, source.width, 3), np.uint8)
    out = np.empty((count, size[1], size[0]), np.uint8)
    for i in range(count):
        scene.render(start + i, bgr)
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        out[i] = cv2.resize(grey, size, interpolation=cv2.INTER_LINEAR)
    return out


def camera_result(
    kind: str, source: SyntheticSource, analysis_fps: float, args: argparse.Namespace
) -> dict[str, Any]:
    spec = default_spec(kind)
    fps = source.fps
    learned = int(args.learn_seconds * fps)
    normal = render(source, 0, learned, (spec.width, spec.height))
    clips = [normal[i : i + int(10 * fps)] for i in range(0, learned, int(10 * fps))]
    alpha = entry(kind).smoothing_alpha
    started = time.monotonic()
    settings = TrainSettings(seed=0, max_seconds=args.max_train_seconds)
    trained = learn(
        TrainingData(clips, fps), Plan(spec, settings, Budget(analysis_fps, 1.0, alpha))
    )
    train_s = time.monotonic() - started
    model, threshold = trained.model.eval(), trained.calibration.threshold
    end = int(args.until_seconds * fps)
    frames = render(source, learned, end - learned, (spec.width, spec.height))
    step = round(fps / analysis_fps)
    k = model.context
    ema = Ema(alpha)
    times, smoothed = [], []
    with torch.inference_mode():
        for i in range(k, len(frames), step):
            window = torch.from_numpy(np.ascontiguousarray(frames[i - k : i + 1][None]))
            smoothed.append(ema.update(float(model(window).score)))
            times.append((learned + i) / fps)
    t, s = np.array(times), np.array(smoothed)
    anomalies = []
    normal_mask = np.ones(len(t), bool)
    for a in source.anomalies:
        inside = (t >= a.start_s) & (t < a.start_s + a.duration_s)
        normal_mask &= ~((t >= a.start_s) & (t < a.start_s + a.duration_s + 2.0))
        peak = float(s[inside].max()) if inside.any() else float("nan")
        anomalies.append(
            {"kind": a.kind, "start_s": a.start_s, "peak_over_threshold": peak / threshold}
        )
    return {
        "threshold": threshold,
        "train_seconds": round(train_s, 2),
        "anomalies": anomalies,
        "normal_max_over_threshold": float(s[normal_mask].max() / threshold),
        "normal_crossings": upcrossings(s[normal_mask], threshold),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=None, help="one kind for every camera (default: each camera's own)"
    )
    parser.add_argument("--learn-seconds", type=float, default=30.0)
    parser.add_argument("--until-seconds", type=float, default=75.0)
    parser.add_argument("--max-train-seconds", type=float, default=120.0)
    args = parser.parse_args(argv)
    results = {}
    for camera in demo_config().cameras:
        assert isinstance(camera.source, SyntheticSource)
        print(f"{camera.name}: learning {args.learn_seconds:.0f} s, scoring", file=sys.stderr)
        kind = args.model or camera.model or DEFAULT_KIND
        results[camera.name] = {"model": kind}
        results[camera.name] |= camera_result(kind, camera.source, camera.analysis_fps, args)
        print(f"  {json.dumps(results[camera.name])}", file=sys.stderr)
    detected = all(a["peak_over_threshold"] > 1 for r in results.values() for a in r["anomalies"])
    quiet = all(r["normal_crossings"] == 0 for r in results.values())
    print(
        json.dumps(
            {
                "model": args.model or "per camera",
                "all_detected": detected,
                "no_false_crossings": quiet,
                "cameras": results,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
