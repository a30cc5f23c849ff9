"""Ablation on UCSD Ped2: what motion cues, optical flow, the local CNN and their fusion reach.

Rows: the frame-difference baseline, the default model ("motionflow": moving share + DIS flow
speed, its own input size), the torch-only motion cues (normal flow and block matching), the
per-place optical-flow model ("flow"), the local CNN ("patchae"), the fusion of motion (block
matching) + patchae ("fusion") and of motionflow + patchae ("fusion_mf": what the CNN adds to the
default), each with and without the causal EMA on frame scores. For each row: streaming micro
AUC (the headline: causal scores, training-only normalisation, one ROC over all test frames),
per-video-normalised micro AUC (the papers' convention, uses future frames), per-clip AUC,
training seconds and scoring frames/s. The first ``context`` frames of a clip get its first
available score.

``--split validation`` chooses settings without test labels: it trains on Train001-013 and scores
Train014-016 plus copies of them with synthetic anomalies pasted in
(``streamdet.eval.validation``), with the AUC per anomaly kind. ``--params`` overrides one
kind's params (JSON), to compare settings on that split; a JSON list of objects runs each
chosen row once per object (the clips are decoded once).

Validation also reports ``speed_size_auc``: all normal frames against the speed and size kinds
only (``SPEED_SIZE_KINDS``: fast, cart, bike, skate, slowcart). That subset was decided after
seeing Ped2 test results (see ``streamdet.eval.validation``): settings chosen with it are not
free of test influence.

``--calibrate`` (validation only) learns each row as a camera does instead
(``streamdet.learning.workflow.learn``: the threshold calibrated on out-of-fold or held-out
training footage, as the kind's registry entry says, for 1 false event/hour at Ped2's 10 fps)
and adds ``at_threshold``: the up-crossings of the smoothed score over the threshold in the
three normal validation clips (every one a false event) and their highest smoothed score
(``normal_max``), and, per anomaly kind, how many pasted copies reach it, with each copy's
highest smoothed score over its anomalous frames (``peaks``).

Progress goes to stderr; the last stdout line is one JSON object.

    python benchmarks/ped2_ablation.py [--split test|validation] [--models flow,motion]
        [--params '[{"scale": "global"}, {"scale": "row"}]'] [--dataset DIR] [--seed 0]
        [--calibrate]
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

from streamdet.eval.dataset import Dataset, load_dataset
from streamdet.eval.metrics import auc, video_normalised
from streamdet.eval.validation import SPEED_SIZE_KINDS, build_validation
from streamdet.learning.videos import read_clip
from streamdet.learning.workflow import Budget, Plan, learn
from streamdet.models import flow, fusion, motionflow, objects
from streamdet.models.base import AnomalyModel, ModelSpec, TrainingData, TrainSettings, score_clip
from streamdet.models.registry import build_model, entry, train_model
from streamdet.scoring.calibration import upcrossings
from streamdet.scoring.smoothing import ema

DEFAULT_DATASET = Path(__file__).resolve().parents[2] / "shared/data/ucsd_ped2"
ALL_ROWS = (
    "framediff",
    "motionflow",
    "objects",
    "motion",
    "motion_block",
    "flow",
    "patchae",
    "fusion",
    "fusion_mf",
)
VALIDATION_CLIPS = 3  # the last training clips (Ped2: Train014-016) are held out


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def progress(phase: str, fraction: float, figures: dict[str, float]) -> None:
    shown = " ".join(f"{k}={v:.3g}" for k, v in figures.items())
    log(f"  {phase}: {fraction:.0%} {shown}")


def row_spec(row: str, extra: dict[str, Any]) -> ModelSpec:
    """The spec of an ablation row: motion rows at the fusion's size, flow at its own."""
    size = fusion.default_spec()
    if row == "flow":
        spec = flow.default_spec()
    elif row == "motionflow":
        spec = motionflow.default_spec()
    elif row == "objects":
        spec = objects.default_spec()
    elif row == "fusion":
        spec = size
    elif row == "fusion_mf":  # what the local CNN adds to the default model, at its size
        mf = motionflow.default_spec()
        members = [{"kind": "motionflow"}, {"kind": "patchae", "params": {"gate": 0.05}}]
        spec = ModelSpec("fusion", mf.width, mf.height, mf.patch, {"members": members})
    else:
        params = {"flow": "block"} if row == "motion_block" else {}
        spec = ModelSpec(row.split("_")[0], size.width, size.height, size.patch, params)
    return replace(spec, params={**spec.params, **extra})


class Split:
    """Training clips, scored clips with labels (and kinds), decoded once per input size."""

    def __init__(self, ds: Dataset, validation: bool, seed: int) -> None:
        self.ds, self.validation, self.seed = ds, validation, seed
        self._cache: dict[tuple[int, int], tuple[TrainingData, dict[str, np.ndarray]]] = {}
        self.labels: dict[str, np.ndarray] = {}
        self.kinds: dict[str, str] = {}

    def at(self, width: int, height: int) -> tuple[TrainingData, dict[str, np.ndarray]]:
        if (width, height) not in self._cache:
            log(f"decoding at {width}x{height}")
            train = [read_clip(c.path, width, height) for c in self.ds.train]
            if self.validation:
                held = train[-VALIDATION_CLIPS:]
                train = train[:-VALIDATION_CLIPS]
                val = build_validation(held, train, seed=self.seed)
                per_clip = len(val.kinds) // len(held)
                names = [f"{i // per_clip}_{k}" for i, k in enumerate(val.kinds)]
                scored = dict(zip(names, val.clips, strict=True))
                self.labels = dict(zip(names, val.labels, strict=True))
                self.kinds = dict(zip(names, val.kinds, strict=True))
            else:
                scored = {c.name: read_clip(c.path, width, height) for c in self.ds.test}
                self.labels = self.ds.labels
            self._cache[(width, height)] = (TrainingData(train, self.ds.fps), scored)
        return self._cache[(width, height)]


def figures(scores: dict[str, np.ndarray], split: Split, alpha: float) -> dict[str, Any]:
    smoothed = {n: ema(scores[n], alpha) for n in split.labels}
    truth = np.concatenate([split.labels[n] for n in smoothed])
    flat = np.concatenate(list(smoothed.values()))
    out: dict[str, Any] = {
        "streaming_auc": round(auc(truth, flat), 4),
        "per_video_auc": round(
            auc(truth, np.concatenate([video_normalised(s) for s in smoothed.values()])), 4
        ),
    }
    if split.validation:  # each kind against all normal frames
        kinds = np.concatenate([[split.kinds[n]] * len(s) for n, s in smoothed.items()])
        keep = (truth == 0) | np.isin(kinds, SPEED_SIZE_KINDS)
        out["speed_size_auc"] = round(auc(truth[keep], flat[keep]), 4)
        for kind in sorted(set(split.kinds.values()) - {"normal"}):
            keep = (truth == 0) | (kinds == kind)
            out[f"auc_{kind}"] = round(auc(truth[keep], flat[keep]), 3)
    else:
        out["per_clip_auc"] = {n: round(auc(split.labels[n], s), 3) for n, s in smoothed.items()}
    return out


def at_threshold(
    scores: dict[str, np.ndarray], split: Split, threshold: float, alpha: float
) -> dict[str, Any]:
    """False events in the normal validation clips and pasted copies reaching ``threshold``."""
    out: dict[str, Any] = {
        "threshold": round(threshold, 3),
        "false_events": 0,
        "normal_max": 0.0,
        "hits": {},
        "peaks": [],
    }
    for name, raw in scores.items():
        smoothed, labels, kind = ema(raw, alpha), split.labels[name], split.kinds[name]
        if kind == "normal":
            out["false_events"] += upcrossings(smoothed, threshold)
            out["normal_max"] = round(max(out["normal_max"], float(smoothed.max())), 3)
            continue
        out["peaks"].append(round(float(smoothed[labels == 1].max()), 3))
        hit = bool((smoothed[labels == 1] > threshold).any())
        done, total = out["hits"].get(kind, (0, 0))
        out["hits"][kind] = (done + hit, total + 1)
    hits = out["hits"].values()
    out["recall"] = round(sum(h for h, _ in hits) / max(sum(t for _, t in hits), 1), 3)
    return out


def train_row(row: str, spec: ModelSpec, data: TrainingData, seed: int) -> AnomalyModel:
    """A trained model for one row (fusion trains its members itself)."""
    torch.manual_seed(seed)
    model = build_model(spec)
    train_model(model, data, TrainSettings(seed=seed), progress)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split", choices=("test", "validation"), default="test")
    parser.add_argument("--models", default=",".join(ALL_ROWS))
    parser.add_argument(
        "--params", default="{}", help="JSON params for every chosen row, or a list of them"
    )
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="validation: learn as a camera does and count events at the threshold",
    )
    args = parser.parse_args()
    if args.calibrate and args.split != "validation":
        raise SystemExit("--calibrate needs --split validation (no test labels for settings)")
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    split = Split(load_dataset(args.dataset), args.split == "validation", args.seed)
    extras = json.loads(args.params)
    extras = extras if isinstance(extras, list) else [extras]
    rows: list[dict[str, Any]] = []
    names = args.models.split(",")
    for name in names:
        if name not in ALL_ROWS:
            raise SystemExit(f"unknown row {name!r}; known: {', '.join(ALL_ROWS)}")
    for name, extra in [(n, e) for n in names for e in extras]:
        spec = row_spec(name, extra)
        data, scored = split.at(spec.width, spec.height)
        log(f"training {name} {spec.params}")
        start = time.perf_counter()
        calibration = None
        if args.calibrate:
            plan = Plan(
                spec,
                TrainSettings(seed=args.seed),
                Budget(data.fps, 1.0, entry(spec.kind).smoothing_alpha),
            )
            trained = learn(data, plan, progress)
            model, calibration = trained.model, trained.calibration
        else:
            model = train_row(name, spec, data, args.seed)
        train_s = time.perf_counter() - start
        log(f"scoring {name}")
        start = time.perf_counter()
        scores = {n: score_clip(model, clip)[0] for n, clip in scored.items()}
        fps = sum(len(c) for c in scored.values()) / (time.perf_counter() - start)
        default_alpha = float(fusion.FUSION_DEFAULTS["ema_alpha"])
        for alpha in (1.0, default_alpha) if name != "framediff" else (1.0,):
            rows.append(
                {
                    "model": name,
                    "params": spec.params,
                    "size": [spec.width, spec.height],
                    "ema_alpha": alpha,
                    **figures(scores, split, alpha),
                    **(
                        {}
                        if calibration is None or alpha != calibration.smoothing_alpha
                        else {
                            "at_threshold": at_threshold(
                                scores, split, calibration.threshold, alpha
                            ),
                            "calibration_note": calibration.note,
                        }
                    ),
                    "train_s": round(train_s, 1),
                    "frames_per_s": round(fps, 1),
                }
            )
            log(f"  {rows[-1]}")
    note = "timings on a shared 2-core CPU (torch 2 threads): noisy"
    print(
        json.dumps({"dataset": str(args.dataset), "split": args.split, "rows": rows, "note": note})
    )


if __name__ == "__main__":
    main()
