"""A per-camera ring of the newest N frames, preallocated once.

The writer (the camera's decode thread) never blocks on readers: it converts the next frame
straight into the slot after the newest one (``writable()``), then ``commit()``s it. Readers copy a
frame or a window out under a short lock. Only the slot after the newest is ever being written,
and reads never include it: a single frame there counts as overwritten, and windows are at
most ``size - 1`` frames long.
"""

from __future__ import annotations

import threading

import numpy as np

from streamdet.frames import FrameRef


class FrameRing:
    """Newest ``size`` frames of one camera, each of ``shape`` uint8 pixels."""

    def __init__(self, camera: str, size: int, shape: tuple[int, ...]) -> None:
        if size < 2:
            raise ValueError("a ring needs at least 2 slots")
        self.camera = camera
        self.size = size
        self.shape = shape
        self._pixels = np.zeros((size, *shape), dtype=np.uint8)
        self._seq = np.full(size, -1, dtype=np.int64)
        self._wall = np.zeros(size, dtype=np.float64)
        self._pts = np.full(size, np.nan, dtype=np.float64)
        self._analyse = np.zeros(size, dtype=bool)
        self._segment = np.zeros(size, dtype=np.int64)  # which connection each frame came from
        self._current_segment = 0
        self._lock = threading.Lock()
        self._newest = -1  # slot index of the newest committed frame
        self._next_seq = 0
        self.overwrites = 0  # committed frames pushed out of the ring by newer ones
        self.closed = False  # the camera was removed (a config reload): readers let go of it

    # ------------------------------------------------------------------ writer side
    def writable(self) -> np.ndarray:
        """The slot the next frame must be written into (a view: write in place)."""
        slot: np.ndarray = self._pixels[(self._newest + 1) % self.size]
        return slot

    def new_segment(self) -> None:
        """Frames from here on follow a break (a reconnect): windows never span it."""
        self._current_segment += 1

    def commit(self, wall_time: float, pts_s: float | None, analyse: bool) -> FrameRef:
        """Publish the frame just written into ``writable()``; returns its reference."""
        slot = (self._newest + 1) % self.size
        with self._lock:
            if self._seq[slot] >= 0:
                self.overwrites += 1
            seq = self._next_seq
            self._seq[slot] = seq
            self._wall[slot] = wall_time
            self._pts[slot] = np.nan if pts_s is None else pts_s
            self._analyse[slot] = analyse
            self._segment[slot] = self._current_segment
            self._newest = slot
            self._next_seq = seq + 1
        return self._ref(slot)

    def close(self) -> None:
        """No frame will come any more: the camera was removed. Readers that hold the ring
        (live viewers) see ``closed`` and end; the pixels stay readable until they do."""
        self.closed = True

    # ------------------------------------------------------------------ reader side
    @property
    def frames_written(self) -> int:
        return self._next_seq

    def latest(self, analysable_only: bool = False) -> FrameRef | None:
        """The newest frame (or newest frame marked for analysis), without copying pixels."""
        with self._lock:
            slot = self._newest
            if slot < 0:
                return None
            if analysable_only:
                for back in range(self.size):
                    candidate = (slot - back) % self.size
                    if self._seq[candidate] < 0:
                        return None
                    if self._analyse[candidate]:
                        return self._ref(candidate)
                return None
            return self._ref(slot)

    def analysable_refs(self, after_seq: int, until_seq: int) -> list[FrameRef]:
        """Frames marked for analysis with ``after_seq < seq <= until_seq`` still in the ring,
        oldest first."""
        with self._lock:
            seqs = self._seq
            slots = np.flatnonzero((seqs > after_seq) & (seqs <= until_seq) & self._analyse)
            return [self._ref(int(s)) for s in slots[np.argsort(seqs[slots])]]

    def read(self, ref: FrameRef, out: np.ndarray | None = None) -> np.ndarray | None:
        """Copy the pixels of ``ref`` into ``out``; ``None`` if the frame was overwritten."""
        out = np.empty(self.shape, np.uint8) if out is None else out
        with self._lock:
            # The slot after the newest may be half-written by now: treat it as overwritten.
            if self._seq[ref.slot] != ref.seq or ref.slot == (self._newest + 1) % self.size:
                return None
            np.copyto(out, self._pixels[ref.slot])
        return out

    def window(
        self, count: int, out: np.ndarray | None = None
    ) -> tuple[list[FrameRef], np.ndarray]:
        """The newest ``count`` frames, oldest first (fewer if fewer were written yet)."""
        if not 1 <= count <= self.size - 1:
            raise ValueError(f"window of {count} frames needs 1..{self.size - 1}")
        with self._lock:
            newest = self._newest
            available = min(count, self._next_seq)
            slots = [(newest - back) % self.size for back in range(available - 1, -1, -1)]
            refs = [self._ref(s) for s in slots] if newest >= 0 else []
            buf = np.empty((available, *self.shape), np.uint8) if out is None else out[:available]
            # One fancy-indexed copy; holding the lock keeps the writer from committing meanwhile.
            np.take(self._pixels, slots, axis=0, out=buf)
        return refs, buf

    def window_ending(self, ref: FrameRef, count: int, out: np.ndarray) -> bool:
        """Copy the ``count`` frames ending at ``ref`` (oldest first) into ``out``.

        False if any of them is gone (overwritten, being written) or a reconnect lies between.
        """
        if not 1 <= count <= self.size - 1:
            raise ValueError(f"window of {count} frames needs 1..{self.size - 1}")
        if ref.seq - count + 1 < 0:
            return False
        slots = [(ref.slot - back) % self.size for back in range(count - 1, -1, -1)]
        with self._lock:
            writing = (self._newest + 1) % self.size
            expected = np.arange(ref.seq - count + 1, ref.seq + 1)
            if writing in slots or not np.array_equal(self._seq[slots], expected):
                return False
            if self._segment[slots[0]] != self._segment[slots[-1]]:
                return False  # the run of frames was broken by a reconnect
            np.take(self._pixels, slots, axis=0, out=out)
        return True

    def _ref(self, slot: int) -> FrameRef:
        pts = float(self._pts[slot])
        return FrameRef(
            camera=self.camera,
            slot=slot,
            seq=int(self._seq[slot]),
            wall_time=float(self._wall[slot]),
            pts_s=None if np.isnan(pts) else pts,
            analyse=bool(self._analyse[slot]),
        )
