"""The batching policy, tested as the pure code it is."""

from __future__ import annotations

import pytest

from streamdet.inference.batcher import Batcher


def test_full_batch_is_due_at_once() -> None:
    b: Batcher[int] = Batcher(max_batch=3, max_wait_s=1.0)
    for i, cam in enumerate("abc"):
        assert not b.due(0.0)
        b.offer(cam, i, 0.0)
    assert b.due(0.0) and b.wait_s(0.0) == 0.0
    assert [p.camera for p in b.take()] == ["a", "b", "c"]
    assert len(b) == 0 and b.wait_s(0.0) is None


def test_partial_batch_waits_for_the_deadline() -> None:
    b: Batcher[int] = Batcher(max_batch=8, max_wait_s=0.05)
    b.offer("a", 1, 10.0)
    b.offer("b", 2, 10.02)
    assert not b.due(10.04)
    assert b.wait_s(10.04) == pytest.approx(0.01)
    assert b.due(10.05)
    assert [p.item for p in b.take()] == [1, 2]


def test_newer_frame_supersedes_and_is_counted_keeping_the_wait() -> None:
    b: Batcher[int] = Batcher(max_batch=4, max_wait_s=0.1)
    b.offer("a", 1, 0.0)
    b.offer("a", 2, 0.08)
    assert len(b) == 1 and b.superseded == {"a": 1}
    assert b.due(0.1)  # the camera has waited since 0.0
    (p,) = b.take()
    assert (p.item, p.arrived) == (2, 0.0)


def test_late_camera_waits_for_next_batch_and_oldest_go_first() -> None:
    b: Batcher[str] = Batcher(max_batch=2, max_wait_s=1.0)
    b.offer("c", "c1", 0.3)
    b.offer("a", "a1", 0.1)
    b.offer("b", "b1", 0.2)
    assert [p.camera for p in b.take()] == ["a", "b"]
    assert [p.camera for p in b.take()] == ["c"]


def test_backlog_keeps_a_late_frame_for_the_next_batch_and_bounds_the_rest() -> None:
    b: Batcher[str] = Batcher(max_batch=4, max_wait_s=0.1, backlog=2)
    b.offer("a", "a1", 0.0)
    b.offer("b", "b1", 0.01)
    b.offer("a", "a2", 0.2)  # arrived while a batch ran late: kept, not superseded
    assert len(b) == 2 and b.pending("a") == 2 and b.superseded == {}
    assert [p.item for p in b.take()] == ["a1", "b1"]  # one frame per camera per batch
    assert not b.due(0.25) and b.due(0.31)  # a2 waits from 0.2, like any new frame
    b.offer("a", "a3", 0.25)
    b.offer("a", "a4", 0.28)  # past the backlog: the oldest pending (a2) goes, counted
    assert b.pending("a") == 2 and b.superseded == {"a": 1}
    (p,) = b.take()
    assert (p.item, p.arrived) == ("a3", 0.2)  # it inherits the wait of the frame it replaced
    assert [p.item for p in b.take()] == ["a4"] and len(b) == 0


def test_bad_policy() -> None:
    with pytest.raises(ValueError):
        Batcher(max_batch=0, max_wait_s=1)
    with pytest.raises(ValueError):
        Batcher(max_batch=1, max_wait_s=1, backlog=0)


def test_a_discarded_camera_leaves_no_pending_frame_and_no_count() -> None:
    b: Batcher[str] = Batcher(max_batch=2, max_wait_s=0.1)
    b.offer("a", "a1", 0.0)
    b.offer("a", "a2", 0.01)  # supersedes a1
    b.offer("b", "b1", 0.02)
    b.discard("a")  # removed by a config reload
    assert len(b) == 1 and b.pending("a") == 0 and b.superseded == {}
    assert not b.due(0.05)  # b1 alone is not a full batch, and has not waited long enough
    assert [p.item for p in b.take()] == ["b1"]
    b.discard("gone")  # never seen: nothing to do
