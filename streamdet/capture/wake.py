"""Wake-ups for frame readers: "an analysable frame was committed", in and across processes.

A reader (the inference loop) waits on the stage's ``FrameSignal`` instead of polling the rings:
``seen = signal.wait(seen, timeout)`` returns as soon as any camera committed a frame marked for
analysis after generation ``seen``. A camera thread in this process calls ``notify()``; one in a
capture process writes a byte into a non-blocking pipe (``PipeNotifier``: a full pipe already
holds a wake-up, so nothing blocks and nothing is queued), which one thread here turns into
``notify()`` calls (``relay``).
"""

from __future__ import annotations

import contextlib
import os
import threading


class FrameSignal:
    """A generation counter with waiters: any number of readers, each keeping its own place."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._generation = 0

    @property
    def generation(self) -> int:
        return self._generation

    def notify(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """The generation once it is past ``seen``, or after ``timeout`` seconds."""
        with self._cond:
            if self._generation == seen:
                self._cond.wait(timeout)
            return self._generation


class PipeNotifier:
    """The capture process's end: one byte per wake-up, never blocking."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        os.set_blocking(fd, False)

    def __call__(self) -> None:
        # Full: the reader has a wake-up waiting. Broken: the main process is gone.
        with contextlib.suppress(BlockingIOError, BrokenPipeError):
            os.write(self._fd, b"\0")


def relay(fd: int, signal: FrameSignal) -> None:
    """Turn bytes from a capture process into wake-ups until its end closes (a thread's body)."""
    while True:
        try:
            if not os.read(fd, 4096):
                return
        except OSError:
            return
        signal.notify()
