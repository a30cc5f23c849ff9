"""Camera faults for the fault suite, each against a real ``streamdet run`` and a real GStreamer
RTSP server on 127.0.0.1, frames counted from ``/api/cameras`` polled at ~20 Hz.

* ``restarts``: the server killed, down 3-5 s, started again on the same port, N times; the time
  from its listening again to the camera's next frame.
* ``sigstop``: the server frozen (SIGSTOP: sockets open, nothing sent) for a few seconds, then
  thawed; the time from the thaw to the camera's next frame.
* ``garbage``: beside a healthy camera, cameras pointing at a port that sends random bytes,
  one that accepts and never answers, an HTTP server (the wrong protocol) and a closed port;
  the healthy camera's frame rate over a window.
* ``soak``: 4 cameras, after learning; the process's resident memory every 10 s.
"""

from __future__ import annotations

import os
import random
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.common import RtspServer, Streamdet, Webhook, free_port, log, wait_until

SOURCE_FPS = 25  # the RTSP server's test pattern
POLL_S = 0.05  # /api/cameras at ~20 Hz
RECOVERY_TIMEOUT_S = 20.0  # a camera not back this long after its server is counts as lost


def rtsp_camera(name: str, url: str, kind: str = "rtsp") -> dict[str, Any]:
    """A camera with the source's default timeouts (what a user gets), analysed at 5 fps."""
    return {"name": name, "source": {"kind": kind, "url": url}, "analysis_fps": 5}


def run_document(cameras: list[dict[str, Any]], learn_s: float = 5.0) -> dict[str, Any]:
    """A ``streamdet run`` config: the cheap motion model, learning for ``learn_s``."""
    return {
        "cameras": cameras,
        "models": {"dir": "models", "kind": "motion", "learn_seconds": learn_s},
        "alerts": {"dir": "events"},
        "server": {"webrtc": {"enabled": False}},
    }


def next_frame(run: Streamdet, camera: str, before: int, timeout: float) -> float | None:
    """Seconds until ``camera`` has more than ``before`` frames (None: not within ``timeout``)."""
    return wait_until(lambda: run.frames(camera) > before, timeout, poll=POLL_S)


def summary(times: list[float | None], n: int) -> dict[str, Any]:
    back = [t for t in times if t is not None]
    return {
        "cycles": n,
        "recovered": len(back),
        "first_frame_s": [None if t is None else round(t, 3) for t in times],
        "first_frame_median_s": statistics.median(back) if back else None,
        "first_frame_max_s": max(back) if back else None,
    }


@contextmanager
def one_camera(workdir: Path) -> Iterator[tuple[RtspServer, Streamdet]]:
    """An RTSP server's /pattern and a ``streamdet run`` of it, once the first frame came."""
    server = RtspServer({"/pattern": "pattern"})
    document = run_document([rtsp_camera("cam", server.url("/pattern"))])
    with server, Streamdet(workdir, document) as run:
        if next_frame(run, "cam", 0, 30) is None:
            raise RuntimeError("the RTSP camera gave no first frame")
        yield server, run


def restarts(workdir: Path, n: int, seed: int = 0) -> dict[str, Any]:
    """``n`` kill/restart cycles of the RTSP server with a 3-5 s outage each."""
    rng = random.Random(seed)
    times: list[float | None] = []
    outages: list[float] = []
    with one_camera(workdir) as (server, run):
        for cycle in range(n):
            time.sleep(1.0)  # running for a moment between outages
            down_s = rng.uniform(3.0, 5.0)
            server.kill()
            killed = time.monotonic()
            wait_until(lambda: run.cameras()["cam"]["state"] != "running", 10, poll=POLL_S)
            time.sleep(max(0.0, down_s - (time.monotonic() - killed)))
            before = run.frames("cam")
            server.start()  # returns once it listens again
            took = next_frame(run, "cam", before, RECOVERY_TIMEOUT_S)
            times.append(took)
            outages.append(round(down_s, 2))
            shown = "not back" if took is None else f"first frame {took:.2f} s after"
            log("restarts", f"cycle {cycle + 1}/{n}: down {down_s:.1f} s, {shown}")
    return summary(times, n) | {"outage_s": outages}


def sigstops(workdir: Path, n: int, frozen_s: float = 6.0) -> dict[str, Any]:
    """``n`` SIGSTOP/SIGCONT cycles of the RTSP server, frozen ``frozen_s`` each (longer than
    the default 5 s read timeout, so the camera has to notice the stall)."""
    times: list[float | None] = []
    with one_camera(workdir) as (server, run):
        for cycle in range(n):
            time.sleep(2.0)
            server.freeze()
            time.sleep(frozen_s)
            before = run.frames("cam")
            server.thaw()
            took = next_frame(run, "cam", before, RECOVERY_TIMEOUT_S)
            times.append(took)
            shown = "not back" if took is None else f"next frame {took:.2f} s after the thaw"
            log("sigstop", f"cycle {cycle + 1}/{n}: frozen {frozen_s:.0f} s, {shown}")
        status = run.cameras()["cam"]
        stalls = int(status["stalls"])
    return summary(times, n) | {"frozen_s": frozen_s, "stalls_noticed": stalls}


@contextmanager
def garbage_port(mode: str) -> Iterator[int]:
    """A 127.0.0.1 port whose connections get random bytes (``random``) or nothing (``silent``)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.1)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while not stop.is_set():
                try:
                    if mode == "random":
                        conn.sendall(os.urandom(4096))
                    stop.wait(0.02)
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, name=f"garbage:{mode}", daemon=True)
    thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        thread.join(2)
        server.close()


def garbage(workdir: Path, window_s: float = 20.0) -> dict[str, Any]:
    """The healthy camera's frame rate beside cameras pointing at garbage."""
    server = RtspServer({"/pattern": "pattern"})
    with (
        server,
        garbage_port("random") as noise,
        garbage_port("silent") as silent,
        Webhook() as http,
    ):
        http.up()
        bad = {
            "random_bytes": f"rtsp://127.0.0.1:{noise}/stream",
            "silent": f"rtsp://127.0.0.1:{silent}/stream",
            "http_not_rtsp": f"rtsp://127.0.0.1:{http.port}/hook",
            "refused": f"rtsp://127.0.0.1:{free_port()}/stream",
        }
        cameras = [rtsp_camera("healthy", server.url("/pattern"))]
        cameras += [rtsp_camera(name, url) for name, url in bad.items()]
        cameras.append(rtsp_camera("mjpeg_random", f"http://127.0.0.1:{noise}/video", "mjpeg"))
        with Streamdet(workdir, run_document(cameras)) as run:
            if next_frame(run, "healthy", 0, 30) is None:
                raise RuntimeError("the healthy camera gave no first frame")
            time.sleep(5.0)  # the garbage cameras have failed a few times by now
            before, started = run.frames("healthy"), time.monotonic()
            time.sleep(window_s)
            status = run.cameras()
            fps = (status["healthy"]["frames"] - before) / (time.monotonic() - started)
            alive = run.proc is not None and run.proc.poll() is None
    log("garbage", f"healthy camera {fps:.2f} frames/s beside {len(cameras) - 1} garbage ones")
    return {
        "healthy_fps": fps,
        "source_fps": SOURCE_FPS,
        "window_s": window_s,
        "process_alive": alive,
        "garbage_cameras": {
            name: {"state": s["state"], "frames": s["frames"], "last_error": s["last_error"]}
            for name, s in status.items()
            if name != "healthy"
        },
    }


def soak(workdir: Path, minutes: float, cameras: int = 4, every_s: float = 10.0) -> dict[str, Any]:
    """RSS every ``every_s`` over ``minutes`` after learning; growth = the median of the last
    window against the median of the first (windows of 5 min, or a third of a shorter soak)."""
    server = RtspServer({"/pattern": "pattern"})
    with server:
        document = run_document(
            [rtsp_camera(f"cam{i}", server.url("/pattern")) for i in range(cameras)], learn_s=10
        )
        with Streamdet(workdir, document) as run:
            if not run.wait_detecting(120):
                raise RuntimeError("the soak's cameras did not finish learning")
            log("soak", f"{cameras} cameras detecting; sampling RSS every {every_s:.0f} s")
            samples: list[float] = []
            started = time.monotonic()
            while time.monotonic() - started < minutes * 60:
                samples.append(run.rss_mb())
                if len(samples) % 30 == 0:
                    log(
                        "soak", f"{(time.monotonic() - started) / 60:.1f} min: {samples[-1]:.1f} MB"
                    )
                time.sleep(every_s)
            samples.append(run.rss_mb())
            fps = {n: c["fps"] for n, c in run.cameras().items()}
    window = max(1, round(min(300.0, minutes * 60 / 3) / every_s))
    first, last = statistics.median(samples[:window]), statistics.median(samples[-window:])
    growth = 100.0 * (last - first) / first
    log("soak", f"RSS {first:.1f} -> {last:.1f} MB ({growth:+.2f} %) over {minutes:g} min")
    return {
        "minutes": minutes,
        "cameras": cameras,
        "window_s": window * every_s,
        "rss_first_median_mb": first,
        "rss_last_median_mb": last,
        "rss_max_mb": max(samples),
        "growth_pct": growth,
        "rss_mb_every_60s": [round(s, 1) for s in samples[:: max(1, round(60 / every_s))]],
        "camera_fps_at_end": fps,
    }
