"""Command-line entry points. Heavy imports happen inside the commands so ``--help`` is instant.

Exit codes: 0 success, 1 runtime failure (e.g. a source that cannot be opened), 2 bad usage or an
invalid configuration. Errors are one clear message each, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamdet import __version__
from streamdet.errors import ConfigError, StreamdetError

if TYPE_CHECKING:
    from streamdet.config import Config

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _print_config_error(exc: ConfigError) -> None:
    print(f"error: invalid configuration {exc.source}:", file=sys.stderr)
    for problem in exc.problems:
        print(f"  {problem}", file=sys.stderr)


def _preflight(config: Config, source: str, *, pipeline: bool = True) -> bool:
    """Check ``config`` against this machine (``streamdet.preflight``); print what is wrong."""
    from streamdet import preflight

    try:
        preflight.check(config, source, pipeline=pipeline)
    except ConfigError as exc:
        _print_config_error(exc)
        return False
    return True


def cmd_check_config(args: argparse.Namespace) -> int:
    from streamdet import preflight
    from streamdet.config import load_config, summary

    try:
        config = load_config(args.config)
        preflight.check(config, args.config)
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_USAGE
    print(f"{args.config}: OK — {summary(config)}")
    return EXIT_OK


def cmd_probe(args: argparse.Namespace) -> int:
    from streamdet.log import redact, setup_logging
    from streamdet.probe import probe, source_for_url

    setup_logging("WARNING")
    source = source_for_url(args.url, transport=args.transport, timeout_s=args.timeout)
    print(f"probing {redact(args.url)} ...", file=sys.stderr)
    try:
        result = probe(source, frames=args.frames, max_seconds=args.max_seconds)
    except StreamdetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps(result.as_dict()) if args.json else "\n".join(result.lines()))
    return EXIT_OK if result.frames else EXIT_FAILURE


def _load(config_path: str | None) -> Config | None:
    from streamdet.config import load_config
    from streamdet.demo import demo_config

    try:
        return load_config(config_path) if config_path else demo_config()
    except ConfigError as exc:
        _print_config_error(exc)
        return None


def _run_capture(config_path: str | None, duration: float | None, title: str) -> int:
    from streamdet.capture.stage import CaptureStage
    from streamdet.console import LiveTable
    from streamdet.log import setup_logging

    config = _load(config_path)
    if config is None or not _preflight(config, config_path or "", pipeline=False):
        return EXIT_USAGE
    setup_logging(config.logging.level)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(f"{title}: {len(config.cameras)} camera(s); Ctrl-C stops", flush=True)
    stage = CaptureStage(config.cameras, config.capture)
    with stage:
        LiveTable().run(stage.status, duration, stop.is_set, title=title)
    statuses = stage.status()
    total = sum(s.frames for s in statuses)
    print(f"done: {total} frames from {len(statuses)} camera(s)")
    return EXIT_OK if all(s.frames for s in statuses) else EXIT_FAILURE


def _run_pipeline(
    config: Config, duration: float | None, title: str, config_path: str | None = None
) -> int:
    """Run capture, inference and the HTTP server with a live table until stopped;
    ``config_path`` is read again on SIGHUP and ``POST /api/reload``."""
    import asyncio

    from streamdet.app import App
    from streamdet.log import setup_logging
    from streamdet.pipeline_console import PipelineConsole

    setup_logging(config.logging.level)
    app = App(config, config_path=Path(config_path) if config_path else None)
    console = PipelineConsole(app, title)
    try:
        asyncio.run(console.run(duration))
    except OSError as exc:  # e.g. the HTTP port is taken
        server = config.server
        print(
            f"error: cannot serve on {server.host}:{server.port}: {exc.strerror or exc}",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return console.exit_code()


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None or not _preflight(config, args.config):
        return EXIT_USAGE
    return _run_pipeline(config, args.duration, "streamdet run", args.config)


def cmd_fleet_cameras(args: argparse.Namespace) -> int:
    import os

    from streamdet.fleet import admin
    from streamdet.fleet.connect import CAMERAS_KEY, FleetError

    config = _load(args.config)
    if config is None:
        return EXIT_USAGE
    fleet = config.fleet
    if not fleet.enabled or fleet.cameras != "kv":
        print(
            f"error: {args.config}: the fleet's camera list is in the KV entry only with"
            " fleet.enabled: true and fleet.cameras: kv (else each worker runs its file's list)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        if args.set is None:
            revision, text = admin.show(fleet)
            print(f"# {fleet.prefix}-config {CAMERAS_KEY}, revision {revision}")
            print(text, end="")
            return EXIT_OK
        raw, count = admin.read_list_file(Path(args.set), os.environ)
        revision = admin.replace(fleet, raw)
    except FleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    print(
        f"{fleet.prefix}-config {CAMERAS_KEY}: revision {revision}, {count} camera(s);"
        " the workers apply it at their next heartbeat"
    )
    return EXIT_OK


def cmd_capture(args: argparse.Namespace) -> int:
    return _run_capture(args.config, args.duration, "streamdet capture")


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from streamdet.demo import demo_run_config

    config = _load(args.config)
    if config is None:
        return EXIT_USAGE
    events = Path(args.events).resolve()
    with tempfile.TemporaryDirectory(prefix="streamdet-demo-") as models:
        # Every demo run learns anew, in a folder that is removed afterwards.
        config = demo_run_config(config, Path(models), events, args.learn_seconds, args.port)
        if not _preflight(config, args.config or "the built-in demo config"):
            return EXIT_USAGE
        code = _run_pipeline(config, args.duration, "streamdet demo (built-in synthetic cameras)")
    print(f"events: {events / 'events.jsonl'}")
    print(f"snapshots: {events / 'snapshots'}  clips: {events / 'clips'}")
    return code


def cmd_eval(args: argparse.Namespace) -> int:
    from streamdet.eval.run import EvalSettings, run_eval
    from streamdet.log import setup_logging
    from streamdet.progress import ProgressBar

    setup_logging("WARNING")
    settings = EvalSettings(
        kind=args.model,
        checkpoint=Path(args.checkpoint) if args.checkpoint else None,
        seed=args.seed,
        max_train_seconds=args.max_train_seconds,
        false_events_per_hour=args.false_events_per_hour,
        smoothing_alpha=args.alpha,
        device=_device(args.device),
        baseline=not args.no_baseline,
    )
    bar = ProgressBar(enabled=not args.quiet)
    try:
        metrics = run_eval(Path(args.dataset), Path(args.out), settings, bar)
    finally:
        bar.close()
    print(_eval_summary(metrics, args.out))
    return EXIT_OK


def cmd_train(args: argparse.Namespace) -> int:
    from streamdet.config import camera as find_camera
    from streamdet.config import load_config
    from streamdet.learning.footage import collect_files, collect_live
    from streamdet.learning.workflow import Plan, learn
    from streamdet.log import setup_logging
    from streamdet.progress import ProgressBar

    try:
        config = load_config(args.config)
        cam = find_camera(config, args.camera)
    except ConfigError as exc:
        _print_config_error(exc)
        return EXIT_USAGE
    setup_logging("WARNING")
    plan = Plan.for_camera(cam, config.models, _device(args.device), args.model)
    bar = ProgressBar(enabled=not args.quiet)
    try:
        if args.footage:
            data = collect_files([Path(p) for p in args.footage], plan.spec, bar)
        else:
            seconds = args.seconds or config.models.learn_seconds
            data = collect_live(cam, config.capture, plan.spec, seconds, bar)
        trained = learn(data, plan, bar)
    finally:
        bar.close()
    out = Path(args.out) if args.out else config.models.dir / cam.name
    trained.save(out, cam.name)
    cal = trained.calibration
    print(
        f"[{cam.name}] {plan.spec.kind} trained in {trained.summary['train_seconds']:.1f} s on "
        f"{trained.summary['frames']} frames; threshold {cal.threshold:.3f} for "
        f"{cal.false_events_per_hour:g} false event(s)/hour at {cal.analysis_fps:g} fps "
        f"(held-out max {cal.held_out_max:.3f}); saved to {out}"
    )
    if cal.note:
        print(f"[{cam.name}] warning: {cal.note}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from streamdet.models.checkpoint import load_checkpoint
    from streamdet.models.export import export_onnx

    model, _ = load_checkpoint(Path(args.checkpoint))
    path = export_onnx(model, Path(args.onnx), batch=args.batch)
    print(
        f"wrote {path} ({model.kind}, input frames uint8 (B, {model.context + 1}, "
        f"{model.spec.height}, {model.spec.width}) -> score, anomaly_map)"
    )
    return EXIT_OK


def _eval_summary(metrics: dict[str, Any], out: str) -> str:
    models: dict[str, dict[str, float]] = metrics["models"]
    lines = [f"{'model':<12} {'AUC streaming':>14} {'AUC per-video':>14} {'train s':>8} {'fps':>8}"]
    for name, m in models.items():
        lines.append(
            f"{name:<12} {m['auc_micro_streaming']:>14.4f} {m['auc_micro_video_normalised']:>14.4f}"
            f" {m['train_seconds']:>8.1f} {m['scoring_fps']:>8.0f}"
        )
    stages = metrics.get("stage_ms_per_frame")
    if stages:
        spent = ", ".join(f"{stage} {ms:.2f}" for stage, ms in stages.items())
        lines.append(f"{metrics['model']} ms per frame by stage: {spent}")
    events = metrics.get("events_at_threshold")
    if events:
        rate = events["false_events_per_hour"]
        lines.append(
            f"{metrics['model']} at its threshold: {events['stretches_caught']} of "
            f"{events['anomalous_stretches']} anomalous stretches raised an event; "
            f"{events['false_events']} false event(s) in {events['normal_hours'] * 60:.1f} min "
            f"of normal footage" + ("" if rate is None else f" ({rate:.1f}/hour)")
        )
    lines.append(f"written to {out}/ (metrics.json, scores/, roc.png, timeline_*.png)")
    return "\n".join(lines)


def _device(choice: str) -> str:
    if choice != "auto":
        return choice
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamdet",
        description="Streaming video anomaly detection for camera feeds.",
    )
    parser.add_argument("--version", action="version", version=f"streamdet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "check-config", help="validate a config file (and against this machine), summarise it"
    )
    p.add_argument("config", help="YAML config file")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("probe", help="open a camera URL or file and report codec, size, fps")
    p.add_argument("url", help="rtsp://..., http://... (MJPEG), /dev/videoN or a video file")
    p.add_argument("--transport", choices=["tcp", "udp"], default="tcp", help="RTSP transport")
    p.add_argument("--frames", type=int, default=50, help="frames to decode (default 50)")
    p.add_argument("--max-seconds", type=float, default=10.0, help="stop after this (default 10)")
    p.add_argument("--timeout", type=float, default=5.0, help="open/read timeout in s (default 5)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("capture", help="run the capture stage and show live per-camera figures")
    p.add_argument("--config", required=True, help="YAML config file")
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    p.set_defaults(func=cmd_capture)

    p = sub.add_parser("train", help="learn a camera's normal from its footage or live stream")
    p.add_argument("--config", required=True, help="YAML config file")
    p.add_argument("--camera", required=True, help="camera name from the config")
    p.add_argument("--footage", nargs="+", help="video files/folders (default: watch the camera)")
    p.add_argument("--seconds", type=float, help="watch the live camera this long")
    p.add_argument("--model", help="model kind (default: the camera's, else models.kind)")
    p.add_argument("--out", help="checkpoint folder (default: models.dir/<camera>)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="export a trained checkpoint to ONNX")
    p.add_argument("--checkpoint", required=True, help="checkpoint folder")
    p.add_argument("--onnx", required=True, help="output .onnx file")
    p.add_argument("--batch", type=int, default=1, help="example batch size (axis is dynamic)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("eval", help="train on a labelled dataset's normal clips, score its tests")
    p.add_argument("--dataset", required=True, help="DIR with train/*.mp4, test/*.mp4, labels.json")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--model", default=_default_kind(), help="model kind (default %(default)s)")
    p.add_argument("--checkpoint", help="score with this trained checkpoint instead of training")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--max-train-seconds", type=float, default=900.0, help="training budget")
    p.add_argument("--false-events-per-hour", type=float, default=1.0, help="threshold budget")
    p.add_argument("--alpha", type=float, default=None, help="EMA smoothing (1 = none)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--no-baseline", action="store_true", help="skip the framediff baseline")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "run",
        help="run the pipeline: capture, scoring, HTTP server (until stopped, or until every "
        "source is a file that does not loop and has ended)",
        description="Run the pipeline until SIGINT/SIGTERM, --duration, or the end of every "
        "source that is a file that does not loop. SIGHUP (or POST /api/reload) reads --config "
        "again: added cameras start, removed ones stop, changed ones restart, the others run "
        "on; a config with errors is refused and the running one kept.",
    )
    p.add_argument("--config", required=True, help="YAML config file (read again on SIGHUP)")
    p.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "fleet-cameras",
        help="show or replace the fleet's camera list (fleet.cameras: kv)",
        description="Print the camera list that a fleet's workers read from the <prefix>-config"
        " KV bucket, or replace it with a YAML file's (a list, or a mapping with `cameras:`),"
        " checked as a config's cameras are before it is written. ${VAR} references are kept"
        " for each worker to fill from its own environment.",
    )
    p.add_argument("--config", required=True, help="a worker's YAML config (its fleet: section)")
    p.add_argument("--set", metavar="FILE", help="write this file's cameras as the list")
    p.set_defaults(func=cmd_fleet_cameras)

    p = sub.add_parser("demo", help="run on the built-in synthetic cameras (no camera needed)")
    p.add_argument("--config", default=None, help="use this config instead of the built-in one")
    p.add_argument("--duration", type=float, default=90.0, help="seconds to run (default 90)")
    p.add_argument("--learn-seconds", type=float, default=30.0, help="learning period (30)")
    p.add_argument("--port", type=int, default=8686, help="HTTP port (default 8686; 0: any)")
    p.add_argument("--events", default="runs/demo/events", help="where events are written")
    p.set_defaults(func=cmd_demo)
    return parser


def _default_kind() -> str:
    from streamdet.models.kinds import DEFAULT_KIND

    return DEFAULT_KIND


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except StreamdetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    raise SystemExit(main())
