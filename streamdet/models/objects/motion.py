"""How far each object moved since the frame before, checked against the frames (NumPy).

DIS flow (``finding.Finder._flow``) gives each object's median vector. It follows an object
that moves less than about its own width between two frames; one that moves farther (a thrown
bag, a runner near a 12 fps camera, a car crossing a road view in under a second) has left no
overlap for its coarse scales to follow, and DIS gives it a vector of the background it moved
onto: ~0, or noise. Measured on a 12 x 30 pixel sprite on a Ped2 frame: 2-15 pixels a frame
were found to within 0.8 pixel, 20-45 came out as -7 to 5.

So each object's vector is checked: the object's pixels moved back by it should land on the
same grey levels in the frame before (``mismatch``, mean absolute difference per object). When
they do not (``MISMATCH`` of the object's own difference from the background or more), the
objects of the frame before (found against the same background) of about the same height within
``REACH`` object heights are the candidates, each offering the move from its centroid to the
object's; the one whose move best explains the object's pixels replaces the flow's vector if
it explains them better and lies farther from it than DIS would miss (``FOLLOWED`` of the
object's width: nearer, the flow's sub-pixel median is the better estimate; on Ped2's training
footage a far walker's 0.5-pixel step became another fragment's 1.2). A walker's flow
explains it: only the few objects whose vector does not are searched, and only then is the
frame before looked at for objects (~0.3 ms).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MISMATCH = 0.5  # x the object's difference from the background: the vector does not explain it
REACH = 4.0  # object heights: how far a candidate in the frame before may be
HEIGHT_RATIO = 1.5  # a candidate at most this much taller or shorter, wider or narrower
BETTER = 0.5  # x the flow vector's mismatch: what a candidate's must be below
LEAST_SIDE = 8  # pixels: thinner objects (fragments) are not searched for
LEFT = 0.5  # share of a candidate's box that may be foreground now: more, it has not left
# x the object's narrower side: a candidate's move that differs from the flow's vector by less
# is within what DIS follows, and the flow's (sub-pixel, a median over the object's pixels) is
# the better of the two; the check is there for the moves DIS loses, not to second-guess it
FOLLOWED = 0.5


def mismatch(
    prev: np.ndarray,
    cur: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    owner: np.ndarray,
    moves: np.ndarray,
    count: int,
) -> np.ndarray:
    """(count,) mean |cur - prev| over each object's pixels (``ys``, ``xs``, their object
    ``owner``) with prev read where each pixel was one move (``moves`` (count, 2): dx, dy in
    pixels a frame) earlier."""
    h, w = cur.shape
    step = np.rint(moves).astype(np.int64)
    py = np.clip(ys - step[owner, 1], 0, h - 1)
    px = np.clip(xs - step[owner, 0], 0, w - 1)
    gap = np.abs(cur[ys, xs].astype(np.int16) - prev[py, px].astype(np.int16))
    total = np.bincount(owner, weights=gap, minlength=count)
    out: np.ndarray = total / np.maximum(np.bincount(owner, minlength=count), 1)
    return out


def verified_moves(
    prev: np.ndarray,
    cur: np.ndarray,
    background: np.ndarray,
    objects: np.ndarray,
    pixels: tuple[np.ndarray, np.ndarray, np.ndarray],
    moves: np.ndarray,
    found: np.ndarray,
    regions_before: Callable[[], np.ndarray],
) -> np.ndarray:
    """``moves`` (n, 2) (the flow's dx, dy per object) with each one that does not explain
    its object replaced by the best move from an object of the frame before, when that one
    explains it better. ``objects``: the frame's region rows (x, y, w, h, label, cx, cy);
    ``pixels``: every object pixel's row, column and object index; ``found``: the frame's
    foreground (bool, its objects' pixels); ``regions_before``: the frame before's region
    rows, asked for only when some vector needs checking."""
    ys, xs, owner = pixels
    n = len(objects)
    err = mismatch(prev, cur, ys, xs, owner, moves, n)
    own = np.abs(cur[ys, xs].astype(np.int16) - background[ys, xs].astype(np.int16))
    contrast = np.bincount(owner, weights=own, minlength=n) / np.maximum(
        np.bincount(owner, minlength=n), 1
    )
    small = (objects[:, 2] < LEAST_SIDE) | (objects[:, 3] < LEAST_SIDE)  # fragments: anything
    doubtful = np.flatnonzero((err > MISMATCH * contrast) & ~small)  # explains them
    if not len(doubtful):
        return moves
    before = regions_before()
    if not len(before):
        return moves
    # a candidate must have left its place: where it was, the frame is (mostly) no object now
    # (a person of a crowd half explains another, and is still where it was)
    gone = np.array([_taken(found, row) < LEFT for row in before])
    out = moves.copy()
    for i in doubtful:
        tall = objects[i, 3]
        # how much taller or shorter, wider or narrower, whichever is more
        sides = np.abs(np.log(before[:, 2:4] / objects[i, 2:4]))
        ratio = np.exp(sides.max(axis=1))
        shift = objects[i, 5:7] - before[:, 5:7]  # (m, 2): from each candidate to the object
        near = np.hypot(shift[:, 0], shift[:, 1]) <= REACH * tall
        ok = near & (ratio <= HEIGHT_RATIO) & gone
        if not ok.any():
            continue
        mine = owner == i
        one = np.zeros(len(ys[mine]), np.int64)
        # a candidate must explain the object (as the flow's vector failed to), and clearly
        # better than that vector: in a crowd, another person's move half explains anyone
        best, best_err = None, min(MISMATCH * contrast[i], BETTER * err[i])
        for move in shift[ok]:
            e = float(mismatch(prev, cur, ys[mine], xs[mine], one, move[None], 1)[0])
            if e < best_err:
                best, best_err = move, e
        if best is not None and np.hypot(*(best - moves[i])) > FOLLOWED * objects[i, 2:4].min():
            out[i] = best
    return out


def _taken(found: np.ndarray, row: np.ndarray) -> float:
    """Share of region ``row``'s box (x, y, w, h, ...) that is foreground in ``found``."""
    x, y, w, h = (int(v) for v in row[:4])
    return float(found[y : y + h, x : x + w].mean()) if w and h else 1.0
