"""Capture on threads in one process vs in capture processes: CPU, kernel share, futex calls.

K RTSP cameras (one GStreamer server on 127.0.0.1, the 1280x720 25 fps clip of
``benchmarks/capture.py``) are captured by a ``CaptureStage`` with ``capture.processes`` 0 (every
camera's thread in this process) and then ``auto`` (one process per core), interleaved and
repeated. For each window: frames delivered per second (K x 25 is real time), CPU-ms per
camera-second over this process and its capture processes, the kernel's share of that CPU,
context switches per second, and a reader's wake-up lag (commit to ``stage.frames`` waking it).
With ``--strace``, one more window per mode counts ``futex`` and ``recvfrom`` calls
(``strace -f -c``; it slows what it traces, so that window's frame rate is not reported).

Run from the repository root: ``python benchmarks/capture_processes.py --cameras 16``. The last
line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.capture import machine_info, prepare_clip
from benchmarks.common import RtspServer
from benchmarks.proccpu import ProcCpu
from streamdet.capture.stage import CaptureStage
from streamdet.config import parse_config


def log(message: str) -> None:
    print(f"[capture-processes {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr)


def build(url: str, cameras: int, processes: int | str) -> CaptureStage:
    source = {"kind": "rtsp", "url": url, "open_timeout_s": 5, "read_timeout_s": 5}
    config = parse_config(
        {
            "cameras": [{"name": f"cam{i:02d}", "source": source} for i in range(cameras)],
            "capture": {"processes": processes},
            "alerts": {"clips": {"enabled": True}},
        },
        check_paths=False,
    )
    return CaptureStage(config.cameras, config.capture, clips=config.alerts.clips)


def wake_lags(stage: CaptureStage, stop: threading.Event, lags: list[float]) -> None:
    """A reader as the inference loop would be: woken by the signal, it takes the newest."""
    seen = stage.frames.generation
    while not stop.is_set():
        now_seen = stage.frames.wait(seen, 0.5)
        if now_seen == seen:
            continue
        seen = now_seen
        newest = [stage.ring(c).latest(analysable_only=True) for c in stage.cameras]
        walls = [r.wall_time for r in newest if r is not None]
        if walls:
            lags.append(time.time() - max(walls))


def window(stage: CaptureStage, seconds: float, strace: bool) -> dict[str, Any]:
    pids = [os.getpid(), *(p.pid for p in stage.processes if p.pid is not None)]
    frames0, cpu0 = sum(stage.ring(c).frames_written for c in stage.cameras), ProcCpu.now(pids)
    lags: list[float] = []
    stop = threading.Event()
    reader = threading.Thread(target=wake_lags, args=(stage, stop, lags), daemon=True)
    reader.start()
    tracer = None
    if strace:
        command = ["strace", "-f", "-c", "-e", "trace=futex,recvfrom,recvmsg"]
        for pid in pids:
            command += ["-p", str(pid)]
        tracer = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    started = time.monotonic()
    time.sleep(seconds)
    elapsed = time.monotonic() - started
    result: dict[str, Any] = {}
    if tracer is not None:
        tracer.send_signal(2)
        result["syscalls"] = strace_counts(tracer.communicate(timeout=30)[1])
    stop.set()
    reader.join(2)
    frames = sum(stage.ring(c).frames_written for c in stage.cameras) - frames0
    cpu = ProcCpu.now(pids).since(cpu0, elapsed)
    cameras = len(stage.cameras)
    return result | {
        "frames_per_s": frames / elapsed,
        "real_time_share": frames / elapsed / (25.0 * cameras),
        "cpu_ms_per_camera_s": 1000 * cpu["all_processes_cpu_cores"] / cameras,
        "kernel_share": cpu["kernel_share"],
        "context_switches_per_s": cpu["context_switches_per_s"],
        "wake_lag_p50_ms": 1000 * statistics.median(lags) if lags else None,
    }


def strace_counts(report: str) -> dict[str, int]:
    """Calls per syscall from ``strace -c``'s table."""
    counts = {}
    for line in report.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1] in ("futex", "recvfrom", "recvmsg"):
            counts[parts[-1]] = int(parts[3])
    return counts


def run_mode(url: str, args: argparse.Namespace, processes: int | str) -> list[dict[str, Any]]:
    stage = build(url, args.cameras, processes)
    with stage:
        deadline = time.monotonic() + 60
        while any(stage.ring(c).frames_written == 0 for c in stage.cameras):
            if time.monotonic() > deadline:
                raise RuntimeError("not every camera delivered a frame within 60 s")
            time.sleep(0.1)
        time.sleep(args.warmup)
        samples = [window(stage, args.seconds, strace=False)]
        if args.strace:
            samples.append(window(stage, min(args.seconds, 5.0), strace=True))
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved runs per mode")
    parser.add_argument("--strace", action="store_true", help="count futex/recvfrom calls")
    args = parser.parse_args(argv)
    info = machine_info()
    log(f"machine: {info}")
    clip = prepare_clip(Path(tempfile.gettempdir()) / "streamdet-bench", 250)
    server = RtspServer({"/cam": str(clip)})
    server.start()
    results: dict[str, list[dict[str, Any]]] = {"threads": [], "processes": []}
    try:
        for _ in range(args.repeats):
            for name, processes in (("threads", 0), ("processes", "auto")):
                for sample in run_mode(server.url("/cam"), args, processes):
                    sample["loadavg"] = os.getloadavg()[0]
                    log(f"{name}: {json.dumps(sample)}")
                    results[name].append(sample)
    finally:
        server.stop()
    print(json.dumps({"cameras": args.cameras, "machine": info, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
