"""A per-camera ring of the newest N frames, preallocated once, in process or shared memory.

The writer (the camera's decode thread, in this process or in a capture process) never blocks on
readers: it converts the next frame straight into the slot after the newest one
(``writable()``), then ``commit()``s it. Only the slot after the newest is ever being written,
and reads never include it: a single frame there counts as overwritten, and windows are at
most ``size - 1`` frames long.

No lock is shared between writer and readers, so that a capture process killed at any moment
cannot leave one held: the frames' metadata is guarded by a sequence counter (odd while a commit
is under way; readers retry until they saw one even value before and after), and pixels are
validated after the copy instead (frame ``q`` is overwritten only once the writer has committed
frame ``q + size - 1``; if it has, the copy raced it and counts as overwritten).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import uuid
from collections.abc import Callable
from multiprocessing import shared_memory
from typing import TypeVar

import numpy as np

from streamdet.errors import StreamdetError
from streamdet.frames import FrameRef

T = TypeVar("T")

# Header words (int64): the metadata sequence counter, then the writer's state.
_GEN, _NEWEST, _NEXT_SEQ, _OVERWRITES, _SEGMENT = range(5)
_HEADER_WORDS = 8
_RETRIES = 20_000  # a commit takes microseconds; this many misses mean its writer died mid-way


def ring_bytes(size: int, shape: tuple[int, ...]) -> int:
    """Bytes of one ring's storage: header, per-slot metadata, pixels."""
    meta = 8 * (_HEADER_WORDS + 4 * size) + _pad(size)
    return meta + size * math.prod(shape)


def _pad(n: int) -> int:
    return (n + 63) // 64 * 64


class _Block(shared_memory.SharedMemory):
    """A shared-memory block whose mapping may outlive it: a reader's numpy views keep it."""

    def __del__(self) -> None:
        with contextlib.suppress(BufferError):  # views still exist: the mapping goes with them
            self.close()


class FrameRing:
    """Newest ``size`` frames of one camera, each of ``shape`` uint8 pixels.

    ``FrameRing(...)`` keeps them in this process; ``FrameRing.shared(...)`` in shared memory
    that a capture process ``attach``es to as the writer.
    """

    def __init__(
        self,
        camera: str,
        size: int,
        shape: tuple[int, ...],
        *,
        buffer: memoryview | np.ndarray | None = None,
        initialise: bool = True,
    ) -> None:
        if size < 2:
            raise ValueError("a ring needs at least 2 slots")
        self.camera = camera
        self.size = size
        self.shape = shape
        self._shm: shared_memory.SharedMemory | None  # only a shared ring has one: set last
        self.closed = False  # the camera was removed (a config reload): readers let go of it
        if buffer is None:
            buffer = np.zeros(ring_bytes(size, shape), np.uint8)
        store = np.frombuffer(buffer, np.uint8, ring_bytes(size, shape))
        words = store[: 8 * (_HEADER_WORDS + 4 * size)].view(np.int64)
        self._header = words[:_HEADER_WORDS]
        self._seq = words[_HEADER_WORDS : _HEADER_WORDS + size]
        self._segment = words[_HEADER_WORDS + size : _HEADER_WORDS + 2 * size]
        floats = words[_HEADER_WORDS + 2 * size :].view(np.float64)
        self._wall, self._pts = floats[:size], floats[size : 2 * size]
        offset = 8 * (_HEADER_WORDS + 4 * size)
        self._analyse = store[offset : offset + size].view(bool)
        self._pixels = store[offset + _pad(size) :].reshape(size, *shape)
        if initialise:
            self._header[:] = 0
            self._header[_NEWEST] = -1
            self._seq[:] = -1
            self._pts[:] = np.nan

    # ------------------------------------------------------------------ shared memory
    @classmethod
    def shared(cls, camera: str, size: int, shape: tuple[int, ...]) -> FrameRing:
        """A ring in a new shared-memory block (this process owns it: ``unlink`` when done)."""
        name, nbytes = f"streamdet-{uuid.uuid4().hex[:12]}", ring_bytes(size, shape)
        shm = _Block(name, create=True, size=nbytes)
        try:  # take the pages now: a full /dev/shm would be a SIGBUS at some later frame
            os.posix_fallocate(shm._fd, 0, nbytes)  # type: ignore[attr-defined]
        except OSError as exc:
            shm.close()
            shm.unlink()
            raise StreamdetError(
                f"[{camera}] no room in shared memory (/dev/shm) for its frame ring of"
                f" {nbytes / 1e6:.1f} MB ({exc.strerror}): give /dev/shm more room (a container's"
                " shm size), lower capture.ring_size, or set capture.processes: 0"
            ) from exc
        ring = cls(camera, size, shape, buffer=shm.buf)
        ring._shm = shm  # set last: freed after the views into it, so that it closes cleanly
        return ring

    @classmethod
    def attach(cls, name: str, camera: str, size: int, shape: tuple[int, ...]) -> FrameRing:
        """The writer's view of the shared ring ``name`` (a capture process, after a restart
        too: a commit its predecessor left half done is undone)."""
        shm = _Block(name)
        ring = cls(camera, size, shape, buffer=shm.buf, initialise=False)
        ring._shm = shm
        if ring._header[_GEN] % 2:  # the previous writer was killed inside commit()
            ring._seq[(ring._header[_NEWEST] + 1) % size] = -1
            ring._header[_GEN] += 1
        return ring

    @property
    def shm_name(self) -> str | None:
        """The shared-memory block's name, or None for a ring in this process's memory."""
        shm = getattr(self, "_shm", None)
        return None if shm is None else str(shm.name)

    def unlink(self) -> None:
        """Remove the shared block's name (idempotent): nothing is left in /dev/shm, and the
        memory goes with the last view of it."""
        shm = getattr(self, "_shm", None)
        if shm is not None and not getattr(self, "_unlinked", False):
            self._unlinked = True
            with contextlib.suppress(FileNotFoundError):
                shm.unlink()

    # ------------------------------------------------------------------ writer side
    def writable(self) -> np.ndarray:
        """The slot the next frame must be written into (a view: write in place)."""
        slot: np.ndarray = self._pixels[(int(self._header[_NEWEST]) + 1) % self.size]
        return slot

    def new_segment(self) -> None:
        """Frames from here on follow a break (a reconnect): windows never span it."""
        self._header[_SEGMENT] += 1

    def commit(self, wall_time: float, pts_s: float | None, analyse: bool) -> FrameRef:
        """Publish the frame just written into ``writable()``; returns its reference."""
        header = self._header
        slot = (int(header[_NEWEST]) + 1) % self.size
        seq = int(header[_NEXT_SEQ])
        header[_GEN] += 1  # odd: readers wait
        if self._seq[slot] >= 0:
            header[_OVERWRITES] += 1
        self._seq[slot] = seq
        self._wall[slot] = wall_time
        self._pts[slot] = np.nan if pts_s is None else pts_s
        self._analyse[slot] = analyse
        self._segment[slot] = header[_SEGMENT]
        header[_NEWEST] = slot
        header[_NEXT_SEQ] = seq + 1
        header[_GEN] += 1
        return FrameRef(
            camera=self.camera,
            slot=slot,
            seq=seq,
            wall_time=wall_time,
            pts_s=pts_s,
            analyse=analyse,
        )

    def close(self) -> None:
        """No frame will come any more: the camera was removed. Readers that hold the ring
        (live viewers) see ``closed`` and end; the pixels stay readable until they do."""
        self.closed = True

    # ------------------------------------------------------------------ reader side
    @property
    def frames_written(self) -> int:
        return int(self._header[_NEXT_SEQ])

    @property
    def overwrites(self) -> int:
        """Committed frames pushed out of the ring by newer ones."""
        return int(self._header[_OVERWRITES])

    def _consistent(self, read: Callable[[], T], failed: T) -> T:
        """``read()`` the metadata while no commit runs; ``failed`` if none ever ends."""
        header = self._header
        for attempt in range(_RETRIES):
            before = int(header[_GEN])
            if not before % 2:
                result = read()
                if int(header[_GEN]) == before:
                    return result
            if attempt % 64 == 63:
                time.sleep(0)  # let an in-process writer finish its commit
        return failed

    def _untouched_since(self, oldest_seq: int) -> bool:
        """True if no pixel of frame ``oldest_seq`` or newer can have been overwritten yet."""
        return int(self._header[_NEXT_SEQ]) < oldest_seq + self.size

    def latest(self, analysable_only: bool = False) -> FrameRef | None:
        """The newest frame (or newest frame marked for analysis), without copying pixels."""
        return self._consistent(lambda: self._latest(analysable_only), None)

    def _latest(self, analysable_only: bool) -> FrameRef | None:
        slot = int(self._header[_NEWEST])
        if slot < 0:
            return None
        if not analysable_only:
            return self._ref(slot)
        for back in range(self.size):
            candidate = (slot - back) % self.size
            if self._seq[candidate] < 0:
                return None
            if self._analyse[candidate]:
                return self._ref(candidate)
        return None

    def analysable_refs(self, after_seq: int, until_seq: int) -> list[FrameRef]:
        """Frames marked for analysis with ``after_seq < seq <= until_seq`` still in the ring,
        oldest first."""

        def read() -> list[FrameRef]:
            seqs = self._seq
            slots = np.flatnonzero((seqs > after_seq) & (seqs <= until_seq) & self._analyse)
            return [self._ref(int(s)) for s in slots[np.argsort(seqs[slots])]]

        return self._consistent(read, [])

    def read(self, ref: FrameRef, out: np.ndarray | None = None) -> np.ndarray | None:
        """Copy the pixels of ``ref`` into ``out``; ``None`` if the frame was overwritten."""
        out = np.empty(self.shape, np.uint8) if out is None else out
        if int(self._seq[ref.slot]) != ref.seq or not self._untouched_since(ref.seq):
            return None  # gone, or in the slot after the newest (half-written by now)
        np.copyto(out, self._pixels[ref.slot])
        return out if self._untouched_since(ref.seq) else None

    def window(
        self, count: int, out: np.ndarray | None = None
    ) -> tuple[list[FrameRef], np.ndarray]:
        """The newest ``count`` frames, oldest first (fewer if fewer were written yet)."""
        if not 1 <= count <= self.size - 1:
            raise ValueError(f"window of {count} frames needs 1..{self.size - 1}")
        empty: list[FrameRef] = []
        for _ in range(100):  # a writer that overtook the copy: take it again, a few times
            refs = self._consistent(lambda: self._newest_refs(count), empty)
            buf = np.empty((len(refs), *self.shape), np.uint8) if out is None else out[: len(refs)]
            if not refs:
                return [], buf
            np.take(self._pixels, [r.slot for r in refs], axis=0, out=buf)
            # Frame q is untouched while fewer than q + size frames were committed: the
            # oldest ones may have been overwritten during the copy.
            lost = max(0, int(self._header[_NEXT_SEQ]) - self.size + 1 - refs[0].seq)
            if not lost:
                return refs, buf
        return refs[lost:], buf[lost:]  # only what survived the last copy

    def _newest_refs(self, count: int) -> list[FrameRef]:
        newest = int(self._header[_NEWEST])
        if newest < 0:
            return []
        available = min(count, int(self._header[_NEXT_SEQ]))
        return [self._ref((newest - back) % self.size) for back in range(available - 1, -1, -1)]

    def window_ending(
        self, ref: FrameRef, count: int, out: np.ndarray, times: np.ndarray | None = None
    ) -> bool:
        """Copy the ``count`` frames ending at ``ref`` (oldest first) into ``out``, and their
        presentation times (seconds; NaN for a frame the stream gave none) into ``times``,
        when given. (Not the wall times they were decoded at: frames arrive in bursts.)

        False if any of them is gone (overwritten, being written) or a reconnect lies between.
        """
        if not 1 <= count <= self.size - 1:
            raise ValueError(f"window of {count} frames needs 1..{self.size - 1}")
        oldest = ref.seq - count + 1
        if oldest < 0:
            return False
        slots = [(ref.slot - back) % self.size for back in range(count - 1, -1, -1)]
        expected = np.arange(oldest, ref.seq + 1)

        def whole() -> bool:
            seqs_ok = np.array_equal(self._seq[slots], expected)
            # a run of frames broken by a reconnect is no window
            return seqs_ok and self._segment[slots[0]] == self._segment[slots[-1]]

        if not self._untouched_since(oldest) or not self._consistent(whole, False):
            return False
        np.take(self._pixels, slots, axis=0, out=out)
        if times is not None:
            times[:] = self._pts[slots]
        return self._untouched_since(oldest)

    def _ref(self, slot: int) -> FrameRef:
        pts = float(self._pts[slot])
        return FrameRef(
            camera=self.camera,
            slot=slot,
            seq=int(self._seq[slot]),
            wall_time=float(self._wall[slot]),
            pts_s=None if math.isnan(pts) else pts,
            analyse=bool(self._analyse[slot]),
        )
