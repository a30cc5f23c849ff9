"""Which worker runs which camera: weighted rendezvous (highest random weight) hashing, pure.

Every worker computes the same answer from the same member list, with no coordinator: each
(camera, worker) pair gets a pseudo-random number from a hash, and the camera goes to the
worker with the highest score ``-capacity / ln(u)`` (``u`` in (0, 1)), the weighted form of
rendezvous hashing (Schindelhauer & Schomaker 2005): a worker of capacity 2 wins about twice as
many cameras as one of capacity 1. When a worker leaves, only its cameras move (each to the
runner-up); when one joins, only the cameras it now wins move to it — about M / N of them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping

_SCALE = float(2**64)


def _unit(camera: str, worker: str) -> float:
    """A number in (0, 1), the same on every machine for the pair (blake2b, not ``hash()``:
    Python salts ``hash`` per process)."""
    digest = hashlib.blake2b(f"{camera}\0{worker}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _SCALE


def score(camera: str, worker: str, capacity: float) -> float:
    return -capacity / math.log(_unit(camera, worker))


def owner(camera: str, members: Mapping[str, float]) -> str | None:
    """The worker (name -> capacity) that runs ``camera``; None without members. Ties go to
    the smaller name, so that every worker agrees."""
    if not members:
        return None
    return max(sorted(members), key=lambda w: score(camera, w, members[w]))


def assign(cameras: Iterable[str], members: Mapping[str, float]) -> dict[str, str]:
    """Every camera's worker (a camera is left out when there is no member)."""
    placed = {camera: owner(camera, members) for camera in cameras}
    return {camera: worker for camera, worker in placed.items() if worker is not None}


def moved(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """The cameras whose worker changed (added and removed cameras do not count)."""
    return sorted(c for c in before.keys() & after.keys() if before[c] != after[c])
