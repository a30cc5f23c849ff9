"""Real servers on 127.0.0.1 for the tests: GStreamer's RTSP server, a silent TCP port."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's interpreter: the only one that can import gi
SCRIPT = Path(__file__).with_name("rtsp_server.py")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RtspServer:
    """A GStreamer RTSP server process serving ``mounts`` ({"/path": file or "pattern"})."""

    def __init__(self, mounts: dict[str, str], port: int | None = None) -> None:
        self.mounts = mounts
        self.port = port or free_port()
        self.proc: subprocess.Popen[str] | None = None

    def url(self, path: str, credentials: str = "") -> str:
        return f"rtsp://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}{path}"

    def start(self, timeout: float = 20.0) -> None:
        if not os.path.exists(SYSTEM_PYTHON):
            raise RuntimeError(f"{SYSTEM_PYTHON} missing: run `make test`, which installs it")
        args = [SYSTEM_PYTHON, str(SCRIPT), "--port", str(self.port)]
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


def end_process(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM, then SIGKILL if it has not gone within 5 s."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@contextmanager
def silent_tcp_server() -> Iterator[int]:
    """A port that accepts connections and never answers (a camera that hangs on connect)."""
    with accepting_socket() as (server, _):
        yield int(server.getsockname()[1])


@contextmanager
def accepting_socket(
    listening: bool = True,
) -> Iterator[tuple[socket.socket, list[socket.socket]]]:
    """A socket on 127.0.0.1 that accepts connections, keeps them and sends nothing, with the
    connections it accepted. Not ``listening``, its port refuses connections until the caller
    calls ``listen()`` on it (a camera coming back)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    if listening:
        server.listen(16)
    server.settimeout(0.05)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(conn)
            except TimeoutError:
                continue
            except OSError:  # not listening yet, or closed
                stop.wait(0.01)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server, accepted
    finally:
        stop.set()
        thread.join(2)
        for conn in accepted:
            conn.close()
        server.close()


def jpeg_frames(frames: list[np.ndarray]) -> list[bytes]:
    return [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for f in frames]
