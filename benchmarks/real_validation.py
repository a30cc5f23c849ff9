"""Real footage without labels, offline: false alarms and pasted-anomaly recall per model kind.

For each clip of ``--data`` (default ``../shared/data/real``): learn from the first 60 % (the
product's ``streamdet.learning.workflow.learn``: train, then calibrate on a held-out tail for
the false-event budget at ``--analysis-fps``), score the remaining 40 % causally, at the
analysis rate as ``streamdet run`` does (every frame pair is consecutive; only every ``fps /
analysis_fps``-th frame is scored), and count:

* ``false_events``: up-crossings of the smoothed score over the threshold in the watched part
  (everything there is normal), a lower bound for what ``run`` raises (it also needs
  ``min_duration_s`` above; see ``benchmarks/false_alarms.py`` for the real thing);
* with anomalies pasted into copies of the watched part (``streamdet.eval.pasted``): the AUC of
  pasted frames against the clip's normal frames, pooled over clips on each camera's own scale
  (score / threshold), and ``recall``: the share of pasted anomalies whose visible stretch
  reaches the threshold.

This is a validation set built from footage only (no labels exist): settings may be chosen on
it. The last stdout line is one JSON object; progress goes to stderr.

    python benchmarks/real_validation.py [--models objects,motionflow] [--params '{...}']
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamdet.errors import ModelError
from streamdet.eval.metrics import auc
from streamdet.eval.pasted import pasted_set
from streamdet.learning.videos import clip_fps, read_clip, video_files
from streamdet.learning.workflow import Budget, Plan, learn
from streamdet.models.base import TrainingData, TrainSettings, score_clip
from streamdet.models.registry import default_spec, entry
from streamdet.scoring.calibration import upcrossings
from streamdet.scoring.smoothing import ema

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/real"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def analysed(scores: np.ndarray, fps: float, analysis_fps: float) -> np.ndarray:
    """Every ``fps / analysis_fps``-th score (at least every one), as the pipeline offers."""
    step = max(round(fps / analysis_fps), 1)
    return scores[::step]


def evaluate_clip(
    path: Path, kind: str, params: dict[str, Any], analysis_fps: float, seed: int
) -> dict[str, Any]:
    spec = default_spec(kind)
    spec = replace(spec, params={**spec.params, **params})
    clip = read_clip(path, spec.width, spec.height)
    fps = clip_fps(path)
    cut = int(len(clip) * 0.6)
    learned, watch = clip[:cut], clip[cut:]
    alpha = entry(kind).smoothing_alpha
    started = time.perf_counter()
    plan = Plan(spec, TrainSettings(seed=seed), Budget(analysis_fps, 1.0, alpha))
    trained = learn(TrainingData([learned], fps), plan)
    train_s = time.perf_counter() - started
    threshold = trained.calibration.threshold
    step = max(round(fps / analysis_fps), 1)

    def smoothed(frames: np.ndarray) -> np.ndarray:
        return ema(analysed(score_clip(trained.model, frames)[0], fps, analysis_fps), alpha)

    normal = smoothed(watch)
    out: dict[str, Any] = {
        "clip": path.name,
        "watched_s": round(len(watch) / fps, 1),
        "threshold": round(threshold, 3),
        "held_out_max": round(trained.calibration.held_out_max, 3),
        "watched_max": round(float(normal.max()), 3),
        "false_events": upcrossings(normal, threshold),
        "train_s": round(train_s, 1),
        "pasted": [],
    }
    pasted_scores, pasted_labels = [normal / threshold], [np.zeros(len(normal), np.int8)]
    for item in pasted_set(learned, watch, fps, seed=seed):
        s = smoothed(item.frames)
        labels = item.labels[::step][: len(s)]
        hit = bool(labels.any() and (s[labels == 1] > threshold).any())
        pasted_scores.append(s[labels == 1] / threshold)
        pasted_labels.append(np.ones(int(labels.sum()), np.int8))
        out["pasted"].append(
            {
                "kind": item.kind,
                "hit": hit,
                "peak_over_threshold": round(float(s.max()) / threshold, 2),
            }
        )
    out["_scores"] = (np.concatenate(pasted_scores), np.concatenate(pasted_labels))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--models", default="objects")
    parser.add_argument(
        "--params", default="{}", help="JSON params for the model(s), or a list of them"
    )
    parser.add_argument("--analysis-fps", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    extras = json.loads(args.params)
    extras = extras if isinstance(extras, list) else [extras]
    rows = []
    for kind, params in [(k, e) for k in args.models.split(",") for e in extras]:
        clips, scores, labels = [], [], []
        for path in video_files(args.data):
            log(f"{kind}: {path.name}")
            try:
                result = evaluate_clip(path, kind, params, args.analysis_fps, args.seed)
            except ModelError as exc:  # what the product says, e.g. too little footage
                log(f"  cannot learn: {exc}")
                clips.append({"clip": path.name, "error": str(exc)})
                continue
            s, lab = result.pop("_scores")
            scores.append(s)
            labels.append(lab)
            clips.append(result)
            log(f"  {result}")
        pasted = [p for c in clips for p in c.get("pasted", [])]
        rows.append(
            {
                "model": kind,
                "params": params,
                "false_events": sum(c.get("false_events", 0) for c in clips),
                "watched_s": round(sum(c.get("watched_s", 0) for c in clips), 1),
                "pasted_auc": round(auc(np.concatenate(labels), np.concatenate(scores)), 4),
                "recall": round(sum(p["hit"] for p in pasted) / max(len(pasted), 1), 3),
                "clips": clips,
            }
        )
        log(json.dumps({k: v for k, v in rows[-1].items() if k != "clips"}))
    print(json.dumps({"data": str(args.data), "analysis_fps": args.analysis_fps, "rows": rows}))


if __name__ == "__main__":
    main()
