"""Camera-health checks on real footage: false health events, and each fault found.

For each clip of ``--data`` (default ``../shared/data/real``): learn the health baseline from
the first 60 % (grey at the default model's size, as ``streamdet.learning.workflow.learn``
does), then check the remaining 40 % as ``streamdet run`` does (``--check-fps`` checks a second
of video time, a frame and the one before it; 3 s to open, 3 s to clear). Everything there is
normal: each health event is a false one. Then each fault is put into a copy of the watched
part, from 20 % of it for up to 10 s: ``cover`` (grey 12 plus sensor noise), ``blur``
(Gaussian, sigma 3 px at the model's size), ``shift`` (10 % of the width sideways), ``freeze``
(the frame before, repeated); a fault counts as found when exactly its condition opened, and
the delay from its start is reported. With ``--ped2`` (default ``../shared/data/ucsd_ped2``)
the baseline is learned from the Ped2 train clips and every test clip is watched (their
anomalies are not camera faults).

The last stdout line is one JSON object; progress goes to stderr.

    python benchmarks/health_real.py [--data DIR] [--ped2 DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from streamdet.alert.health import HealthTracker
from streamdet.learning.health import (
    HealthBaseline,
    Meter,
    findings,
    frozen_check_possible,
    learn_baseline,
)
from streamdet.learning.videos import clip_fps, read_clip, video_files
from streamdet.models.registry import default_spec

SHARED = Path(__file__).resolve().parents[2] / "shared/data"
FAULTS = {"cover": "covered", "blur": "blurred", "shift": "moved", "freeze": "frozen"}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def with_fault(clip: np.ndarray, kind: str, start: int, stop: int) -> np.ndarray:
    """A copy of ``clip`` with ``kind`` in frames ``start <= n < stop``."""
    out = clip.copy()
    rng = np.random.default_rng(0)
    width = clip.shape[2]
    for n in range(start, stop):
        if kind == "cover":
            noise = rng.normal(12, 2, clip.shape[1:])
            out[n] = noise.clip(0, 255).astype(np.uint8)
        elif kind == "blur":
            out[n] = cv2.GaussianBlur(clip[n], (0, 0), 3.0)
        elif kind == "shift":
            move = np.array([[1.0, 0.0, 0.1 * width], [0.0, 1.0, 0.0]], np.float32)
            out[n] = cv2.warpAffine(
                clip[n], move, clip.shape[2:0:-1], borderMode=cv2.BORDER_REFLECT_101
            )
        else:
            out[n] = clip[max(start - 1, 0)]
    return out


def watch(baseline: HealthBaseline, clip: np.ndarray, fps: float, check_fps: float) -> list[Any]:
    """Health events (condition, start s, end s) in ``clip``, checked as the pipeline does."""
    tracker = HealthTracker("bench", 3.0, 3.0)
    meter = Meter(baseline.reference_image())
    updates = []
    for t in np.arange(1 / fps, len(clip) / fps, 1 / check_fps):
        n = min(round(t * fps), len(clip) - 1)
        measures = meter.measure(clip[n], clip[n - 1])
        updates += tracker.feed(float(t), findings(baseline, measures), {})
    updates += tracker.finish()
    starts = [u.event for u in updates if u.change.value == "started"]
    return [(e.condition, round(e.start, 1)) for e in starts]


def faults_found(
    baseline: HealthBaseline, clip: np.ndarray, fps: float, check_fps: float
) -> dict[str, Any]:
    start = int(len(clip) * 0.2)
    stop = min(len(clip), start + int(10 * fps))
    found: dict[str, Any] = {"fault_seconds": round((stop - start) / fps, 1)}
    for kind, condition in FAULTS.items():
        events = watch(baseline, with_fault(clip, kind, start, stop), fps, check_fps)
        hits = [s for c, s in events if c == condition]
        found[kind] = {
            "found": bool(hits) and all(c == condition for c, _ in events),
            "delay_s": round(hits[0] - start / fps, 1) if hits else None,
            "events": events,
        }
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "real")
    parser.add_argument("--ped2", type=Path, default=SHARED / "ucsd_ped2")
    parser.add_argument("--check-fps", type=float, default=2.0)
    args = parser.parse_args()
    spec = default_spec("objects")  # the default model's input size
    results: dict[str, Any] = {"size": [spec.width, spec.height], "clips": {}}
    for path in video_files(args.data):
        clip, fps = read_clip(path, spec.width, spec.height), clip_fps(path)
        cut = int(len(clip) * 0.6)
        baseline = learn_baseline([clip[:cut]])
        watched = clip[cut:]
        false = watch(baseline, watched, fps, args.check_fps)
        results["clips"][path.name] = {
            "watched_s": round(len(watched) / fps, 1),
            "false_events": false,
            "frozen_check": frozen_check_possible(baseline),
            **faults_found(baseline, watched, fps, args.check_fps),
        }
        log(f"{path.name}: {json.dumps(results['clips'][path.name])}")
    if args.ped2.is_dir():
        train = [read_clip(p, spec.width, spec.height) for p in video_files(args.ped2 / "train")]
        baseline = learn_baseline(train)
        false, seconds = [], 0.0
        for path in video_files(args.ped2 / "test"):
            clip, fps = read_clip(path, spec.width, spec.height), clip_fps(path)
            seconds += len(clip) / fps
            false += [(path.name, *e) for e in watch(baseline, clip, fps, args.check_fps)]
        results["ped2_test"] = {"watched_s": round(seconds, 1), "false_events": false}
        log(f"ped2 test: {json.dumps(results['ped2_test'])}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
