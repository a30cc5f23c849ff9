"""Set-up shared by the benchmarks (and the tests' servers): real servers on 127.0.0.1 and
``streamdet run`` as a process.

* ``RtspServer``: GStreamer's RTSP server (``benchmarks/rtsp_server.py`` run as a program by
  Debian's ``/usr/bin/python3``, the only interpreter that can import ``gi``), killed,
  restarted on the same port, frozen with SIGSTOP.
* ``Webhook``: an aiohttp webhook receiver on its own thread that can go down (its port
  closed, connections refused) and come back on the same port; it records every delivery.
* ``Streamdet``: ``streamdet run --config`` in a child process with its output in files, its
  JSON API and ``/metrics`` read over HTTP, its resident memory read from ``/proc``.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
STREAMDET = str(Path(sys.executable).with_name("streamdet"))
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's interpreter: the only one that can import gi
RTSP_SCRIPT = ROOT / "benchmarks" / "rtsp_server.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def end_process(proc: subprocess.Popen[Any], timeout: float = 5.0) -> int:
    """SIGTERM, then SIGKILL if it has not gone within ``timeout``; its exit code."""
    if proc.poll() is None:
        proc.terminate()
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


def wait_until(predicate: Callable[[], bool], timeout: float, poll: float = 0.05) -> float | None:
    """Seconds until ``predicate()`` held, or None after ``timeout``."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            return None
        time.sleep(poll)
    return time.monotonic() - started


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` (VmRSS), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


class RtspServer:
    """A GStreamer RTSP server process serving ``mounts`` ({"/path": mp4 file or "pattern"})."""

    def __init__(self, mounts: dict[str, str], port: int | None = None) -> None:
        self.mounts = mounts
        self.port = port or free_port()
        self.proc: subprocess.Popen[str] | None = None

    def url(self, path: str, credentials: str = "") -> str:
        return f"rtsp://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}{path}"

    def start(self, timeout: float = 20.0) -> None:
        """Returns once the server listens (it printed READY)."""
        if not os.path.exists(SYSTEM_PYTHON):
            raise RuntimeError(
                f"{SYSTEM_PYTHON} missing: run `make system-deps`, which installs it"
            )
        args = [SYSTEM_PYTHON, str(RTSP_SCRIPT), "--port", str(self.port)]
        for path, source in self.mounts.items():
            args += ["--mount", f"{path}={source}"]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.2)
            if ready:
                line = self.proc.stdout.readline()
                if line.startswith("READY"):
                    return
                if not line and self.proc.poll() is not None:
                    break
        err = self.proc.stderr.read() if self.proc.stderr and self.proc.poll() is not None else ""
        self.stop()
        raise RuntimeError(f"RTSP server did not become ready: {err[-2000:]}")

    def kill(self) -> None:
        """Die at once, as a crashed camera would."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def freeze(self) -> None:
        """Keep sockets open but send nothing (SIGSTOP), as a hung camera would."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGCONT)  # a frozen server cannot act on SIGTERM
        end_process(self.proc)
        self.proc = None

    def __enter__(self) -> RtspServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Webhook:
    """A webhook receiver on 127.0.0.1:``port``; ``down()`` closes the port, ``up()`` reopens it.

    ``received`` holds (Idempotency-Key, JSON body) of every delivery, in arrival order."""

    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[tuple[str, dict[str, Any]]] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="webhook", daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        self.received.append((request.headers.get("Idempotency-Key", ""), await request.json()))
        return web.Response(status=204)

    async def _up(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def _down(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _call(self, coro: Any) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def up(self) -> None:
        self._call(self._up())

    def down(self) -> None:
        self._call(self._down())

    def __enter__(self) -> Webhook:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class Streamdet:
    """``streamdet run`` of ``document`` (a config dict) in ``workdir``, served on a free port.

    stdout and stderr go to ``run.out`` / ``run.err`` in ``workdir`` (appended across restarts)."""

    def __init__(self, workdir: Path, document: dict[str, Any], name: str = "run") -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        document = {**document, "server": {**document.get("server", {}), "port": self.port}}
        self.config = workdir / f"{name}.yaml"
        self.config.write_text(json.dumps(document, indent=1))
        self.stdout = workdir / f"{name}.out"
        self.stderr = workdir / f"{name}.err"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start the process; return once its HTTP server answers."""
        with self.stdout.open("ab") as out, self.stderr.open("ab") as err:
            self.proc = subprocess.Popen(
                [STREAMDET, "run", "--config", str(self.config)],
                stdout=out,
                stderr=err,
                cwd=self.workdir,
            )
        if wait_until(self._answers, timeout, poll=0.2) is None:
            self.stop()
            raise RuntimeError(f"streamdet run did not serve within {timeout:.0f} s")

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"streamdet run exited with {self.proc.returncode}")
        try:
            self.get("/healthz")
        except OSError:
            return False
        return True

    def get(self, path: str, timeout: float = 2.0) -> bytes:
        with urllib.request.urlopen(self.base + path, timeout=timeout) as response:
            return bytes(response.read())

    def cameras(self) -> dict[str, dict[str, Any]]:
        """/api/cameras by camera name."""
        return {c["name"]: c for c in json.loads(self.get("/api/cameras"))["cameras"]}

    def frames(self, camera: str) -> int:
        return int(self.cameras()[camera]["frames"])

    def wait_detecting(self, timeout: float) -> bool:
        """Whether every camera's model detects within ``timeout`` (learning is over)."""

        def detecting() -> bool:
            cams = self.cameras().values()
            return all((c["model"] or {}).get("state") == "detecting" for c in cams)

        return wait_until(detecting, timeout, poll=0.5) is not None

    def rss_mb(self) -> float:
        assert self.proc is not None
        return rss_mb(self.proc.pid)

    def signal(self, signum: int, timeout: float = 30.0) -> int:
        """Send ``signum``; the exit code (SIGKILL after ``timeout``)."""
        assert self.proc is not None
        self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(5)
        self.proc = None
        return code

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        code = end_process(self.proc, 30)
        self.proc = None
        return code

    def output(self) -> str:
        """Everything the process printed so far."""
        return "".join(p.read_text(errors="replace") for p in (self.stdout, self.stderr))

    def __enter__(self) -> Streamdet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def log(tag: str, message: str) -> None:
    print(f"[{tag} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine_load() -> dict[str, Any]:
    return {"cpu_count": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]}
