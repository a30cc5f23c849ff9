"""Ablation on UCSD Ped2: what motion cues, the local CNN and their fusion each reach.

Rows: the frame-difference baseline, the motion cues only, the local CNN ("patchae") only and the
fused default, each with and without the causal EMA on frame scores. For each row: streaming
micro AUC (the headline: causal scores, training-only normalisation, one ROC over all test frames),
per-video-normalised micro AUC (the papers' convention, uses future frames), training seconds
and scoring frames/s. The first ``context`` frames of a clip get its first available score.

Progress goes to stderr; the last stdout line is one JSON object.

    python benchmarks/ped2_ablation.py [--dataset DIR] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamdet.eval.dataset import load_dataset, read_clip
from streamdet.eval.metrics import auc, video_normalised
from streamdet.models import fusion, local, motion
from streamdet.models.base import AnomalyModel, ModelSpec, TrainingData, TrainSettings, score_clip

DEFAULT_DATASET = Path(__file__).resolve().parents[2] / "shared/data/ucsd_ped2"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def progress(phase: str, fraction: float, figures: dict[str, float]) -> None:
    shown = " ".join(f"{k}={v:.3g}" for k, v in figures.items())
    log(f"  {phase}: {fraction:.0%} {shown}")


def ema(scores: np.ndarray, alpha: float) -> np.ndarray:
    """Causal exponential moving average: frame t uses frames <= t only."""
    out = np.empty(len(scores))
    acc = float(scores[0])
    for i, value in enumerate(scores):
        acc = alpha * float(value) + (1 - alpha) * acc
        out[i] = acc
    return out


def evaluate(
    model: AnomalyModel, clips: dict[str, np.ndarray], labels: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], float]:
    """Frame scores per test clip and the scoring speed in frames/s (decoding excluded)."""
    start = time.perf_counter()
    scores = {name: score_clip(model, clip)[0] for name, clip in clips.items()}
    fps = sum(len(c) for c in clips.values()) / (time.perf_counter() - start)
    return scores, fps


def row(
    scores: dict[str, np.ndarray], labels: dict[str, np.ndarray], alpha: float
) -> dict[str, float]:
    smoothed = [ema(scores[n], alpha) for n in labels]
    truth = np.concatenate([labels[n] for n in labels])
    return {
        "streaming_auc": round(auc(truth, np.concatenate(smoothed)), 4),
        "per_video_auc": round(
            auc(truth, np.concatenate([video_normalised(s) for s in smoothed])), 4
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    spec = fusion.default_spec()
    alpha = float(fusion.FUSION_DEFAULTS["ema_alpha"])
    ds = load_dataset(args.dataset)
    log(f"decoding {len(ds.train)} train, {len(ds.test)} test clips at {spec.width}x{spec.height}")
    train = TrainingData([read_clip(c.path, spec.width, spec.height) for c in ds.train], ds.fps)
    test = {c.name: read_clip(c.path, spec.width, spec.height) for c in ds.test}
    settings = TrainSettings(seed=args.seed)

    models: dict[str, AnomalyModel] = {}
    train_s: dict[str, float] = {}
    for kind, build, trainer in [
        ("framediff", motion.build, motion.train_framediff),
        ("motion", motion.build, motion.train_motion),
        ("motion_normalflow", motion.build, motion.train_motion),
        ("patchae", local.build, local.train_patchae),
    ]:
        log(f"training {kind}")
        params = {"flow": "normal"} if kind == "motion_normalflow" else {}
        base_kind = kind.split("_")[0]
        model = build(ModelSpec(base_kind, spec.width, spec.height, spec.patch, params))
        start = time.perf_counter()
        trainer(model, train, settings, progress)
        train_s[kind] = time.perf_counter() - start
        models[kind] = model
    # the fused default reuses the members trained above (same data and seed as train_fusion
    # would use), so only its calibration is timed on top of theirs
    log("calibrating fusion")
    fused = fusion.build(spec)
    assert isinstance(fused, fusion.FusionModel)
    for member in fused.members:
        assert isinstance(member, AnomalyModel)
        member.load_state_dict(models[member.kind].state_dict())
    start = time.perf_counter()
    fusion.calibrate_fusion(fused, train, settings, progress)
    train_s["fusion"] = time.perf_counter() - start + train_s["motion"] + train_s["patchae"]
    models["fusion"] = fused

    rows: list[dict[str, Any]] = []
    for kind, model in models.items():
        log(f"scoring {kind}")
        scores, fps = evaluate(model, test, ds.labels)
        for a in (1.0, alpha) if kind != "framediff" else (1.0,):
            rows.append(
                {
                    "model": kind,
                    "ema_alpha": a,
                    **row(scores, ds.labels, a),
                    "train_s": round(train_s[kind], 1),
                    "frames_per_s": round(fps, 1),
                }
            )
            log(f"  {rows[-1]}")
    print(
        json.dumps(
            {
                "dataset": str(args.dataset),
                "spec": spec.__dict__,
                "rows": rows,
                "note": "timings on a shared 2-core CPU: noisy",
            }
        )
    )


if __name__ == "__main__":
    main()
