"""The frame ring in shared memory: a writer in another process, a writer killed mid-commit,
reads that race a writer lapping the ring, and no block left in /dev/shm."""

from __future__ import annotations

import errno
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest

from streamdet.capture.ring import _GEN, _NEXT_SEQ, FrameRing
from streamdet.errors import StreamdetError


def _write_frames(name: str, count: int) -> None:
    ring = FrameRing.attach(name, "cam", 8, (4, 4))
    for value in range(count):
        ring.writable()[:] = value
        ring.commit(wall_time=float(value), pts_s=value / 25, analyse=value % 2 == 0)


def test_frames_written_in_another_process_are_read_here() -> None:
    ring = FrameRing.shared("cam", 8, (4, 4))
    try:
        child = multiprocessing.get_context("spawn").Process(
            target=_write_frames, args=(ring.shm_name, 20)
        )
        child.start()
        child.join(30)
        assert child.exitcode == 0
        assert ring.frames_written == 20 and ring.overwrites == 12
        ref = ring.latest()
        assert ref is not None and (ref.seq, ref.pts_s) == (19, 19 / 25)
        pixels = ring.read(ref)
        assert pixels is not None and (pixels == 19).all()
        analysable = ring.latest(analysable_only=True)
        assert analysable is not None and analysable.seq == 18
        refs, window = ring.window(5)
        assert [r.seq for r in refs] == [15, 16, 17, 18, 19]
        assert window[:, 0, 0].tolist() == [15, 16, 17, 18, 19]
        out = np.empty((3, 4, 4), np.uint8)
        assert ring.window_ending(refs[-2], 3, out) and out[:, 0, 0].tolist() == [16, 17, 18]
    finally:
        ring.unlink()


def test_unlink_leaves_nothing_in_dev_shm() -> None:
    ring = FrameRing.shared("cam", 4, (2, 2))
    name = ring.shm_name
    assert name is not None and (Path("/dev/shm") / name).exists()
    ring.unlink()
    ring.unlink()  # idempotent
    assert not (Path("/dev/shm") / name).exists()
    ring.writable()[:] = 1  # the mapping itself stays usable until the last view goes
    ring.commit(1.0, None, True)
    assert ring.frames_written == 1


def test_a_writer_killed_inside_commit_is_undone_by_the_next_one() -> None:
    ring = FrameRing.shared("cam", 4, (2, 2))
    try:
        for value in range(3):
            ring.writable()[:] = value
            ring.commit(float(value), None, True)
        # What a SIGKILL between the two counter steps of commit() leaves: an odd counter.
        ring._header[_GEN] += 1
        ring._seq[3] = int(ring._header[_NEXT_SEQ])
        assert ring.latest() is None  # readers give up instead of hanging on it
        assert ring.analysable_refs(-1, 10) == []
        writer = FrameRing.attach(ring.shm_name or "", "cam", 4, (2, 2))
        latest = ring.latest()
        assert latest is not None and latest.seq == 2  # the half-committed frame is gone
        writer.writable()[:] = 7
        ref = writer.commit(7.0, None, True)
        assert ref.seq == 3 and ring.latest() == ref
        pixels = ring.read(ref)
        assert pixels is not None and (pixels == 7).all()
    finally:
        ring.unlink()


def test_a_copy_raced_by_a_writer_lapping_the_ring_counts_as_overwritten() -> None:
    ring = FrameRing.shared("cam", 4, (2, 2))
    try:
        ring.writable()[:] = 0
        ref = ring.commit(0.0, None, True)
        writer = FrameRing.attach(ring.shm_name or "", "cam", 4, (2, 2))
        out = np.empty((2, 2), np.uint8)
        pixels = ring.read(ref, out)
        assert pixels is not None  # nothing raced it
        for value in range(1, 4):  # frame 0's slot is now the one being written
            writer.writable()[:] = value
            writer.commit(float(value), None, True)
        assert ring.read(ref, out) is None
        assert not ring.window_ending(ref, 1, np.empty((1, 2, 2), np.uint8))
    finally:
        ring.unlink()


def test_shared_and_local_rings_take_the_same_bytes() -> None:
    local, shared = FrameRing("a", 5, (3, 2)), FrameRing.shared("b", 5, (3, 2))
    try:
        for ring in (local, shared):
            for value in range(7):
                ring.writable()[:] = value
                ring.commit(float(value), value / 10, value % 3 == 0)
        seen = [
            [(r.slot, r.seq, r.wall_time, r.pts_s) for r in ring.analysable_refs(-1, 9)]
            for ring in (local, shared)
        ]
        assert seen[0] == seen[1] == [(3, 3, 3.0, 0.3), (1, 6, 6.0, 0.6)]
        windows = [ring.window(4)[1] for ring in (local, shared)]
        assert np.array_equal(*windows) and windows[0][:, 0, 0].tolist() == [3, 4, 5, 6]
        assert local.shm_name is None and os.path.exists(f"/dev/shm/{shared.shm_name}")
    finally:
        shared.unlink()


def test_no_room_in_dev_shm_is_a_clear_error_not_a_later_sigbus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = set(os.listdir("/dev/shm"))

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", full)  # what a full tmpfs answers
    with pytest.raises(StreamdetError, match=r"\[cam\] no room in shared memory .* 0\.1 MB"):
        FrameRing.shared("cam", 8, (100, 100))
    assert set(os.listdir("/dev/shm")) == before  # nothing left behind
