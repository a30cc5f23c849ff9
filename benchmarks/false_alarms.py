"""False alarms and pasted-anomaly recall on real footage, through the product end to end.

For each clip of ``--data`` (default ``../shared/data/real``; every clip is ordinary footage,
so every event in its watched part is a false alarm):

1. its first 60 % is written to a file and learned with ``streamdet train --footage`` (the
   default model, calibrated for the default budget at the camera's ``analysis_fps``);
2. ``streamdet run`` plays the remaining 40 % of every clip at once, in real time, as file
   cameras that do not loop, and every anomaly event is counted (``events.jsonl``; camera-health
   events are counted apart, ``health_events``);
3. a second ``streamdet run`` plays copies of the watched parts with one anomaly pasted into
   each (``streamdet.eval.pasted``: the clip's own objects, too fast, at a place nobody goes,
   2.5x too large, left behind), one camera per copy; an anomaly is caught when its camera
   raises an event between 1 s before it appears and 5 s after it is gone.

Progress goes to stderr; the last stdout line is one JSON object (clips, watched_s, events,
budget_per_hour, events_per_hour, pasted, caught, recall, per clip).

    python benchmarks/false_alarms.py [--data DIR] [--model KIND] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np

from streamdet.eval.pasted import PASTED_KINDS, pasted_set
from streamdet.learning.videos import clip_fps, video_files

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared/data/real"
STREAMDET = str(Path(sys.executable).with_name("streamdet"))
BUDGET_PER_HOUR = 1.0  # the default models.false_events_per_hour


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def decode(path: Path) -> np.ndarray:
    """Every frame of a video as grey (N, H, W), even-sized for the H.264 encoder."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
    stack = np.stack(frames)
    h, w = stack.shape[1] // 2 * 2, stack.shape[2] // 2 * 2
    return np.ascontiguousarray(stack[:, :h, :w])


def encode(frames: np.ndarray, fps: float, path: Path) -> Path:
    """Grey frames to an H.264 MP4 at ``fps`` (CRF 18, as the shared clips are)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
        stream.height, stream.width = frames.shape[1:]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "g": str(max(int(fps * 2), 1))}
        for pixels in frames:
            frame = av.VideoFrame.from_ndarray(pixels, format="gray").reformat(format="yuv420p")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def config(folder: Path, cameras: dict[str, Path], model: str) -> Path:
    lines = ["cameras:"]
    for name, path in cameras.items():
        lines += [
            f"  - name: {name}",
            "    source: {kind: file, path: " + json.dumps(str(path)) + ", loop: false}",
        ]
    lines += [
        "models:",
        f"  dir: {json.dumps(str(folder / 'models'))}",
        f"  kind: {model}",
        "  learn_in_place: false",
        "alerts:",
        f"  dir: {json.dumps(str(folder / 'alerts'))}",
        "  sinks: [{kind: jsonl, name: file, path: events.jsonl}]",
        "  clips: {enabled: false}",
        "server: {host: 127.0.0.1, port: 0}",
    ]
    path = folder / "streamdet.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def train(cfg: Path, camera: str, footage: Path) -> dict[str, Any]:
    result = subprocess.run(
        [
            STREAMDET,
            "train",
            "--config",
            str(cfg),
            "--camera",
            camera,
            "--quiet",
            "--footage",
            str(footage),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        return {"error": (result.stderr or result.stdout).strip().splitlines()[-1:]}
    return {"trained": result.stdout.strip().splitlines()}


def run(cfg: Path, seconds: float) -> tuple[float, list[dict[str, Any]]]:
    """``streamdet run`` until it exits by itself (its file cameras ended) or ``seconds`` plus
    a margin have passed (then SIGINT); its start time and every event it recorded."""
    started = time.time()
    proc = subprocess.Popen(
        [STREAMDET, "run", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        proc.wait(timeout=seconds + 30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    if proc.returncode not in (0, -signal.SIGINT, 130):
        errors = proc.stderr.read() if proc.stderr else ""
        log(f"streamdet run exited {proc.returncode}: {errors[-2000:]}")
    events_file = cfg.parent / "alerts" / "events.jsonl"
    records = (
        [json.loads(line) for line in events_file.read_text().splitlines()]
        if events_file.exists()
        else []
    )
    started_events = {r["id"]: r for r in records if r.get("change") == "started"}
    return started, list(started_events.values())


def is_anomaly(event: dict[str, Any]) -> bool:
    """An anomaly event (not a camera-health one; records from before health events have no
    kind)."""
    return event.get("kind", "anomaly") == "anomaly"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", default="objects")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="keep the working folder here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="false_alarms_")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    clips: dict[str, dict[str, Any]] = {}
    watch: dict[str, Path] = {}
    pasted: dict[str, tuple[str, str, float, float]] = {}  # camera -> clip, kind, start, end
    for path in video_files(args.data):
        name = path.stem.replace("_", "-")
        fps = clip_fps(path)
        frames = decode(path)
        cut = int(len(frames) * 0.6)
        encode(frames[:cut], fps, work / "footage" / f"{name}-learn.mp4")
        watch[name] = encode(frames[cut:], fps, work / "footage" / f"{name}-watch.mp4")
        clips[name] = {
            "clip": path.name,
            "fps": fps,
            "watched_s": round((len(frames) - cut) / fps, 1),
        }
        for item in pasted_set(frames[:cut], frames[cut:], fps, seed=args.seed):
            camera = f"{name}-{item.kind}"
            shown = np.flatnonzero(item.labels)
            encode(item.frames, fps, work / "footage" / f"{camera}.mp4")
            pasted[camera] = (name, item.kind, shown[0] / fps, (shown[-1] + 1) / fps)
        log(f"{name}: {len(frames)} frames at {fps:g} fps; learn {cut}, watch {len(frames) - cut}")
    normal_run = work / "normal"
    normal_run.mkdir(exist_ok=True)
    cfg = config(normal_run, watch, args.model)
    for name in watch:
        started = time.perf_counter()
        clips[name].update(train(cfg, name, work / "footage" / f"{name}-learn.mp4"))
        clips[name]["train_s"] = round(time.perf_counter() - started, 1)
        log(f"  {name}: {clips[name]}")
    trained = [n for n in watch if "error" not in clips[n]]
    longest = max(clips[n]["watched_s"] for n in trained)
    cfg = config(normal_run, {n: watch[n] for n in trained}, args.model)
    log(f"run: {len(trained)} cameras, {longest:.0f} s")
    _, events = run(cfg, longest)
    for name in trained:
        clips[name]["events"] = [
            {"start": e["start"], "reason": e.get("reason"), "peak_score": e["peak_score"]}
            for e in events
            if e["camera"] == name and is_anomaly(e)
        ]
        clips[name]["health_events"] = [
            {"start": e["start"], "condition": e.get("condition"), "reason": e.get("reason")}
            for e in events
            if e["camera"] == name and not is_anomaly(e)
        ]
    # pasted anomalies: the same models, one camera per pasted copy
    paste_run = work / "pasted"
    (paste_run / "models").mkdir(parents=True, exist_ok=True)
    cameras = {c: work / "footage" / f"{c}.mp4" for c, (n, *_) in pasted.items() if n in trained}
    for camera in cameras:
        shutil.copytree(normal_run / "models" / pasted[camera][0], paste_run / "models" / camera)
    cfg = config(paste_run, cameras, args.model)
    log(f"run with pasted anomalies: {len(cameras)} cameras")
    t0, events = run(cfg, longest)
    results = []
    for camera in cameras:
        name, kind, start, end = pasted[camera]
        near = [
            e for e in events if e["camera"] == camera and start - 1 <= e["start"] - t0 <= end + 5
        ]
        hits = [e for e in near if is_anomaly(e)]
        results.append(
            {
                "clip": name,
                "kind": kind,
                "caught": bool(hits),
                "reasons": [e.get("reason") for e in hits],
                # camera-health events (not anomalies) the pasted object set off, e.g. "moved"
                "health": [e.get("condition") for e in near if not is_anomaly(e)],
            }
        )
        log(f"  {results[-1]}")
    watched_s = sum(clips[n]["watched_s"] for n in trained)
    false_events = sum(len(clips[n]["events"]) for n in trained)
    summary = {
        "model": args.model,
        "clips": len(clips),
        "clips_learned": len(trained),
        "watched_s": round(watched_s, 1),
        "events": false_events,
        "health_events": sum(len(clips[n]["health_events"]) for n in trained),
        "budget_per_hour": BUDGET_PER_HOUR,
        "events_per_hour": round(false_events / (watched_s / 3600), 1) if watched_s else None,
        "pasted": len(results),
        "caught": sum(r["caught"] for r in results),
        "recall": round(sum(r["caught"] for r in results) / len(results), 3) if results else None,
        "pasted_kinds": list(PASTED_KINDS),
        "per_clip": clips,
        "per_pasted": results,
        "note": "event start times are wall times; a pasted anomaly's window is measured from "
        "the run's start (time to first frame ~1 s, inside the 1 s / 5 s tolerance)",
    }
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
