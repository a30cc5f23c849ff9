"""``streamdet eval``: train on a dataset's normal clips, score its test clips causally, report.

Streaming rules: the score of frame t uses frames <= t only (``score_clip``), normalisation and
the threshold come from training footage only (train clips the scoring model did not learn:
``streamdet.learning.workflow``), and smoothing is a causal
EMA. Frames a model cannot score yet (the first ``context`` of each clip) get the clip's first
available score. The papers' per-video min-max normalisation is reported beside, never instead.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamdet.eval.dataset import Dataset, DatasetError, load_dataset
from streamdet.eval.events import clip_events, event_summary
from streamdet.eval.metrics import auc, equal_error_rate, video_normalised
from streamdet.eval.report import plot_roc, plot_timeline, write_scores
from streamdet.learning import saved
from streamdet.learning.footage import collect_files
from streamdet.learning.videos import read_clip
from streamdet.learning.workflow import Budget, Plan, learn
from streamdet.models.base import AnomalyModel, Progress, TrainSettings, score_clip
from streamdet.models.registry import default_spec, entry
from streamdet.scoring.calibration import Calibration
from streamdet.scoring.smoothing import ema

BASELINE = "framediff"
FIRST_FRAMES_RULE = (
    "the first `context` frames of each clip, which a model cannot score yet, get the clip's "
    "first available score"
)


@dataclass(frozen=True)
class EvalSettings:
    kind: str
    checkpoint: Path | None = None
    seed: int = 0
    max_train_seconds: float = 900.0
    holdout_clips: float = 0.15  # share of train clips kept for calibration (kinds without folds)
    false_events_per_hour: float = 1.0
    smoothing_alpha: float | None = None  # None: the model kind's default
    batch_size: int = 32
    device: str = "cpu"
    baseline: bool = True


@dataclass
class ModelRun:
    """One trained (or loaded) model and what it scored."""

    name: str
    model: AnomalyModel
    alpha: float
    calibration: Calibration
    train_seconds: float
    scores: dict[str, np.ndarray]  # smoothed streaming scores per test clip
    scoring_fps: float = 0.0
    # milliseconds per scored frame in each of the model's stages, for a model that keeps a
    # clock (``objects``: finding objects on the CPU, the crop CNN on the device, the density)
    stage_ms: dict[str, float] | None = None


def run_eval(
    dataset_dir: Path, out: Path, settings: EvalSettings, progress: Progress
) -> dict[str, Any]:
    """Evaluate ``settings.kind`` (and the baseline) on a dataset; write ``out``; return metrics."""
    dataset = load_dataset(dataset_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = [_model_run(dataset, settings.kind, settings, progress, out / "model")]
    if settings.baseline and settings.kind != BASELINE:
        runs.append(_model_run(dataset, BASELINE, settings, progress, None))
    metrics = _metrics(dataset, runs, settings)
    _write_outputs(dataset, runs[0], runs, out)
    # strict JSON: a one-class clip's AUC (NaN) is written as null, not as a bare NaN
    text = json.dumps(_finite_or_null(metrics), indent=2, allow_nan=False)
    (out / "metrics.json").write_text(text + "\n")
    return metrics


def _finite_or_null(value: Any) -> Any:
    """``value`` with every non-finite float (NaN, inf) replaced by None, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_null(v) for v in value]
    return value


def _model_run(
    dataset: Dataset, kind: str, settings: EvalSettings, progress: Progress, save: Path | None
) -> ModelRun:
    checkpoint = settings.checkpoint if kind == settings.kind else None
    if checkpoint is not None:
        learned = saved.load(checkpoint, settings.device)
        model, calibration, train_seconds = learned.model, learned.calibration(), 0.0
        alpha = calibration.smoothing_alpha
    else:
        plan = _plan(dataset, kind, settings)
        data = collect_files([c.path for c in dataset.train], plan.spec, progress)
        trained = learn(data, plan, progress)
        model, calibration = trained.model, trained.calibration
        alpha, train_seconds = plan.budget.smoothing_alpha, trained.summary["train_seconds"]
        if save is not None:
            trained.save(save, dataset=str(dataset.root))
    # a checkpoint says what it is: named by its own kind, not the one asked for
    run = ModelRun(model.kind, model, alpha, calibration, train_seconds, {})
    _score_tests(dataset, run, settings, progress)
    return run


def _plan(dataset: Dataset, kind: str, settings: EvalSettings) -> Plan:
    """Learn as a camera would, at the dataset's frame rate (every frame analysed)."""
    alpha = settings.smoothing_alpha or entry(kind).smoothing_alpha
    return Plan(
        default_spec(kind),
        TrainSettings(
            seed=settings.seed, max_seconds=settings.max_train_seconds, device=settings.device
        ),
        Budget(dataset.fps, settings.false_events_per_hour, alpha, settings.holdout_clips),
    )


def _score_tests(
    dataset: Dataset, run: ModelRun, settings: EvalSettings, progress: Progress
) -> None:
    spec = run.model.spec
    scoring_s, frames = 0.0, 0
    clock: dict[str, float] | None = getattr(run.model, "stage_seconds", None)
    before = dict(clock) if clock is not None else None
    for i, ref in enumerate(dataset.test):
        progress(f"{run.name}: score test", i / len(dataset.test), {})
        clip = read_clip(ref.path, spec.width, spec.height)
        started = time.monotonic()
        raw, _ = score_clip(run.model, clip, settings.batch_size, settings.device)
        scoring_s += time.monotonic() - started
        frames += len(clip)
        labels = dataset.labels[ref.name]
        if len(labels) != len(raw):
            raise DatasetError(f"{ref.name}: {len(raw)} frames decoded, {len(labels)} labels")
        run.scores[ref.name] = ema(raw, run.alpha)
    progress(f"{run.name}: score test", 1.0, {})
    run.scoring_fps = frames / scoring_s if scoring_s > 0 else float("nan")
    if clock is not None and before is not None:
        windows = clock["windows"] - before["windows"]
        run.stage_ms = {
            stage: 1e3 * (clock[stage] - before[stage]) / max(windows, 1)
            for stage in clock
            if stage != "windows"
        }


def _auc_pair(dataset: Dataset, scores: dict[str, np.ndarray]) -> tuple[float, float]:
    names = [c.name for c in dataset.test]
    labels = np.concatenate([dataset.labels[n] for n in names])
    streaming = auc(labels, np.concatenate([scores[n] for n in names]))
    per_video = auc(labels, np.concatenate([video_normalised(scores[n]) for n in names]))
    return streaming, per_video


def _metrics(dataset: Dataset, runs: list[ModelRun], settings: EvalSettings) -> dict[str, Any]:
    main = runs[0]
    names = [c.name for c in dataset.test]
    labels = np.concatenate([dataset.labels[n] for n in names])
    streaming, per_video = _auc_pair(dataset, main.scores)
    result: dict[str, Any] = {
        "model": main.name,
        "auc_micro_streaming": streaming,
        "auc_micro_video_normalised": per_video,
        "auc_per_clip": {n: auc(dataset.labels[n], main.scores[n]) for n in names},
        "equal_error_rate": equal_error_rate(labels, np.concatenate(list(main.scores.values()))),
        "train_seconds": main.train_seconds,
        "scoring_fps": main.scoring_fps,
        "stage_ms_per_frame": main.stage_ms,
        "threshold": main.calibration.threshold,
        "events_at_threshold": event_summary(
            {
                n: clip_events(
                    main.scores[n],
                    dataset.labels[n],
                    main.calibration.threshold,
                    dataset.fps,
                    main.calibration.held_out_max,
                )
                for n in names
            }
        ),
        "calibration": main.calibration.as_dict(),
        "smoothing": {"kind": "causal_ema", "alpha": main.alpha},
        "first_frames_rule": FIRST_FRAMES_RULE,
        "context_frames": main.model.context,
        "input_size": [main.model.spec.width, main.model.spec.height],
        "test_frames": len(labels),
        "anomalous_share": float(labels.mean()),
        "dataset": str(dataset.root),
        "seed": settings.seed,
        "models": {},
    }
    for run in runs:
        s, v = _auc_pair(dataset, run.scores)
        result["models"][run.name] = {
            "auc_micro_streaming": s,
            "auc_micro_video_normalised": v,
            "train_seconds": run.train_seconds,
            "scoring_fps": run.scoring_fps,
        }
    return result


def _write_outputs(dataset: Dataset, main: ModelRun, runs: list[ModelRun], out: Path) -> None:
    names = [c.name for c in dataset.test]
    for name in names:
        write_scores(out / "scores" / f"{name}.csv", main.scores[name])
        plot_timeline(
            out / f"timeline_{name}.png",
            name,
            main.scores[name],
            dataset.labels[name],
            main.calibration.threshold,
            dataset.fps,
        )
    labels = np.concatenate([dataset.labels[n] for n in names])
    curves = {}
    for run in runs:
        scores = np.concatenate([run.scores[n] for n in names])
        curves[run.name] = (labels, scores, auc(labels, scores))
    plot_roc(out / "roc.png", curves)
