"""Real servers on 127.0.0.1 for the tests: GStreamer's RTSP server (shared with the benchmarks,
in ``benchmarks/common.py``), a silent TCP port."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np

from benchmarks.common import SYSTEM_PYTHON, RtspServer, end_process, free_port

__all__ = [
    "SYSTEM_PYTHON",
    "RtspServer",
    "accepting_socket",
    "end_process",
    "free_port",
    "jpeg_frames",
    "silent_tcp_server",
]


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
