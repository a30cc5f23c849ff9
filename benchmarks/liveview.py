"""The WebRTC live view seen from a real headless Chromium: first frame, frame rate, server memory.

A real ``streamdet run`` (one synthetic 320x240 camera at 25 fps, motion model learning for 8 s,
then detecting, so the heatmap overlay is drawn) serves the page on 127.0.0.1. Phases:

* ``idle``: no viewer, ``--idle`` seconds after the model detects (the server's baseline).
* ``one``: one tab shows the page, ``--seconds`` seconds.
* ``four``: three more tabs (four viewers of the same camera), ``--seconds`` seconds.

Measured:

* ``first_frame_s``: navigation start to the first video frame the page presents
  (``requestVideoFrameCallback``): page load, API calls, offer/answer, ICE, DTLS, first decode.
  For the first tab and (median) the three added ones.
* ``browser_fps``: frames decoded per second (``getStats`` inbound-rtp ``framesDecoded``) over
  each phase, per tab (the server sends ``server.webrtc.fps``, default 10).
* ``rss_mb``: the server process's resident memory (``/proc/PID/status`` VmRSS) sampled every
  2 s: first, last and max of each phase, and every 10 s; ``cpu_cores``: its CPU time / wall
  time.

Run from the repository root: ``python benchmarks/liveview.py [--seconds 60]`` (about
``idle + 2 x seconds + 20`` s). Needs Debian's chromium and chromedriver (``make system-deps``).
Progress goes to stderr; the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.browser import chromium, missing
from benchmarks.capture import _rounded, machine_info
from benchmarks.common import end_process, free_port

STREAMDET = str(Path(sys.executable).with_name("streamdet"))

# Resolves with ms since navigation start when the camera's <video> presents its first frame.
FIRST_FRAME = """
const done = arguments[arguments.length - 1];
const wait = () => {
  const v = document.querySelector("#cam-path video");
  if (!v) return setTimeout(wait, 10);
  v.requestVideoFrameCallback(now => done(now));
};
wait();
"""
# framesDecoded of the page's peer connection, and the stats' timestamp (ms).
DECODED = """
const done = arguments[arguments.length - 1];
const pc = peers.get("path");
if (!pc) return done(null);
pc.getStats().then(stats => {
  for (const s of stats.values())
    if (s.type === "inbound-rtp" && s.kind === "video")
      return done({frames: s.framesDecoded || 0, t: s.timestamp});
  done(null);
});
"""


def log(message: str) -> None:
    print(f"[liveview] {message}", file=sys.stderr, flush=True)


def config(workdir: Path, port: int, fps: float) -> Path:
    camera = {
        "name": "path",
        "source": {"kind": "synthetic", "seed": 1, "width": 320, "height": 240},
        "frame": {"width": 320, "height": 240},
        "analysis_fps": 5,
    }
    document = {
        "cameras": [camera],
        "models": {"dir": "models", "kind": "motion", "learn_seconds": 8},
        "alerts": {"dir": "events"},
        "server": {"port": port, "webrtc": {"fps": fps, "max_viewers": 8}},
        "logging": {"level": "WARNING"},
    }
    path = workdir / "liveview.yaml"
    path.write_text(json.dumps(document))
    return path


class Server:
    """Samples of one server process: RSS and CPU time from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.ticks = os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.ticks  # utime + stime

    def watch(self, seconds: float, on_tick: Any = None) -> dict[str, Any]:
        """RSS every 2 s for ``seconds``; ``on_tick()`` between samples."""
        started, cpu = time.monotonic(), self.cpu_s()
        samples = [self.rss_mb()]
        while time.monotonic() - started < seconds:
            time.sleep(min(2.0, max(0.0, seconds - (time.monotonic() - started))))
            samples.append(self.rss_mb())
            if on_tick is not None:
                on_tick()
        wall = time.monotonic() - started
        return {
            "rss_mb": {"first": samples[0], "last": samples[-1], "max": max(samples)},
            "rss_mb_every_10s": samples[::5],
            "cpu_cores": (self.cpu_s() - cpu) / wall,
            "seconds": wall,
        }


def decoded(browser: Any, tabs: list[str]) -> list[dict[str, float] | None]:
    counts = []
    for tab in tabs:
        browser.switch_to.window(tab)
        counts.append(browser.execute_async_script(DECODED))
    return counts


def rates(before: list[Any], after: list[Any]) -> list[float | None]:
    return [
        None if a is None or b is None else (b["frames"] - a["frames"]) / ((b["t"] - a["t"]) / 1000)
        for a, b in zip(before, after, strict=True)
    ]


def open_tab(browser: Any, url: str, new: bool) -> tuple[str, float]:
    if new:
        browser.switch_to.new_window("tab")
    browser.get(url)
    first_ms = float(browser.execute_async_script(FIRST_FRAME))
    return browser.current_window_handle, first_ms / 1000


def wait_detecting(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/cameras", timeout=2) as response:
                if json.load(response)["cameras"][0]["model"]["state"] == "detecting":
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the camera did not start detecting")


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [STREAMDET, "run", "--config", str(config(workdir, port, args.fps))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=workdir,
    )
    try:
        wait_detecting(url, 60)
        server = Server(proc.pid)
        log(f"idle {args.idle:.0f} s")
        result: dict[str, Any] = {"idle": server.watch(args.idle)}
        with chromium() as browser:
            tab, first = open_tab(browser, f"{url}/", new=False)
            tabs = [tab]
            log(f"one viewer: first frame after {first:.2f} s; {args.seconds:.0f} s")
            before = decoded(browser, tabs)
            result["one"] = server.watch(args.seconds) | {"first_frame_s": first}
            result["one"]["browser_fps"] = rates(before, decoded(browser, tabs))
            added = []
            for _ in range(3):
                tab, first = open_tab(browser, f"{url}/", new=True)
                tabs.append(tab)
                added.append(first)
            log(f"four viewers: first frames after {added}; {args.seconds:.0f} s")
            before = decoded(browser, tabs)
            result["four"] = server.watch(args.seconds) | {
                "first_frame_s_added_median": statistics.median(added)
            }
            result["four"]["browser_fps"] = rates(before, decoded(browser, tabs))
        return result
    finally:
        end_process(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60, help="per viewer phase (60)")
    parser.add_argument("--idle", type=float, default=20, help="baseline without viewers (20)")
    parser.add_argument("--fps", type=float, default=10, help="server.webrtc.fps (10)")
    args = parser.parse_args()
    if (reason := missing()) is not None:
        print(f"error: {reason}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="streamdet-liveview-") as workdir:
        result = measure(args, Path(workdir))
    summary = {
        "benchmark": "liveview",
        "server_webrtc_fps": args.fps,
        "camera": "synthetic 320x240 @ 25 fps, motion model detecting (overlay on)",
        **result,
        "machine": machine_info(),
    }
    print(json.dumps(_rounded(summary)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
