"""The frame ring: newest frames, windows, overwrites, and reads that raced the writer."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from streamdet.capture.ring import FrameRing


def write(ring: FrameRing, value: int, analyse: bool = False) -> None:
    ring.writable()[:] = value
    ring.commit(wall_time=float(value), pts_s=value / 10, analyse=analyse)


def test_empty_ring() -> None:
    ring = FrameRing("cam", 4, (2, 3))
    assert ring.latest() is None
    refs, pixels = ring.window(3)
    assert refs == [] and pixels.shape == (0, 2, 3)


def test_latest_and_read() -> None:
    ring = FrameRing("cam", 4, (2, 3))
    for value in range(6):
        write(ring, value)
    ref = ring.latest()
    assert ref is not None and (ref.seq, ref.pts_s, ref.camera) == (5, 0.5, "cam")
    pixels = ring.read(ref)
    assert pixels is not None and (pixels == 5).all()
    assert ring.overwrites == 2  # 6 frames into 4 slots
    assert ring.frames_written == 6


def test_window_is_oldest_first_and_bounded() -> None:
    ring = FrameRing("cam", 5, (1,))
    for value in range(7):
        write(ring, value)
    refs, pixels = ring.window(4)
    assert [r.seq for r in refs] == [3, 4, 5, 6]
    assert pixels[:, 0].tolist() == [3, 4, 5, 6]
    with pytest.raises(ValueError):
        ring.window(5)  # the slot being written is never part of a window


def test_window_before_ring_fills() -> None:
    ring = FrameRing("cam", 8, (1,))
    write(ring, 1)
    write(ring, 2)
    refs, pixels = ring.window(5)
    assert [r.seq for r in refs] == [0, 1] and pixels[:, 0].tolist() == [1, 2]


def test_overwritten_frame_reads_as_none() -> None:
    ring = FrameRing("cam", 3, (1,))
    write(ring, 0)
    old = ring.latest()
    assert old is not None
    write(ring, 1)
    write(ring, 2)  # slot of frame 0 is now the one being written next
    assert ring.read(old) is None
    write(ring, 3)  # and now it is overwritten
    assert ring.read(old) is None


def test_latest_analysable() -> None:
    ring = FrameRing("cam", 4, (1,))
    write(ring, 0, analyse=True)
    write(ring, 1)
    write(ring, 2)
    ref = ring.latest(analysable_only=True)
    assert ref is not None and ref.seq == 0
    write(ring, 3)
    write(ring, 4)  # frame 0 pushed out: nothing analysable left
    assert ring.latest(analysable_only=True) is None


def test_concurrent_reader_never_sees_torn_frame() -> None:
    ring = FrameRing("cam", 3, (64, 64))
    stop = threading.Event()
    bad: list[int] = []

    def writer() -> None:
        value = 0
        while not stop.is_set():
            slot = ring.writable()
            slot[:32] = value % 256
            slot[32:] = value % 256  # two steps, so a torn read would show two values
            ring.commit(0.0, None, False)
            value += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        out = np.empty((64, 64), np.uint8)
        for _ in range(3000):
            ref = ring.latest()
            if ref is not None and ring.read(ref, out) is not None and out.min() != out.max():
                bad.append(ref.seq)
            _refs, window = ring.window(2)
            for frame in window:
                if frame.min() != frame.max():
                    bad.append(-1)
    finally:
        stop.set()
        thread.join()
    assert not bad


def test_window_ending_at_a_reference() -> None:
    ring = FrameRing("cam", 6, (1,))
    for value in range(4):
        write(ring, value)
    ref = ring.latest()
    assert ref is not None
    out = np.empty((3, 1), np.uint8)
    assert ring.window_ending(ref, 3, out) and out[:, 0].tolist() == [1, 2, 3]
    times = np.empty(3)  # and its frames' stream timestamps, never the wall clock
    assert ring.window_ending(ref, 3, out, times)
    assert times.tolist() == pytest.approx([0.1, 0.2, 0.3])
    write(ring, 4)
    assert ring.window_ending(ref, 3, out) and out[:, 0].tolist() == [1, 2, 3]  # still there
    for value in range(5, 8):
        write(ring, value)
    assert not ring.window_ending(ref, 3, out)  # frame 1 overwritten by now
    first = FrameRing("cam", 6, (1,))
    write(first, 0)
    only = first.latest()
    assert only is not None and not first.window_ending(only, 2, out[:2])  # no earlier frame
    first.writable()[:] = 1
    late = first.commit(wall_time=1.0, pts_s=None, analyse=True)  # a frame without one: NaN
    assert first.window_ending(late, 2, out[:2], times[:2])
    assert times[0] == 0.0 and np.isnan(times[1])


def test_window_never_spans_a_reconnect() -> None:
    ring = FrameRing("cam", 8, (1,))
    write(ring, 0)
    write(ring, 1)
    ring.new_segment()
    write(ring, 2)
    ref = ring.latest()
    out = np.empty((2, 1), np.uint8)
    assert ref is not None and not ring.window_ending(ref, 2, out)
    write(ring, 3)
    ref = ring.latest()
    assert ref is not None and ring.window_ending(ref, 2, out) and out[:, 0].tolist() == [2, 3]


def test_analysable_refs_between() -> None:
    ring = FrameRing("cam", 8, (1,))
    for value in range(6):
        write(ring, value, analyse=value % 2 == 0)  # 0, 2, 4 analysable
    assert [r.seq for r in ring.analysable_refs(0, 3)] == [2]  # only 2
    assert [r.seq for r in ring.analysable_refs(-1, 5)] == [0, 2, 4]  # oldest first
    assert [r.seq for r in ring.analysable_refs(0, 4)] == [2, 4]  # the upper end counts
