"""Weighted rendezvous hashing: each camera on one worker, few moves on a change, weights."""

from __future__ import annotations

import math

from streamdet.fleet.assign import assign, moved, owner

CAMERAS = [f"cam{i:02d}" for i in range(12)]


def test_every_camera_goes_to_exactly_one_live_worker() -> None:
    members = {"w1": 1.0, "w2": 1.0, "w3": 1.0}
    placed = assign(CAMERAS, members)
    assert sorted(placed) == CAMERAS
    assert set(placed.values()) <= set(members)
    assert assign(CAMERAS, {}) == {}


def test_a_4th_worker_moves_at_most_ceil_12_over_4_plus_1_cameras() -> None:
    before = assign(CAMERAS, {"w1": 1.0, "w2": 1.0, "w3": 1.0})
    after = assign(CAMERAS, {"w1": 1.0, "w2": 1.0, "w3": 1.0, "w4": 1.0})
    changed = moved(before, after)
    assert changed, "the new worker gets cameras"
    assert len(changed) <= math.ceil(12 / 4) + 1
    assert all(after[c] == "w4" for c in changed), "only moves to the new worker"


def test_a_worker_leaving_moves_only_its_own_cameras() -> None:
    members = {"w1": 1.0, "w2": 1.0, "w3": 1.0}
    before = assign(CAMERAS, members)
    after = assign(CAMERAS, {w: c for w, c in members.items() if w != "w2"})
    assert moved(before, after) == sorted(c for c, w in before.items() if w == "w2")


def test_stable_whatever_the_order_of_members_and_the_process() -> None:
    forward = assign(CAMERAS, {"w1": 1.0, "w2": 1.0, "w3": 1.0})
    backward = assign(reversed(CAMERAS), {"w3": 1.0, "w2": 1.0, "w1": 1.0})
    assert forward == backward
    # fixed by the hash (blake2b), not by Python's per-process salted hash()
    assert owner("cam00", {"w1": 1.0, "w2": 1.0, "w3": 1.0}) == forward["cam00"]


def test_capacity_weights_the_share() -> None:
    cameras = [f"c{i}" for i in range(3000)]
    placed = assign(cameras, {"big": 3.0, "small": 1.0})
    share = sum(1 for w in placed.values() if w == "big") / len(cameras)
    assert 0.70 < share < 0.80  # 3 / (3 + 1)
