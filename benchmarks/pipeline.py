"""The whole pipeline on N live 720p cameras: throughput, misses, latency, CPU, and its limits.

N cameras of 1280x720 H.264 at 25 fps are analysed at 5 fps each with the default model kind
(``--kind`` for another) on this machine's CPU. For every camera count tried (``--cameras
16,24,28,32,36``, increasing, stopping after the first count that fails) the run measures:

Setup (once). One synthetic scene clip (``make_scene_clip``, 1280x720, 25 fps, ``--frames``
frames, cached in ``--workdir``). One GStreamer RTSP server on 127.0.0.1 serves it live at one
shared mount (``--mounts K`` spreads the cameras over K mounts), read by N clients; with
``--source file`` each camera reads the clip itself (``realtime: true``, ``loop: true``). One
model of the default kind is trained once on frames of that clip (``streamdet.learning``:
``collect_files`` + ``learn``, small budget) and saved with ``Trained.save`` into
``models_dir/<camera>/`` for every camera, so the pipeline detects at once
(``models.learn_in_place: false``). The config is a dict through ``parse_config``: N cameras,
``analysis_fps: 5``, the default frame format, ``server.enabled: false``.

Pipeline. ``App(config)`` runs on an asyncio loop in a background thread. After every camera has
scores (bounded) and ``--warmup`` more seconds, a window of ``--seconds`` is measured:

* ``analysed_fps``: frames scored per second, summed over cameras.
* ``offered``: analysable frames the capture stage marked in the window (``analysable`` deltas).
* ``deadline_misses`` = offered - scored frames *captured in the window* (a score listener sees
  every scored frame; in-flight frames get a short grace after the window): frames that were due
  for analysis and never scored. Reported beside it: ``superseded`` (replaced in the batcher)
  and ``dropped_*`` (window unavailable, output full, behind: analysable frames that came and
  went between two looks of the inference thread) from the metrics registry; the remainder is
  ``misses_unaccounted``.
* ``latency_p50_s`` / ``latency_p99_s``: ``ScoredFrame.latency_s`` (decode to score).
* ``cpu_cores`` / ``cpu_pct``: process CPU time / wall time (cores, and % of all cores); also the
  RTSP server's CPU and the whole machine's busy cores (``/proc/stat``) to show other load.
* ``frames_skipped``: frames decoded and not scored (mostly by design: 20 of every 25).

A count **holds** when misses are at most 1% of offered frames, p99 latency < 1 s, and capture
kept real time (every camera decoded >= 95% of 25 fps and its wall-minus-stream-time lag grew
< 0.5 s): a frame the capture never delivers in time is a missed deadline too, which the
decode-to-score latency alone cannot see. ``cameras_sustained`` is the highest count that held.

Limits, same run, same frames, measured before and after the pipeline (median of the two):
decode limit = N bare threads decoding the clip *file* at full speed with the stage's conversion
(``benchmarks/capture.py``'s bare loop, with the stage's decoder options ``capture.fast_decode``
and ``capture.decoder_threads``; ``decode_fps_plain`` is plain PyAV: deblocking, FFmpeg's
threads), its analysable equivalent = decoded/s x 5/25; model limit = ``ModelRunner.run``
scoring N cameras' windows per call as fast as it can, the faster of its two ways (one grouped
call: ``vmap`` over stacked parameters, or the model's own ``forward_grouped`` when it cannot
run under vmap, as ``motionflow``; one call per camera), as the pipeline's runner
(``inference.grouping: auto``) picks. Decode and scoring run on the same cores, so an analysed
frame costs the time of 5 decoded frames *plus* a scored window: the shared-core ceiling is
``1 / (1 / decode equivalent + 1 / model)`` analysed frames/s (``cameras_at_limit`` = that / 5),
``limit = min(N x 5 offered, that ceiling)``, ``ratio_to_limit = analysed_fps / limit``. The old
figure, each part alone on all cores (``min(offered, decode equivalent, model)``), is kept as
``limit_separate``. ``vmap.ratio`` is how much one grouped call beats one
call per camera on the same windows; ``pipeline_grouping`` is what the pipeline chose.

Naive loop, same model, same sources, same time: N PyAV readers; for each camera in turn decode
the next frame, convert it, score it alone (batch 1), repeat. It cannot skip a frame without
decoding it and scores every frame it reads. Time spent waiting for data (network, or pacing a
file) is kept apart from decoding (``t_decode``, incl. conversion) and scoring (``t_score``).
Its lag (wall time since its first frame - stream time since then, from pts) grows when it
cannot keep up, unless the server drops what it cannot send (``stream_frames_lost``).
``naive_cameras_sustainable = 1 / (25 x (t_decode + t_score))``: cameras it could keep at real
time. ``speedup_vs_naive = cameras_sustained / naive_cameras_sustainable``. The camera ratio is
the fair one: the naive loop scores 25 frames/s per camera where the pipeline scores 5, so its
scored frames/s (``throughput_ratio_vs_naive``, also reported) rewards wasted work; what a user
buys is cameras watched at real time. ``cameras_sustained`` is capped by the highest count tried,
so the speedup is a lower bound.

``--substream``: each camera's detect source is a 640x360 substream and its ``record`` source
the 720p stream; cameras held that way vs with 720p alone, same run (``benchmarks/substream.py``).

Run from the repository root: ``python benchmarks/pipeline.py [--cameras 16,24,28,32,36]``.
Progress goes to stderr; the last line of stdout is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av
import numpy as np
import torch

from benchmarks.capture import OUT_SHAPE, _rounded, bare_readers, machine_info, prepare_clip
from benchmarks.capture import measure as measure_counts
from benchmarks.common import SYSTEM_PYTHON, RtspServer
from benchmarks.proccpu import ProcCpu
from streamdet.app import App
from streamdet.capture.convert import av_frame_into
from streamdet.capture.sources import rtsp_open_args
from streamdet.config import Config, InferenceConfig, parse_config
from streamdet.frames import ScoredFrame
from streamdet.inference.runner import ModelRunner
from streamdet.learning.footage import collect_files
from streamdet.learning.videos import read_clip
from streamdet.learning.workflow import Budget, Plan, learn
from streamdet.models.base import AnomalyModel, TrainSettings, no_progress
from streamdet.models.checkpoint import load_checkpoint
from streamdet.models.kinds import DEFAULT_KIND, MODEL_KINDS
from streamdet.models.registry import default_spec, entry

FPS, ANALYSIS_FPS = 25, 5
RTSP_TIMEOUT_S = 5.0
MISS_TOLERANCE = 0.01  # share of offered frames that may be missed
P99_TARGET_S = 1.0
MIN_DECODE_SHARE, MAX_LAG_GROWTH_S = 0.95, 0.5  # capture keeps real time
GRACE_S = 1.5  # after the window, for frames captured in it to be scored

Row = tuple[str, float, float | None, float]  # camera, capture wall time, pts, latency


# Each run's figures in the JSON's side_by_side list (--capture-processes 0,auto).
SIDE_BY_SIDE = (
    "cameras", "capture_processes_setting", "held", "analysed_fps", "deadline_misses",
    "latency_p50_s", "latency_p99_s", "ratio_to_limit", "cpu_cores", "all_processes_cpu_cores",
    "kernel_share", "context_switches_per_s", "decoded_fps_min_camera",
)  # fmt: skip


def log(message: str) -> None:
    print(f"[pipeline-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- setup
def camera_names(count: int) -> list[str]:
    return [f"cam{i:02d}" for i in range(count)]


def train_models(
    clip: Path, models_dir: Path, cameras: list[str], kind: str, params: dict[str, Any]
) -> dict[str, Any]:
    """Train one model of ``kind`` on the clip; save it as every camera's checkpoint."""
    started = time.monotonic()
    spec = default_spec(kind, params=params)
    settings = TrainSettings(seed=0, max_seconds=60.0, epochs=3)
    plan = Plan(spec, settings, Budget(ANALYSIS_FPS, 1.0, entry(kind).smoothing_alpha))
    trained = learn(collect_files([clip], spec, no_progress), plan)
    for name in cameras:
        trained.save(models_dir / name, name, source=str(clip))
    # the model's own view of its params: its defaults merged with the spec's (if it has one)
    effective = getattr(trained.model, "params", spec.params)
    info = {
        "kind": kind,
        "params": effective if isinstance(effective, dict) else spec.params,
        "input": [spec.width, spec.height],
        "train_s": time.monotonic() - started,
        **trained.summary,
    }
    log(f"model: {kind} {info['params']} trained in {info['train_s']:.1f} s")
    return info


@dataclass(frozen=True)
class Setup:
    """What every camera count shares."""

    clip: Path
    models_dir: Path
    frames: np.ndarray  # the clip at the ring's format: (n, 240, 320) grey
    urls: list[str]  # RTSP mount URLs (empty for --source file)
    args: argparse.Namespace
    server_pid: int | None
    records: tuple[str, ...] = ()  # --substream: record stream URLs (the detect urls: substreams)

    def target(self, i: int) -> str:
        return self.urls[i % len(self.urls)] if self.urls else str(self.clip)

    @property
    def live(self) -> bool:
        return bool(self.urls)


def build_config(setup: Setup, count: int) -> Config:
    cameras = []
    for i, name in enumerate(camera_names(count)):
        source: dict[str, Any]
        if setup.live:
            source = {
                "kind": "rtsp",
                "url": setup.target(i),
                "open_timeout_s": RTSP_TIMEOUT_S,
                "read_timeout_s": RTSP_TIMEOUT_S,
            }
        else:
            source = {"kind": "file", "path": str(setup.clip), "loop": True, "realtime": True}
        camera = {"name": name, "source": source, "analysis_fps": ANALYSIS_FPS}
        if setup.records:
            url = setup.records[i % len(setup.records)]
            camera["record"] = {**source, "url": url}  # the same timeouts
        cameras.append(camera)
    models = {"dir": str(setup.models_dir), "kind": setup.args.kind, "learn_in_place": False}
    # Events go next to the models, in the benchmark's own temporary folder.
    alerts = {
        "dir": str(setup.models_dir.parent / "events"),
        "clips": {"enabled": not setup.args.no_clips},
    }
    capture = {
        "nice": setup.args.capture_nice,
        "fast_decode": not setup.args.plain_decode,
        "decoder_threads": setup.args.decoder_threads,
        "processes": setup.args.capture_processes,
    }
    return parse_config(
        {
            "cameras": cameras,
            "capture": capture,
            "models": models,
            "alerts": alerts,
            "inference": {
                "backlog": setup.args.backlog,
                "max_batch": setup.args.max_batch,
                "threads": setup.args.threads,
            },
            "server": {"enabled": False},
        }
    )


def stage_threads(config: Config) -> int:
    """The torch threads the inference stage uses (the same rule as ``InferenceStage``)."""
    return config.inference.threads or max(1, (os.cpu_count() or 2) - 1)


# --------------------------------------------------------------------------- CPU accounting
@dataclass(frozen=True)
class CpuMark:
    wall: float
    process: float
    machine_busy: float  # seconds of busy CPU, all cores
    server: float

    @staticmethod
    def now(server_pid: int | None) -> CpuMark:
        tick = os.sysconf("SC_CLK_TCK")
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        busy = (sum(fields) - fields[3] - fields[4]) / tick  # minus idle and iowait
        server = 0.0
        if server_pid is not None:
            try:
                stat = Path(f"/proc/{server_pid}/stat").read_text().rsplit(")", 1)[1].split()
                server = (int(stat[11]) + int(stat[12])) / tick  # utime + stime
            except (OSError, IndexError, ValueError):
                server = float("nan")
        return CpuMark(time.monotonic(), time.process_time(), busy, server)

    def since(self, start: CpuMark) -> dict[str, float]:
        wall = self.wall - start.wall
        cores = (self.process - start.process) / wall
        return {
            "cpu_cores": cores,
            "cpu_pct": 100.0 * cores / (os.cpu_count() or 1),
            "server_cpu_cores": (self.server - start.server) / wall,
            "machine_busy_cores": (self.machine_busy - start.machine_busy) / wall,
        }


# --------------------------------------------------------------------------- the pipeline
class ScoreLog:
    """A score listener: (camera, capture wall time, pts, latency) of every scored frame."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: collections.deque[Row] = collections.deque(maxlen=1_000_000)

    def __call__(self, frame: ScoredFrame) -> None:
        with self._lock:
            self._rows.append(
                (frame.ref.camera, frame.ref.wall_time, frame.ref.pts_s, frame.latency_s)
            )

    def between(self, t0: float, t1: float) -> list[Row]:
        """Frames *captured* (decoded) in [t0, t1), whenever they were scored."""
        with self._lock:
            return [r for r in self._rows if t0 <= r[1] < t1]


@contextmanager
def running(config: Config) -> Iterator[App]:
    """An App on its own asyncio loop in a background thread; stopped on exit."""
    app = App(config)
    loop = asyncio.new_event_loop()
    started, done, errors = threading.Event(), threading.Event(), list[BaseException]()

    def main() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(app.start())
            started.set()
            loop.run_forever()
        except Exception as exc:  # reported to the caller below
            errors.append(exc)
        finally:
            try:
                loop.run_until_complete(app.stop())
            finally:
                loop.close()
                done.set()

    thread = threading.Thread(target=main, name="app-loop", daemon=True)
    thread.start()
    try:
        while not started.wait(0.1):
            if done.is_set():
                raise RuntimeError(f"the app did not start: {errors!r}")
        yield app
    finally:
        if not done.is_set():
            loop.call_soon_threadsafe(loop.stop)
        if not done.wait(60):
            log("warning: the app did not stop within 60 s")
        thread.join(5)


def registry_sum(app: App, name: str, cameras: list[str], **labels: str) -> float:
    total = 0.0
    for camera in cameras:
        value = app.registry.get_sample_value(name, {"camera": camera, **labels})
        total += value or 0.0
    return total


@dataclass(frozen=True)
class Counts:
    """Counters of the running pipeline at one instant."""

    wall: float  # time.time(): the clock of FrameRef.wall_time
    decoded: dict[str, int]
    analysable: dict[str, int]
    analysed: int
    superseded: float
    unavailable: float
    behind: float
    output_full: float
    batches: float
    batch_items: float
    infer_s: float
    cpu: CpuMark

    @staticmethod
    def take(app: App, server_pid: int | None) -> Counts:
        names, drop = app.capture.cameras, "streamdet_frames_dropped_total"
        # The clock, then the counters at once: only a frame caught between its decode time and
        # its commit can land on one side only (offered vs captured), at most one per edge.
        wall = time.time()
        status = app.capture.status()
        return Counts(
            wall=wall,
            decoded={s.name: s.frames for s in status},
            analysable={s.name: s.analysable for s in status},
            analysed=sum(app.inference.analysed.values()),
            superseded=registry_sum(app, "streamdet_frames_superseded_total", names),
            unavailable=registry_sum(
                app, drop, names, stage="inference", reason="window_unavailable"
            ),
            behind=registry_sum(app, drop, names, stage="inference", reason="behind"),
            output_full=registry_sum(app, drop, names, stage="inference", reason="output_full"),
            batches=app.registry.get_sample_value("streamdet_inference_batch_size_count") or 0.0,
            batch_items=app.registry.get_sample_value("streamdet_inference_batch_size_sum") or 0.0,
            infer_s=app.registry.get_sample_value("streamdet_inference_seconds_sum") or 0.0,
            cpu=CpuMark.now(server_pid),
        )


def capture_lag_growth(rows: list[Row]) -> float:
    """Largest growth over the window of (wall - pts) of any camera's scored frames."""
    by_camera: dict[str, list[float]] = collections.defaultdict(list)
    for camera, wall, pts, _ in rows:
        if pts is not None:
            by_camera[camera].append(wall - pts)
    growth = [
        statistics.median(lags[-5:]) - statistics.median(lags[:5])
        for lags in by_camera.values()
        if len(lags) >= 10
    ]
    return max(growth, default=0.0)


def run_pipeline(setup: Setup, count: int) -> dict[str, Any]:
    """Start the App on ``count`` cameras, warm up, measure one window."""
    args, config = setup.args, build_config(setup, count)
    scores = ScoreLog()
    with running(config) as app:
        app.on_score(scores)
        started, bound = time.monotonic(), 30.0 + count
        while min(app.inference.analysed.values()) == 0:
            if time.monotonic() - started > bound:
                waiting = [c for c, n in app.inference.analysed.items() if n == 0]
                raise RuntimeError(f"no scores within {bound:.0f} s from {waiting}")
            time.sleep(0.1)
        log(f"  pipeline: every camera scoring after {time.monotonic() - started:.1f} s")
        time.sleep(args.warmup)
        pids = [os.getpid(), *(p.pid for p in app.capture.processes if p.pid is not None)]
        before, cpu_before = Counts.take(app, setup.server_pid), ProcCpu.now(pids)
        time.sleep(args.seconds)
        after, cpu_after = Counts.take(app, setup.server_pid), ProcCpu.now(pids)
        time.sleep(GRACE_S)
        modes = sorted({m or "single" for m in app.inference.runner.modes().values()})
    rows = scores.between(before.wall, after.wall)
    cpu = cpu_after.since(cpu_before, after.cpu.wall - before.cpu.wall)
    extra = {"pipeline_grouping": modes, "capture_processes": len(pids) - 1, **cpu}
    return summarise_pipeline(count, before, after, rows) | extra


def summarise_pipeline(
    count: int, before: Counts, after: Counts, rows: list[Row]
) -> dict[str, Any]:
    seconds = after.cpu.wall - before.cpu.wall
    offered = sum(after.analysable[c] - before.analysable[c] for c in after.analysable)
    decoded = {c: after.decoded[c] - before.decoded[c] for c in after.decoded}
    scored_by_camera = collections.Counter(r[0] for r in rows)
    misses = sum(
        max(0, after.analysable[c] - before.analysable[c] - scored_by_camera[c])
        for c in after.analysable
    )
    analysed = after.analysed - before.analysed
    superseded = after.superseded - before.superseded
    unavailable = after.unavailable - before.unavailable
    behind = after.behind - before.behind
    latencies = np.array([r[3] for r in rows]) if rows else np.array([np.inf])
    batches = after.batches - before.batches
    p99 = float(np.percentile(latencies, 99))
    lag_growth = capture_lag_growth(rows)
    min_decoded_fps = min(decoded.values()) / seconds
    checks = {
        "misses_ok": offered > 0 and misses <= MISS_TOLERANCE * offered,
        "p99_ok": p99 < P99_TARGET_S,
        "realtime_ok": min_decoded_fps >= MIN_DECODE_SHARE * FPS and lag_growth < MAX_LAG_GROWTH_S,
    }
    return {
        "cameras": count,
        "held": all(checks.values()),
        "checks": checks,
        "seconds": seconds,
        "analysed_fps": analysed / seconds,
        "offered_fps": offered / seconds,
        "offered": offered,
        "scored_of_offered": sum(scored_by_camera.values()),
        "deadline_misses": misses,
        "deadline_miss_pct": 100.0 * misses / offered if offered else None,
        "superseded": superseded,
        "dropped_window_unavailable": unavailable,
        "dropped_output_full": after.output_full - before.output_full,
        "dropped_behind": behind,
        "misses_unaccounted": misses - superseded - unavailable - behind,
        "decoded_fps": sum(decoded.values()) / seconds,
        "decoded_fps_min_camera": min_decoded_fps,
        "frames_skipped": sum(decoded.values()) - analysed,
        "capture_lag_growth_s": lag_growth,
        "latency_p50_s": float(np.percentile(latencies, 50)) if rows else None,
        "latency_p99_s": p99 if rows else None,
        "latency_max_s": float(latencies.max()) if rows else None,
        "batches_per_s": batches / seconds,
        "mean_batch": (after.batch_items - before.batch_items) / batches if batches else None,
        "inference_ms_per_batch": 1000 * (after.infer_s - before.infer_s) / batches
        if batches
        else None,
        **after.cpu.since(before.cpu),
    }


# --------------------------------------------------------------------------- the limits
def decode_limit(setup: Setup, count: int, fast_decode: bool, threads: int | str) -> float:
    """Frames/s of ``count`` bare threads decoding + converting the clip file at full speed;
    ``threads``: ``capture.decoder_threads``."""
    targets = [str(setup.clip)] * count
    with bare_readers(
        targets, convert=True, live=False, fast_decode=fast_decode, decoder_threads=threads
    ) as readers:
        time.sleep(1.0)
        sample = measure_counts(
            "bare", lambda: [r.frames for r in readers], setup.args.limit_seconds
        )
    return sample.fps


def limit_runner(setup: Setup, count: int, threads: int, grouping: str) -> ModelRunner:
    runner = ModelRunner("cpu", threads, grouping)
    for name in camera_names(count):
        runner.add(name, load_checkpoint(setup.models_dir / name)[0])
    return runner


def window_batches(
    setup: Setup, count: int, context: int, batches: int = 8
) -> list[dict[str, np.ndarray]]:
    """``batches`` sets of one (context+1)-frame window per camera, from the clip's frames."""
    frames, span = setup.frames, context + 1
    out = []
    for b in range(batches):
        batch = {}
        for i, name in enumerate(camera_names(count)):
            start = (b * 13 + i * 7) % (len(frames) - span)
            batch[name] = np.ascontiguousarray(frames[start : start + span])
        out.append(batch)
    return out


def runner_rate(runner: ModelRunner, batches: list[dict[str, np.ndarray]], seconds: float) -> float:
    """Windows/s of ``runner.run`` called back to back on ``batches``."""
    runner.run(batches[0])  # warm: stacking, first call at these shapes
    windows, calls, started = 0, 0, time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds or calls < 3:
        batch = batches[calls % len(batches)]
        runner.run(batch)
        windows, calls = windows + len(batch), calls + 1
    return windows / elapsed


def measure_limits(setup: Setup, count: int, threads: int, reverse: bool) -> dict[str, float]:
    """Decode limit and the model limit both ways (one grouped call; one call per camera), in
    ABC or CBA order. The pipeline's runner (``grouping: auto``) uses the faster way."""
    vmapped = limit_runner(setup, count, threads, "vmap")
    looped = limit_runner(setup, count, threads, "loop")
    batches = window_batches(setup, count, vmapped.context(camera_names(1)[0]))
    seconds = setup.args.limit_seconds
    steps: list[tuple[str, Callable[[], float]]] = [
        (
            "decode_fps",
            lambda: decode_limit(
                setup, count, not setup.args.plain_decode, setup.args.decoder_threads
            ),
        ),
        # what the stage's decoder options gain: plain PyAV (deblocking, FFmpeg's threads)
        ("decode_fps_plain", lambda: decode_limit(setup, count, False, 0)),
        ("vmap_windows_per_s", lambda: runner_rate(vmapped, batches, seconds)),
        ("loop_windows_per_s", lambda: runner_rate(looped, batches, seconds)),
    ]
    result: dict[str, float] = {}
    for name, step in reversed(steps) if reverse else steps:
        result[name] = step()
    # A model that cannot run under vmap falls back to the loop even when vmap is asked for.
    result["vmap_worked"] = float(all(m == "vmap" for m in vmapped.modes().values()))
    log(
        f"  limits: decode {result['decode_fps']:.0f} frames/s"
        f" (plain PyAV {result['decode_fps_plain']:.0f}), model: one grouped call"
        f" {result['vmap_windows_per_s']:.0f} windows/s, one call per camera"
        f" {result['loop_windows_per_s']:.0f} windows/s"
    )
    return result


def combine_limits(
    count: int, samples: list[dict[str, float]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    med = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    parts = {
        "offered": float(count * ANALYSIS_FPS),
        "decode": med["decode_fps"] * ANALYSIS_FPS / FPS,
        "model": max(med["vmap_windows_per_s"], med["loop_windows_per_s"]),
    }
    separate = min(parts, key=lambda k: parts[k])
    # decode and scoring share the same cores: an analysed frame costs FPS / ANALYSIS_FPS
    # decoded frames *and* a window scored, so the ceiling is the sum of the two times
    shared = 1.0 / (1.0 / parts["decode"] + 1.0 / parts["model"])
    limiting = "offered" if parts["offered"] <= shared else "shared cores (decode + model)"
    limits = {
        "limit": min(parts["offered"], shared),
        "limiting": limiting,
        "shared_core_limit": shared,
        "cameras_at_limit": shared / ANALYSIS_FPS,
        "limit_separate": parts[separate],  # the old figure: each part alone on all cores
        "limiting_separate": separate,
        "offered_fps": parts["offered"],
        "decode_fps": med["decode_fps"],
        "decode_fps_plain": med["decode_fps_plain"],
        "decode_analysable_fps": parts["decode"],
        "model_windows_per_s": parts["model"],
        "samples": samples,
    }
    vmap = {
        "vmap_windows_per_s": med["vmap_windows_per_s"],
        "loop_windows_per_s": med["loop_windows_per_s"],
        "ratio": med["vmap_windows_per_s"] / med["loop_windows_per_s"],
        "vmap_worked": all(s["vmap_worked"] for s in samples),
    }
    return limits, vmap


# --------------------------------------------------------------------------- the naive loop
@dataclass
class Tally:
    frames: int = 0
    scored: int = 0
    wait_s: float = 0.0  # network, or pacing a file to real time
    decode_s: float = 0.0  # decode + convert
    score_s: float = 0.0
    errors: int = 0


class NaiveReader:
    """One camera of the naive loop: a PyAV reader that decodes every frame it gets."""

    def __init__(self, target: str, live: bool, model: AnomalyModel) -> None:
        kwargs: dict[str, Any] = {}
        if live:
            kwargs = rtsp_open_args("tcp", RTSP_TIMEOUT_S, RTSP_TIMEOUT_S)
        self.live, self.model = live, model
        self.container = av.open(target, **kwargs)
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self.packets = self.container.demux(self.stream)
        self.pending: list[Any] = []
        self.window: collections.deque[np.ndarray] = collections.deque(maxlen=model.context + 1)
        self.origin: tuple[float, float] | None = None  # (monotonic, stream s) of its first frame
        self.offset = self.last_s = 0.0  # file loops: stream time keeps increasing
        self.lag = self.stream_s = 0.0
        self.frames = 0

    def close(self) -> None:
        self.container.close()

    def _frame(self, tally: Tally) -> Any:
        while not self.pending:
            t0 = time.perf_counter()
            try:
                packet = next(self.packets)
            except StopIteration:
                if self.live:
                    raise RuntimeError("live stream ended") from None
                self.container.seek(0)
                self.stream.codec_context.flush_buffers()
                self.packets = self.container.demux(self.stream)
                self.offset = self.last_s + 1.0 / FPS
                continue
            t1 = time.perf_counter()
            try:
                self.pending.extend(self.stream.codec_context.decode(packet))
            except av.FFmpegError:  # a damaged packet (the server dropped some): skip it
                tally.errors += 1
            tally.wait_s += t1 - t0
            tally.decode_s += time.perf_counter() - t1
        return self.pending.pop(0)

    def step(self, tally: Tally) -> None:
        """Read (decode) the next frame, convert it, score it alone."""
        frame = self._frame(tally)
        t0 = time.perf_counter()
        out = np.empty(OUT_SHAPE, np.uint8)
        av_frame_into(frame, out)
        self.window.append(out)
        tally.decode_s += time.perf_counter() - t0
        self.last_s = (frame.time or 0.0) + self.offset
        now = time.monotonic()
        if self.origin is None:
            self.origin = (now, self.last_s)
        self.stream_s = self.last_s - self.origin[1]
        ahead = self.stream_s - (now - self.origin[0])
        if not self.live and ahead > 0:  # a file is paced at real time, like a camera
            time.sleep(ahead)
            tally.wait_s += ahead
        self.lag = time.monotonic() - self.origin[0] - self.stream_s
        self.frames += 1
        tally.frames += 1
        if len(self.window) == self.window.maxlen:
            t0 = time.perf_counter()
            with torch.inference_mode():
                float(self.model(torch.from_numpy(np.stack(self.window))[None]).score[0])
            tally.score_s += time.perf_counter() - t0
            tally.scored += 1


def open_naive(setup: Setup, count: int) -> list[NaiveReader]:
    models = [load_checkpoint(setup.models_dir / n)[0] for n in camera_names(count)]
    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [
            pool.submit(NaiveReader, setup.target(i), setup.live, models[i]) for i in range(count)
        ]
    readers, errors = [], []
    for future in futures:
        try:
            readers.append(future.result())
        except (av.FFmpegError, OSError) as exc:
            errors.append(exc)
    if errors:
        for reader in readers:
            reader.close()
        raise RuntimeError(f"naive readers failed to open: {errors[:3]}")
    return readers


def run_naive(setup: Setup, count: int, threads: int) -> dict[str, Any]:
    """The plain sequential loop over ``count`` cameras for warm-up + the measured window."""
    torch.set_num_threads(threads)  # the same as the pipeline's model threads
    readers = open_naive(setup, count)
    tally = Tally()
    try:
        ends = time.monotonic() + setup.args.warmup
        while time.monotonic() < ends:
            for reader in readers:
                reader.step(tally)
        start = (Tally(**vars(tally)), [(r.lag, r.stream_s, r.frames) for r in readers])
        t0 = time.monotonic()
        while time.monotonic() - t0 < setup.args.seconds:
            for reader in readers:
                reader.step(tally)
        seconds = time.monotonic() - t0
    finally:
        for reader in readers:
            reader.close()
    first, marks = start
    frames, scored = tally.frames - first.frames, tally.scored - first.scored
    t_decode = (tally.decode_s - first.decode_s) / frames
    t_score = (tally.score_s - first.score_s) / scored
    expected = [(r.stream_s - s) * FPS for r, (_, s, _) in zip(readers, marks, strict=True)]
    lost = sum(expected) - frames
    growth = [r.lag - lag for r, (lag, _, _) in zip(readers, marks, strict=True)]
    result = {
        "cameras": count,
        "scored_fps": scored / seconds,
        "decoded_fps": frames / seconds,
        "t_decode_ms": 1000 * t_decode,
        "t_score_ms": 1000 * t_score,
        "wait_share": (tally.wait_s - first.wait_s) / seconds,
        "cameras_sustainable": 1.0 / (FPS * (t_decode + t_score)),
        "lag_growth_s": statistics.fmean(growth),
        "lag_growth_per_s": statistics.fmean(growth) / seconds,
        "lag_end_s": statistics.fmean(r.lag for r in readers),
        "stream_frames_lost_pct": 100 * lost / max(sum(expected), 1.0),
        "decode_errors": tally.errors - first.errors,
    }
    log(
        f"  naive: {result['scored_fps']:.1f} scored frames/s, decode {result['t_decode_ms']:.2f}"
        f" + score {result['t_score_ms']:.2f} ms/frame -> {result['cameras_sustainable']:.2f}"
        f" cameras at real time; lag grew {result['lag_growth_s']:.2f} s"
    )
    return result


# --------------------------------------------------------------------------- one camera count
def run_count(setup: Setup, count: int) -> dict[str, Any]:
    """Limits, pipeline, naive loop, limits again (reverse order), for ``count`` cameras."""
    threads = stage_threads(build_config(setup, count))
    log(f"{count} cameras: load average {os.getloadavg()[0]:.2f}")
    load = [round(x, 2) for x in os.getloadavg()]
    samples = [measure_limits(setup, count, threads, reverse=False)]
    try:
        pipeline = run_pipeline(setup, count)
    except RuntimeError as exc:
        log(f"  pipeline failed: {exc}")
        pipeline = {"cameras": count, "held": False, "error": str(exc), "analysed_fps": 0.0}
    else:
        log(
            f"  pipeline: {pipeline['analysed_fps']:.1f} analysed/s of"
            f" {pipeline['offered_fps']:.1f} offered, misses {pipeline['deadline_misses']}"
            f" (superseded {pipeline['superseded']:.0f}), latency p50"
            f" {pipeline['latency_p50_s']:.3f} p99 {pipeline['latency_p99_s']:.3f} s, CPU"
            f" {pipeline['cpu_cores']:.2f} cores (machine {pipeline['machine_busy_cores']:.2f}),"
            f" held: {pipeline['held']} {pipeline['checks']}; all processes"
            f" {pipeline['all_processes_cpu_cores']:.2f} cores, kernel"
            f" {100 * pipeline['kernel_share']:.0f} %, {pipeline['context_switches_per_s']:.0f}"
            f" context switches/s ({pipeline['capture_processes']} capture processes)"
        )
    try:
        naive = run_naive(setup, count, threads)
    except (av.FFmpegError, OSError, RuntimeError) as exc:
        log(f"  naive loop failed: {exc}")
        naive = {"cameras": count, "error": str(exc)}
    samples.append(measure_limits(setup, count, threads, reverse=True))
    limits, vmap = combine_limits(count, samples)
    pipeline["ratio_to_limit"] = pipeline["analysed_fps"] / limits["limit"]
    log(
        f"  ratio to limit {pipeline['ratio_to_limit']:.3f} (limit {limits['limit']:.1f}/s,"
        f" {limits['limiting']}); grouped call vs per-camera loop {vmap['ratio']:.2f}x"
    )
    return {**pipeline, "loadavg_at_start": load, "limits": limits, "vmap": vmap, "naive": naive}


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline: the highest count that held (else the first tried), and the targets."""
    held = [r for r in runs if r["held"]]
    head = held[-1] if held else runs[0]
    sustained = held[-1]["cameras"] if held else 0
    naive = head["naive"]
    naive_cameras = naive.get("cameras_sustainable")
    speedup = sustained / naive_cameras if naive_cameras else None
    naive_fps = naive.get("scored_fps")
    by_count = {r["cameras"]: r for r in runs}
    at16 = by_count.get(16)
    keys = ["analysed_fps", "deadline_misses", "latency_p50_s", "latency_p99_s", "ratio_to_limit"]
    return {
        "cameras": head["cameras"],
        **{k: head.get(k) for k in keys},
        "speedup_vs_naive": speedup,
        "cameras_sustained": sustained,
        # the shared-core ceiling in cameras, at the count reported (measured in the same run)
        "cameras_at_limit": head["limits"]["cameras_at_limit"],
        "sustained_over_at_limit": sustained / head["limits"]["cameras_at_limit"],
        "naive_cameras_sustainable": naive_cameras,
        "throughput_ratio_vs_naive": head["analysed_fps"] / naive_fps if naive_fps else None,
        "cpu_pct": head.get("cpu_pct"),
        "vmap_ratio": head["vmap"]["ratio"],
        "targets": {
            "16_cameras_held": None if at16 is None else at16["held"],
            "ratio_to_limit_ge_0.85": head["ratio_to_limit"] >= 0.85,
            "sustained_ge_0.9_at_limit": sustained >= 0.9 * head["limits"]["cameras_at_limit"],
            "speedup_vs_naive_ge_3": speedup is not None and speedup >= 3,
            # None when the model cannot run under vmap (both ways were one call per camera)
            "vmap_beats_loop": head["vmap"]["ratio"] > 1 if head["vmap"]["vmap_worked"] else None,
        },
        "cameras_tried": [r["cameras"] for r in runs],
    }


# --------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cameras", default="16,24,28,32,36", help="camera counts, tried in increasing order"
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each window")
    parser.add_argument("--limit-seconds", type=float, default=3.0, help="per limit sample")
    parser.add_argument("--source", choices=["rtsp", "file"], default="rtsp")
    parser.add_argument("--mounts", type=int, default=1, help="RTSP mounts the cameras share")
    parser.add_argument("--frames", type=int, default=250, help="frames in the test clip")
    parser.add_argument(
        "--switch-interval",
        type=float,
        default=None,
        help="sys.setswitchinterval for the whole run (seconds; Python's default is 0.005)",
    )
    parser.add_argument(
        "--capture-processes",
        default="auto",
        help="capture.processes (the product's default: auto, one per core; 0: threads); a list"
        " (0,auto) runs each count with each, side by side, and summarises the first",
    )
    parser.add_argument(
        "--capture-nice", type=int, default=0, help="capture.nice (the product's default: 0)"
    )
    parser.add_argument(
        "--plain-decode",
        action="store_true",
        help="capture.fast_decode: false (decoders keep the deblocking filter)",
    )
    parser.add_argument(
        "--backlog",
        type=int,
        default=InferenceConfig().backlog,
        help="inference.backlog (the product's default: %(default)s)",
    )
    parser.add_argument(
        "--max-batch",
        type=int,
        default=InferenceConfig().max_batch,
        help="inference.max_batch (the product's default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=InferenceConfig().threads,
        help="inference.threads: torch threads of the scoring (the product's default: all but"
        " one core)",
    )
    parser.add_argument(
        "--decoder-threads",
        type=lambda v: v if v == "auto" else int(v),
        default="auto",
        help="capture.decoder_threads (the product's default: auto); also used by the decode limit",
    )
    parser.add_argument(
        "--no-clips",
        action="store_true",
        help="cameras keep no footage for event clips (streamdet run keeps it by default)",
    )
    parser.add_argument(
        "--kind",
        choices=sorted(MODEL_KINDS),
        default=DEFAULT_KIND,
        help=f"model kind for every camera (default: the product's default, {DEFAULT_KIND})",
    )
    parser.add_argument(
        "--model-params", type=json.loads, default={}, help="JSON params for the model's spec"
    )
    parser.add_argument(
        "--substream",
        action="store_true",
        help="cameras held with 720p alone vs with a 640x360 detect substream and a 720p record"
        " stream per camera, in the same run (benchmarks/substream.py)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "streamdet-bench",
        help="where the test clip is cached",
    )
    args = parser.parse_args(argv)
    try:
        args.counts = sorted({int(c) for c in args.cameras.split(",")})
    except ValueError:
        parser.error(f"--cameras: expected counts like 4,8,16, got {args.cameras!r}")
    try:
        modes = args.capture_processes.split(",")
        args.capture_modes = [m if m == "auto" else int(m) for m in modes]
    except ValueError:
        parser.error(f"--capture-processes: expected auto or counts like 0,auto, got {modes!r}")
    if not isinstance(args.model_params, dict):
        parser.error("--model-params: expected a JSON object")
    if args.counts[0] < 1 or args.seconds <= 0 or args.limit_seconds <= 0 or args.mounts < 1:
        parser.error("camera counts and --mounts must be >= 1, --seconds > 0")
    if args.substream and args.source != "rtsp":
        parser.error("--substream: the record streams are RTSP (--source rtsp)")
    if args.source == "rtsp" and not os.path.exists(SYSTEM_PYTHON):
        parser.error(f"{SYSTEM_PYTHON} missing (GStreamer RTSP server): use --source file")
    return args


@contextmanager
def camera_sources(args: argparse.Namespace, clip: Path) -> Iterator[tuple[list[str], int | None]]:
    """RTSP mount URLs and the server's pid (stopped on exit), or no URLs for --source file."""
    if args.source == "file":
        yield [], None
        return
    server = RtspServer({f"/cam{k}": str(clip) for k in range(args.mounts)})
    log(f"rtsp: starting the GStreamer RTSP server on 127.0.0.1:{server.port}")
    try:
        server.start()
        pid = server.proc.pid if server.proc is not None else None
        yield [server.url(f"/cam{k}") for k in range(args.mounts)], pid
    finally:
        server.stop()
        log("rtsp: server stopped")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.switch_interval is not None:
        sys.setswitchinterval(args.switch_interval)
    if args.substream:
        from benchmarks.substream import run_substream  # it builds on this module

        return run_substream(args)
    started = time.monotonic()
    info = machine_info()
    log(f"machine: {info}")
    clip = prepare_clip(args.workdir, args.frames)
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="streamdet-pipeline-bench-") as tmp:
        models_dir = Path(tmp) / "models"
        model = train_models(
            clip, models_dir, camera_names(args.counts[-1]), args.kind, args.model_params
        )
        frames = read_clip(clip, OUT_SHAPE[1], OUT_SHAPE[0])
        with camera_sources(args, clip) as (urls, pid):
            setup = Setup(clip, models_dir, frames, urls, args, pid)
            for count in args.counts:
                for mode in args.capture_modes:  # side by side: the first one is summarised
                    log(f"capture.processes: {mode}")
                    args.capture_processes = mode
                    runs.append(run_count(setup, count) | {"capture_processes_setting": mode})
                if not any(r["held"] for r in runs[-len(args.capture_modes) :]):
                    log(f"{count} cameras did not hold: stopping")
                    break
    result = summarise([r for r in runs if r["capture_processes_setting"] == args.capture_modes[0]])
    result["side_by_side"] = [{k: r.get(k) for k in SIDE_BY_SIDE} for r in runs]
    log(f"summary: {json.dumps(_rounded(result))}")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    clip_info = {"width": 1280, "height": 720, "fps": FPS, "frames": args.frames}
    result.update(runs=runs, model=model, settings=settings, clip=clip_info, machine=info)
    result["elapsed_s"] = time.monotonic() - started
    print(json.dumps(_rounded(result)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
