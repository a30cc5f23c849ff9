"""``benchmarks/pipeline.py --substream``: cameras held with 720p alone vs with a substream.

An IP camera offers a low-resolution substream beside its main stream; with a ``record``
source the pipeline decodes and scores the substream and only demuxes the main stream's packets
into the clip buffer (``streamdet/capture/record.py``). This measures what that buys, in one run
on one machine:

* **720p alone**: every camera's detect source is the 1280x720 stream (decoded in full, its
  packets kept for clips), as a camera without ``record`` runs.
* **substream**: every camera's detect source is a 640x360 stream of the same scene, and its
  ``record`` source the 1280x720 stream (two RTSP sessions per camera).

Each mode's model is trained on its own detect clip (a camera learns from the stream it
scores).

One GStreamer RTSP server on 127.0.0.1 serves both clips live (``/main<k>``, ``/sub<k>``,
``--mounts`` each). The camera counts of ``--cameras`` are tried in increasing order, both
modes at each count one after the other (the load of a shared machine moves), each mode until
its first count that does not hold (the pipeline's test: misses <= 1 % of offered frames, p99
latency < 1 s, capture at real time); ``cameras_held_*`` is the highest each held and
``ratio`` = substream / 720p (target >= 2.5).

Beside the counts: the capture stage alone (no scoring) in each mode at ``min(16, largest
count)`` cameras, CPU-ms per camera-second (twice each), and, before and after (median),
decode frames/s of the 720p and of the
640x360 clip alone (``--limit-seconds`` each, one bare thread per core, the stage's decoder
options) and the model's windows/s; from them each mode's shared-core ceiling in cameras,
``1 / (5 / decode_fps + 1 / model_windows_per_s) / 5`` (the substream's leaves out the record
stream's demuxing, which costs no decoding). The last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.capture import OUT_SHAPE, _rounded, machine_info, prepare_clip
from benchmarks.common import RtspServer
from benchmarks.media import make_scene_clip
from benchmarks.pipeline import (
    ANALYSIS_FPS,
    FPS,
    Setup,
    build_config,
    camera_names,
    decode_limit,
    limit_runner,
    log,
    run_pipeline,
    runner_rate,
    stage_threads,
    train_models,
    window_batches,
)
from streamdet.capture.stage import CaptureStage
from streamdet.learning.videos import read_clip

SUB_WIDTH, SUB_HEIGHT = 640, 360


def prepare_sub_clip(workdir: Path, frames: int) -> Path:
    """The benchmark's scene (same seed and frames as ``prepare_clip``) at 640x360."""
    path = workdir / f"bench-scene-{SUB_WIDTH}x{SUB_HEIGHT}-{FPS}fps-gop50-{frames}f.mp4"
    if not (path.exists() and path.stat().st_size > 0):
        log(f"clip: encoding {frames} frames {SUB_WIDTH}x{SUB_HEIGHT} H.264 into {path}")
        tmp = path.with_suffix(".tmp.mp4")
        make_scene_clip(tmp, frames=frames, width=SUB_WIDTH, height=SUB_HEIGHT, fps=FPS, gop=50)
        tmp.replace(path)
    return path


@contextmanager
def two_streams(
    main_clip: Path, sub_clip: Path, mounts: int
) -> Iterator[tuple[list[str], list[str], int | None]]:
    """One RTSP server: the 720p main streams' URLs, the substreams' URLs, its pid."""
    paths = {f"/main{k}": str(main_clip) for k in range(mounts)}
    paths |= {f"/sub{k}": str(sub_clip) for k in range(mounts)}
    server = RtspServer(paths)
    log(f"rtsp: starting the GStreamer RTSP server on 127.0.0.1:{server.port}")
    server.start()
    try:
        pid = server.proc.pid if server.proc is not None else None
        main = [server.url(f"/main{k}") for k in range(mounts)]
        yield main, [server.url(f"/sub{k}") for k in range(mounts)], pid
    finally:
        server.stop()


def limits(main: Setup, sub: Setup, count: int) -> dict[str, float]:
    """Decode frames/s of each clip alone (a bare thread per core) and the model's windows/s
    for ``count`` cameras (the faster of one grouped call and one call per camera)."""
    args, cores = main.args, os.cpu_count() or 1
    fast = not args.plain_decode
    threads = stage_threads(build_config(main, count))
    rates = []
    for grouping in ("vmap", "loop"):
        runner = limit_runner(main, count, threads, grouping)
        batches = window_batches(main, count, runner.context(camera_names(1)[0]))
        rates.append(runner_rate(runner, batches, args.limit_seconds))
    sample = {
        "decode_fps_720p": decode_limit(main, cores, fast, args.decoder_threads),
        "decode_fps_640x360": decode_limit(sub, cores, fast, args.decoder_threads),
        "model_windows_per_s": max(rates),
    }
    log(
        f"  limits: decode 720p {sample['decode_fps_720p']:.0f} frames/s, 640x360"
        f" {sample['decode_fps_640x360']:.0f} frames/s; model {max(rates):.0f} windows/s"
    )
    return sample


def capture_cpu_ms(setup: Setup, count: int, seconds: float) -> float:
    """CPU-ms per camera-second of the capture stage alone (no scoring) on ``count`` cameras
    of ``setup``'s streams (with footage kept for clips, as the pipeline runs)."""
    config = build_config(setup, count)
    stage = CaptureStage(config.cameras, config.capture, clips=config.alerts.clips)
    with stage:
        deadline = time.monotonic() + 30.0 + count
        while min(s.frames for s in stage.status()) < FPS and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        cpu, wall = time.process_time(), time.monotonic()
        time.sleep(seconds)
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    return 1000.0 * cpu / wall / count


def ceiling(decode_fps: float, model_windows_per_s: float) -> float:
    """Cameras at the shared-core ceiling: an analysed frame costs FPS / ANALYSIS_FPS decoded
    frames and one scored window, on the same cores."""
    per_frame = (FPS / ANALYSIS_FPS) / decode_fps + 1.0 / model_windows_per_s
    return 1.0 / per_frame / ANALYSIS_FPS


def run_one(setup: Setup, count: int, mode: str) -> dict[str, Any]:
    """One pipeline window of ``mode`` on ``count`` cameras, logged."""
    load = round(os.getloadavg()[0], 2)
    try:
        run = run_pipeline(setup, count)
    except RuntimeError as exc:
        run = {"cameras": count, "held": False, "error": str(exc)}
    run |= {"mode": mode, "loadavg_at_start": load}
    if "cpu_cores" in run:
        run["cpu_ms_per_camera_s"] = 1000.0 * run["cpu_cores"] / count
    log(
        f"  {mode} {count} cameras: held {run['held']} {run.get('checks')}, misses"
        f" {run.get('deadline_misses')}, p50 {run.get('latency_p50_s')}, p99"
        f" {run.get('latency_p99_s')}, CPU {run.get('cpu_cores')} cores, RTSP server"
        f" {run.get('server_cpu_cores')} (machine {run.get('machine_busy_cores')}), load {load}"
    )
    return run


def search(setups: dict[str, Setup], counts: list[int]) -> tuple[dict[str, int], list[Any]]:
    """Counts in increasing order, the modes interleaved at each count (the load of a shared
    machine moves: both modes at a count run within a minute); a mode stops at its first
    count that does not hold. The highest count each held, and every run."""
    held = dict.fromkeys(setups, 0)
    searching, runs = set(setups), []
    for count in counts:
        for mode, setup in setups.items():
            if mode in searching:
                runs.append(run_one(setup, count, mode))
                if runs[-1]["held"]:
                    held[mode] = count
                else:
                    searching.discard(mode)
        if not searching:
            break
    return held, runs


def run_substream(args: argparse.Namespace) -> int:
    """The two modes on one RTSP server, one model; prints the JSON result last."""
    started, info = time.monotonic(), machine_info()
    log(f"machine: {info}")
    main_clip = prepare_clip(args.workdir, args.frames)
    sub_clip = prepare_sub_clip(args.workdir, args.frames)
    with tempfile.TemporaryDirectory(prefix="streamdet-substream-bench-") as tmp:
        models_dir = Path(tmp) / "models"
        names = camera_names(args.counts[-1])
        model = train_models(main_clip, models_dir, names, args.kind, args.model_params)
        # Each mode's cameras learned from their own detect stream, as they would in place:
        # an object model's work follows what it finds in the frames it was trained on.
        sub_models = Path(tmp) / "models-substream"
        train_models(sub_clip, sub_models, names, args.kind, args.model_params)
        frames = read_clip(main_clip, OUT_SHAPE[1], OUT_SHAPE[0])
        with two_streams(main_clip, sub_clip, args.mounts) as (main_urls, sub_urls, pid):
            alone = Setup(main_clip, models_dir, frames, main_urls, args, pid)
            sub = dataclasses.replace(
                alone, models_dir=sub_models, urls=sub_urls, records=tuple(main_urls)
            )
            sub_decode = dataclasses.replace(alone, clip=sub_clip)
            probe = min(16, args.counts[-1])
            samples = [limits(alone, sub_decode, probe)]
            capture_ms = {
                mode: [capture_cpu_ms(s, probe, args.seconds) for _ in range(2)]
                for mode, s in (("720p", alone), ("substream", sub))
            }
            log(f"  capture alone, CPU-ms per camera-second at {probe} cameras: {capture_ms}")
            held, runs = search({"720p": alone, "substream": sub}, args.counts)
            samples.append(limits(alone, sub_decode, probe))
    med = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    held_720p, held_sub = held["720p"], held["substream"]
    result = {
        "cameras_held_720p": held_720p,
        "cameras_held_substream": held_sub,
        "ratio": held_sub / held_720p if held_720p else None,
        "ratio_ge_2.5": bool(held_720p) and held_sub >= 2.5 * held_720p,
        "cameras_at_limit_720p": ceiling(med["decode_fps_720p"], med["model_windows_per_s"]),
        "cameras_at_limit_substream": ceiling(
            med["decode_fps_640x360"], med["model_windows_per_s"]
        ),
        **med,
        "capture_cpu_ms_per_camera_s": capture_ms,  # the capture stage alone, no scoring
        "capture_cameras": probe,
        "limit_samples": samples,
        "cameras_tried": args.counts,
        "runs": runs,
        "model": model,
        "machine": info,
        "elapsed_s": time.monotonic() - started,
    }
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    result["settings"] = settings
    log(
        f"summary: 720p alone held {held_720p}, substream held {held_sub}"
        f" (ratio {result['ratio']}); ceilings {result['cameras_at_limit_720p']:.1f} and"
        f" {result['cameras_at_limit_substream']:.1f} cameras"
    )
    print(json.dumps(_rounded(result)), flush=True)
    return 0
