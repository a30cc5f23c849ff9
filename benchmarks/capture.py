"""What the capture stage costs over the bare decode limit, on this machine.

The capture stage wraps each camera's decoder in a thread with supervision (a state machine,
reconnects, a stall watchdog), a preallocated ring with a commit lock, an analysis-rate limiter
and per-frame stats. None of that should cost much next to decoding 720p H.264, which is the
real limit on a small CPU. This benchmark measures how close the stage gets to that limit.

Files at full speed (``realtime: false``, ``loop: true``), K copies of one 1280x720 clip:

* ``bare``: K threads, each ``av.open`` with the stage's default decoder options
  (``capture.fast_decode``: no deblocking; ``capture.decoder_threads``: one thread per decoder
  when K >= cores, else FFmpeg's choice), decoding and converting every
  frame exactly as the stage does (``av_frame_into`` into one 320x240 grey buffer), nothing else.
  This is the decode limit the stage is compared with (``ratio_to_decode_limit``).
* ``decode_only``: the same threads without the conversion (``ratio_to_decode_only``).
* ``stage``: a ``CaptureStage`` with K file cameras built from a config dict; frames are counted
  from ``stage.worker(name).stats.frames``.

Every variant is measured over the same wall-time window after a warm-up, interleaved and
repeated (bare, decode_only, stage, then the reverse order, ...) because the machine is shared
and noisy; the median of each variant is reported. Process CPU time per frame is reported too.

RTSP: one GStreamer RTSP server (``benchmarks/common.py``, 127.0.0.1 only) serves the clip
at one shared mount, read by K clients. Live streams run at 25 fps, so the bare readers and the
stage should both reach about K*25 frames/s; the interesting figures are that they do, the CPU
each spends per frame, and the stage's mean time to first frame.

Run from the repository root: ``python benchmarks/capture.py [--cameras 8]``. Progress goes to
stderr; the last line of stdout is one JSON object with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av
import cv2
import numpy as np

from benchmarks.common import SYSTEM_PYTHON, RtspServer
from benchmarks.media import make_scene_clip
from streamdet.capture.convert import av_frame_into
from streamdet.capture.sources import (
    resolve_decoder_threads,
    rtsp_open_args,
    set_decoder_threads,
)
from streamdet.capture.stage import CaptureStage
from streamdet.config import parse_config

WIDTH, HEIGHT, FPS, GOP = 1280, 720, 25, 50
OUT_SHAPE = (240, 320)  # the stage's default frame: 320x240 grey
RTSP_TIMEOUT_S = 5.0  # open and read timeouts of every RTSP reader
FIRST_FRAME_DEADLINE_S = 15.0  # live streams: give up waiting for first frames after this


def log(message: str) -> None:
    print(f"[capture-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- measuring
@dataclass
class Sample:
    """One measured window of one variant."""

    variant: str
    fps: float  # frames/s summed over all streams
    min_stream_fps: float  # the slowest stream (fairness between threads)
    cpu_ms_per_frame: float  # process CPU time (all threads) per frame
    first_frame_s: float | None = None  # mean over streams, live sources only

    def as_dict(self) -> dict[str, Any]:
        return {k: _round(v) for k, v in self.__dict__.items()}


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def measure(variant: str, counts: Callable[[], list[int]], seconds: float) -> Sample:
    """Frames/s over ``seconds`` of wall time, from per-stream frame counters."""
    before, cpu0, t0 = counts(), time.process_time(), time.monotonic()
    time.sleep(seconds)
    after, cpu1, t1 = counts(), time.process_time(), time.monotonic()
    deltas = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(deltas)
    return Sample(
        variant=variant,
        fps=total / (t1 - t0),
        min_stream_fps=min(deltas) / (t1 - t0),
        cpu_ms_per_frame=1000.0 * (cpu1 - cpu0) / total if total else float("nan"),
    )


def wait_first_frames(counts: Callable[[], list[int]], deadline_s: float) -> None:
    """Block until every stream delivered a frame (bounded)."""
    deadline = time.monotonic() + deadline_s
    while min(counts()) == 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"not every stream delivered a frame within {deadline_s:.0f} s")
        time.sleep(0.05)


# --------------------------------------------------------------------------- bare readers
@dataclass
class Reader:
    """Counters of one bare reader thread."""

    frames: int = 0
    first_frame_s: float | None = None
    error: str | None = None
    thread: threading.Thread | None = field(default=None, repr=False)


def bare_read(
    target: str,
    reader: Reader,
    stop: threading.Event,
    *,
    convert: bool,
    live: bool,
    fast_decode: bool = True,
    decoder_threads: int = 0,
) -> None:
    """Decode ``target`` (looping a file) and optionally convert like the stage; count frames.
    ``fast_decode`` skips the deblocking filter and ``decoder_threads`` sets the decoder's
    threads (0: FFmpeg's choice), as the stage does."""
    out = np.zeros(OUT_SHAPE, np.uint8)
    started = time.monotonic()
    kwargs: dict[str, Any] = {}
    if live:
        kwargs = rtsp_open_args("tcp", RTSP_TIMEOUT_S, RTSP_TIMEOUT_S)
    try:
        with av.open(target, **kwargs) as container:
            stream = container.streams.video[0]
            set_decoder_threads(stream, decoder_threads)
            if fast_decode:
                stream.codec_context.options = {"skip_loop_filter": "all"}
            while not stop.is_set():
                for frame in container.decode(stream):
                    if convert:
                        av_frame_into(frame, out)
                    reader.frames += 1
                    if reader.first_frame_s is None:
                        reader.first_frame_s = time.monotonic() - started
                    if stop.is_set():
                        return
                if live:
                    raise RuntimeError("live stream ended")
                container.seek(0)
    except (av.FFmpegError, OSError, RuntimeError) as exc:
        reader.error = f"{type(exc).__name__}: {exc}"


@contextmanager
def bare_readers(
    targets: list[str],
    *,
    convert: bool,
    live: bool,
    fast_decode: bool = True,
    decoder_threads: int | str = "auto",
) -> Iterator[list[Reader]]:
    """K bare reader threads, stopped and joined on exit. ``decoder_threads`` is resolved for K
    cameras as the stage resolves ``capture.decoder_threads``."""
    threads = resolve_decoder_threads(decoder_threads, len(targets))
    stop = threading.Event()
    readers = [Reader() for _ in targets]
    for i, (target, reader) in enumerate(zip(targets, readers, strict=True)):
        reader.thread = threading.Thread(
            target=bare_read,
            args=(target, reader, stop),
            kwargs={
                "convert": convert,
                "live": live,
                "fast_decode": fast_decode,
                "decoder_threads": threads,
            },
            name=f"bare:{i}",
            daemon=True,
        )
        reader.thread.start()
    try:
        yield readers
    finally:
        stop.set()
        for reader in readers:
            assert reader.thread is not None
            reader.thread.join(2 * RTSP_TIMEOUT_S)
        errors = [r.error for r in readers if r.error]
        if errors:
            log(f"bare reader errors: {errors[:3]}")


# --------------------------------------------------------------------------- the stage
def build_stage(sources: list[dict[str, Any]]) -> CaptureStage:
    """A CaptureStage from a config dict, as a config file (and ``streamdet run``, which keeps
    footage for event clips by default) would build it."""
    cameras = [
        {"name": f"cam{i}", "source": source, "analysis_fps": 5} for i, source in enumerate(sources)
    ]
    config = parse_config({"cameras": cameras}, check_paths=False)
    return CaptureStage(config.cameras, config.capture, clips=config.alerts.clips)


def stage_counts(stage: CaptureStage) -> Callable[[], list[int]]:
    return lambda: [stage.worker(name).stats.frames for name in stage.cameras]


def file_source(path: Path) -> dict[str, Any]:
    return {"kind": "file", "path": str(path), "loop": True, "realtime": False}


def rtsp_source(url: str) -> dict[str, Any]:
    return {
        "kind": "rtsp",
        "url": url,
        "transport": "tcp",
        "open_timeout_s": RTSP_TIMEOUT_S,
        "read_timeout_s": RTSP_TIMEOUT_S,
    }


def run_stage(sources: list[dict[str, Any]], warmup: float, seconds: float, live: bool) -> Sample:
    stage = build_stage(sources)
    stage.start()
    try:
        counts = stage_counts(stage)
        if live:
            wait_first_frames(counts, FIRST_FRAME_DEADLINE_S)
        time.sleep(warmup)
        sample = measure("stage", counts, seconds)
        if live:
            firsts = [s.first_frame_s for s in stage.status() if s.first_frame_s is not None]
            sample.first_frame_s = statistics.fmean(firsts) if firsts else None
    finally:
        stage.stop()
    return sample


def run_bare(
    variant: str, targets: list[str], warmup: float, seconds: float, *, convert: bool, live: bool
) -> Sample:
    with bare_readers(targets, convert=convert, live=live) as readers:

        def counts() -> list[int]:
            return [r.frames for r in readers]

        if live:
            wait_first_frames(counts, FIRST_FRAME_DEADLINE_S)
        time.sleep(warmup)
        sample = measure(variant, counts, seconds)
        firsts = [r.first_frame_s for r in readers if r.first_frame_s is not None]
        if live and firsts:
            sample.first_frame_s = statistics.fmean(firsts)
    return sample


# --------------------------------------------------------------------------- scenarios
def run_variant(
    variant: str, targets: list[str], sources: list[dict[str, Any]], args: argparse.Namespace
) -> Sample:
    live = variant.startswith("rtsp_")
    name = variant.removeprefix("rtsp_")
    if name == "stage":
        sample = run_stage(sources, args.warmup, args.seconds, live)
    else:
        convert = name == "bare"
        sample = run_bare(name, targets, args.warmup, args.seconds, convert=convert, live=live)
    sample.variant = variant
    extra = f", first frame {sample.first_frame_s:.2f} s" if sample.first_frame_s else ""
    log(
        f"  {variant:>14}: {sample.fps:7.1f} frames/s (slowest stream {sample.min_stream_fps:.1f}),"
        f" {sample.cpu_ms_per_frame:.2f} ms CPU/frame{extra}"
    )
    return sample


def file_benchmark(clip: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Bare, decode-only and stage on K looping files, interleaved ABC CBA ..., medians."""
    targets = [str(clip)] * args.cameras
    sources = [file_source(clip) for _ in targets]
    order = ["bare", "decode_only", "stage"]
    samples: dict[str, list[Sample]] = {v: [] for v in order}
    for repeat in range(args.repeats):
        log(f"files, repeat {repeat + 1}/{args.repeats} ({args.cameras} streams, full speed)")
        for variant in order if repeat % 2 == 0 else order[::-1]:
            samples[variant].append(run_variant(variant, targets, sources, args))
    med = {v: statistics.median(s.fps for s in samples[v]) for v in order}
    cpu = {v: statistics.median(s.cpu_ms_per_frame for s in samples[v]) for v in order}
    result = {
        "file_stage_fps": med["stage"],
        "file_bare_fps": med["bare"],
        "file_decode_only_fps": med["decode_only"],
        "ratio_to_decode_limit": med["stage"] / med["bare"],
        "ratio_to_decode_only": med["stage"] / med["decode_only"],
        "file_cpu_ms_per_frame": cpu,
        # CPU time per frame is less disturbed by other load on a shared machine than frames/s:
        # the same work costs the same CPU whoever else runs.
        "ratio_cpu_per_frame": cpu["bare"] / cpu["stage"],
        "file_samples": [s.as_dict() for v in order for s in samples[v]],
    }
    log(
        f"files: stage {med['stage']:.1f}, bare {med['bare']:.1f}, decode-only"
        f" {med['decode_only']:.1f} frames/s -> ratio to decode limit"
        f" {result['ratio_to_decode_limit']:.3f}, to decode-only"
        f" {result['ratio_to_decode_only']:.3f}; by CPU per frame"
        f" {result['ratio_cpu_per_frame']:.3f}"
    )
    return result


def rtsp_benchmark(clip: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Bare readers vs. the stage on K live RTSP clients of one shared mount."""
    server = RtspServer({"/cam": str(clip)})
    log(f"rtsp: starting the GStreamer RTSP server on 127.0.0.1:{server.port}")
    server.start()
    try:
        url = server.url("/cam")
        targets = [url] * args.cameras
        sources = [rtsp_source(url) for _ in targets]
        log(f"rtsp: {args.cameras} clients of {url} (live, {FPS} fps each)")
        bare = run_variant("rtsp_bare", targets, sources, args)
        stage = run_variant("rtsp_stage", targets, sources, args)
    finally:
        server.stop()
        log("rtsp: server stopped")
    return {
        "rtsp_stage_fps": stage.fps,
        "rtsp_bare_fps": bare.fps,
        "rtsp_expected_fps": float(args.cameras * FPS),
        "rtsp_ratio": stage.fps / bare.fps if bare.fps else None,
        "rtsp_first_frame_s": stage.first_frame_s,
        "rtsp_bare_first_frame_s": bare.first_frame_s,
        "rtsp_cpu_ms_per_frame": {"bare": bare.cpu_ms_per_frame, "stage": stage.cpu_ms_per_frame},
        "rtsp_samples": [bare.as_dict(), stage.as_dict()],
    }


def skipped_rtsp(reason: str) -> dict[str, Any]:
    log(f"rtsp: skipped ({reason})")
    keys = ["rtsp_stage_fps", "rtsp_bare_fps", "rtsp_ratio", "rtsp_first_frame_s"]
    return {**dict.fromkeys(keys), "rtsp_skipped": reason}


# --------------------------------------------------------------------------- main
def prepare_clip(workdir: Path, frames: int) -> Path:
    path = workdir / f"bench-scene-{WIDTH}x{HEIGHT}-{FPS}fps-gop{GOP}-{frames}f.mp4"
    if path.exists() and path.stat().st_size > 0:
        log(f"clip: reusing {path}")
        return path
    log(f"clip: encoding {frames} frames {WIDTH}x{HEIGHT} H.264 into {path}")
    started = time.monotonic()
    tmp = path.with_suffix(".tmp.mp4")
    # The synthetic scene (texture, sensor noise) decodes about as dearly as real footage.
    make_scene_clip(tmp, frames=frames, width=WIDTH, height=HEIGHT, fps=FPS, gop=GOP)
    tmp.replace(path)
    log(f"clip: done in {time.monotonic() - started:.1f} s")
    return path


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "av": av.__version__,
        "libavcodec": ".".join(str(v) for v in av.library_versions["libavcodec"]),
        "cv2": cv2.__version__,
        "numpy": np.__version__,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=8, help="streams per variant (K)")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured window per run")
    parser.add_argument("--warmup", type=float, default=1.5, help="seconds before each window")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved file repeats")
    parser.add_argument("--frames", type=int, default=500, help="frames in the test clip")
    parser.add_argument("--skip-rtsp", action="store_true", help="files only")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path(tempfile.gettempdir()) / "streamdet-bench",
        help="where the test clip is cached",
    )
    args = parser.parse_args(argv)
    if args.cameras < 1 or args.repeats < 1 or args.seconds <= 0:
        parser.error("--cameras and --repeats must be >= 1, --seconds > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    info = machine_info()
    log(f"machine: {info}")
    clip = prepare_clip(args.workdir, args.frames)
    result: dict[str, Any] = {"cameras": args.cameras}
    result.update(file_benchmark(clip, args))
    if args.skip_rtsp:
        result.update(skipped_rtsp("--skip-rtsp"))
    elif not os.path.exists(SYSTEM_PYTHON):
        result.update(skipped_rtsp(f"{SYSTEM_PYTHON} missing (GStreamer RTSP server)"))
    else:
        result.update(rtsp_benchmark(clip, args))
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    clip_info = {"width": WIDTH, "height": HEIGHT, "fps": FPS, "gop": GOP, "frames": args.frames}
    result.update(info, settings=settings, clip=clip_info)
    result["elapsed_s"] = time.monotonic() - started
    print(json.dumps(_rounded(result)), flush=True)
    return 0


def _rounded(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_rounded(v) for v in value]
    return _round(value)


if __name__ == "__main__":
    sys.exit(main())
