"""Finding a window's objects without a downloaded detector, and describing each (OpenCV,
NumPy): the learned background and its per-pixel variation, foreground regions, DIS flow over
the objects' rectangle, each object's features (``features.FEATURES``) and crop, and the
perspective line its size and speed are measured against. See ``streamdet.models.objects``."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from torch import Tensor

from streamdet.models.base import TrainingData
from streamdet.models.motionflow import flow_pool, thread_dis
from streamdet.models.objects.features import FEATURES
from streamdet.models.objects.motion import verified_moves
from streamdet.models.objects.register import Anchors, moved, still_objects


@dataclass(frozen=True)
class View:
    """What the finder derives from one camera's learned view (``Finder.views``)."""

    bands: np.ndarray  # background_bands
    limit: np.ndarray  # the least difference from the background that is foreground, per pixel
    anchors: Anchors | None  # its registration tiles (None: registration off)


class Finder:
    """A window's objects at one model's settings (``params``: the model's, shared)."""

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = params
        # views by their model's view token (a new one whenever the background changes): a
        # camera's bands and limits cost ~1 ms to derive, more than the window's regions
        self._views: OrderedDict[tuple[int, int], View] = OrderedDict()

    def regions(
        self, frame: np.ndarray, bands: np.ndarray, limit: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Foreground regions of ``frame``, largest first: rows (n, 7) x, y, w, h, label,
        centroid x, centroid y; and the label image. ``bands``: ``background_bands``."""
        grey = frame.astype(np.int16)
        background = bands[0]
        # a global exposure change is no object
        exposure = np.int16(np.median((grey - background)[::4, ::4]))
        grey -= exposure
        fg = (np.abs(grey - background) > limit).astype(np.uint8)
        if bands.shape[0] == 3:  # foreground only near a core that differs from the
            # background's darkest and brightest nearby too: a shaken edge differs from the
            # background only where the edge was; the core's neighbours keep the object's shape
            low, high = bands[1], bands[2]
            core = ((grey - high > limit) | (low - grey > limit)).astype(np.uint8)
            fg &= cv2.dilate(core, np.ones((5, 5), np.uint8))
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
        # Grana's block-based labelling: the same labels as OpenCV's default algorithm, and
        # 2.7x faster on one thread here (0.23 vs 0.64 ms at 360x240)
        _, labels, stats, centres = cv2.connectedComponentsWithStatsWithAlgorithm(
            fg, 8, cv2.CV_32S, cv2.CCL_GRANA
        )
        area, side = int(self.params["min_area"]), int(self.params["min_side"])
        h, w = frame.shape
        x, y, bw, bh, pixels = stats[1:].T
        # a sliver at the frame's edge is an object entering or leaving: too little of it is
        # seen to say how big or fast it is
        edge = (x == 0) | (y == 0) | (x + bw == w) | (y + bh == h)
        least = np.where(edge, 3 * side, side)
        ok = np.flatnonzero((pixels >= area) & (bw >= least) & (bh >= least))
        keep = (ok[np.argsort(-pixels[ok], kind="stable")] + 1)[: int(self.params["max_objects"])]
        rows = np.column_stack([stats[keep, :4], keep, centres[keep]]).astype(np.float64)
        return rows.reshape(-1, 7), labels

    def describe(
        self,
        pair: np.ndarray,
        bands: np.ndarray,
        limit: np.ndarray,
        perspective: np.ndarray,
        anchors: Anchors | None = None,
        time_scale: float = 1.0,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One window -> (features (n, F), crops (n, 2, c, c), boxes (n, 4) x0 y0 x1 y1 in 0..1);
        ``bands`` as ``regions`` takes them. With ``anchors`` (of the same background), a frame
        with an object that stands still is looked at for a drifted view, and its objects are
        found again against the background moved by the drift (``register``). ``time_scale``:
        the camera's usual frame interval over this pair's (moves are measured per usual
        frame interval: a frame the camera dropped between the two makes no one fast)."""
        prev, cur = pair[-2], pair[-1]
        h, w = bands.shape[1:]
        if cur.shape != (h, w):  # a window at another size than the model learned at
            prev = cv2.resize(prev, (w, h), interpolation=cv2.INTER_AREA)
            cur = cv2.resize(cur, (w, h), interpolation=cv2.INTER_AREA)
        found, labels = self.regions(cur, bands, limit)
        c = int(self.params["crop"])
        if not len(found):  # (most of a quiet camera's frames: nothing more to do)
            return _described(0, c)
        diff = cv2.absdiff(prev, cur)
        moving = diff > float(self.params["motion_level"])
        if anchors is not None and still_objects(found, moving):
            dx, dy = anchors.shift(cur)
            if dx or dy:
                bands, limit = moved(bands, dx, dy), moved(limit, dx, dy)
                found, labels = self.regions(cur, bands, limit)
        boxes = found[:, :5].astype(np.int32)
        feats, crops, norm_boxes = _described(len(boxes), c)
        if not len(boxes):  # the drifted edges were all there was
            return feats, crops, norm_boxes
        flow = self._flow(prev, cur, boxes)
        # every object's pixels at once: its index in ``boxes`` per pixel (-1: none)
        index = np.full(int(labels.max()) + 1, -1, np.int64)
        index[boxes[:, 4]] = np.arange(len(boxes))
        owner = index[labels]
        mine = owner >= 0
        owner = owner[mine]
        # medians: DIS makes up wild vectors where content enters from outside the frame
        vx, vy = (group_medians(flow[..., a][mine], owner, len(boxes)) for a in (0, 1))
        if self.params["verify_moves"]:  # a move farther than the object is wide: not DIS's
            ys, xs = np.nonzero(mine)
            vx, vy = verified_moves(
                prev,
                cur,
                bands[0],
                found,
                (ys, xs, owner),
                np.column_stack([vx, vy]),
                mine,
                lambda: self.regions(prev, bands, limit)[0],
            ).T
        vx, vy = vx * time_scale, vy * time_scale
        counts = np.bincount(owner, minlength=len(boxes))
        still = 1.0 - np.bincount(owner, weights=moving[mine], minlength=len(boxes)) / counts
        x, y, bw, bh = (boxes[:, i].astype(np.float64) for i in range(4))
        feats[:, 0], feats[:, 1] = (x + bw / 2) / w, (y + bh) / h  # the foot
        feats[:, 2], feats[:, 3] = np.log(bh / h), np.log(bw / bh)
        feats[:, 5] = np.hypot(vx, vy) / h * 100.0
        feats[:, 7], feats[:, 8] = vx, vy  # pixels a frame until put in place below
        feats[:, 9] = still
        norm_boxes[:] = np.column_stack([x / w, y / h, (x + bw) / w, (y + bh) / h])
        for i, (bx, by, bwi, bhi, _) in enumerate(boxes):
            crops[i] = _crop(cur, diff, (bx, by, bwi, bhi), c)
        in_place(feats, perspective, h)
        return feats, crops, norm_boxes

    def _flow(self, prev: np.ndarray, cur: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Dense flow (h, w, 2) in pixels a frame, computed only over the rectangle around the
        objects' boxes (with a margin for where they came from): the flow is the main cost,
        and most of a camera's frame is empty background. Zero elsewhere."""
        h, w = cur.shape
        pad = FLOW_MARGIN
        x0 = max(int(boxes[:, 0].min()) - pad, 0)
        y0 = max(int(boxes[:, 1].min()) - pad, 0)
        x1 = min(int((boxes[:, 0] + boxes[:, 2]).max()) + pad, w)
        y1 = min(int((boxes[:, 1] + boxes[:, 3]).max()) + pad, h)
        # DIS reallocates for every new size: round the rectangle up to steps of FLOW_STEP
        x1, y1 = _stepped(x0, x1, w), _stepped(y0, y1, h)
        x0, y0 = max(x1 - _round_up(x1 - x0), 0), max(y1 - _round_up(y1 - y0), 0)
        flow = np.zeros((h, w, 2), np.float32)
        dis = thread_dis(self.params, (x1 - x0, y1 - y0))
        flow[y0:y1, x0:x1] = dis.calc(  # type: ignore[call-overload]
            np.ascontiguousarray(prev[y0:y1, x0:x1]), np.ascontiguousarray(cur[y0:y1, x0:x1]), None
        )
        return flow

    def describe_all(
        self, pairs: np.ndarray, state: dict[str, Tensor], time_scales: np.ndarray | None = None
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every window's objects, spread over ``flow_pool()`` (the flow is the cost);
        ``time_scales``: each window's ``describe`` time scale (None: all 1)."""
        views = self.views(state)
        persp = state["perspective"].cpu().numpy()
        scales = np.ones(len(pairs)) if time_scales is None else time_scales

        def one(b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            s = b if len(views) > 1 else 0  # (one camera's state for every window)
            view = views[s]
            return self.describe(
                pairs[b], view.bands, view.limit, persp[s], view.anchors, float(scales[b])
            )

        if len(pairs) == 1:
            return [one(0)]
        return list(flow_pool().map(one, range(len(pairs))))

    def views(self, state: dict[str, Tensor]) -> list[View]:
        """Each camera's view (of the stacked ``state``), derived again only for a view token
        not seen lately: a background changes when it settles (about once a second live),
        not for every window. (On the thread that scores; a model that writes its background
        otherwise must take ``ObjectModel.new_view``.)"""
        tokens = state["view_token"].cpu().numpy().reshape(-1)
        shifts = state["shift"].cpu().numpy().reshape(-1)
        reach = int(self.params["register_px"])
        out = []
        for i, (token, shift) in enumerate(zip(tokens, shifts, strict=True)):
            key = (int(token), int(shift))
            view = self._views.get(key)
            if view is None:
                background = np.rint(state["background"][i].cpu().numpy()).astype(np.int16)
                view = View(
                    background_bands(background, int(shift)),
                    self.limits(state["noise"][i].cpu().numpy()),
                    Anchors(background, reach) if reach > 0 else None,
                )
                self._views[key] = view
            self._views.move_to_end(key)
            out.append(view)
        while len(self._views) > max(VIEWS_KEPT, 2 * len(out)):
            self._views.popitem(last=False)
        return out

    def limits(self, noise: np.ndarray) -> np.ndarray:
        level = float(self.params["bg_level"])
        return np.maximum(level, float(self.params["noise_k"]) * noise).astype(np.int16)


VIEWS_KEPT = 8  # views kept at least (twice the cameras of the last batch, if more)
FLOW_MARGIN = 32  # pixels around the objects' rectangle that the flow is computed over
FLOW_STEP = 32  # its sides are rounded up to multiples of this (a DIS object per size)


def _described(n: int, crop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Room for ``n`` objects' features, crops and boxes (zeros)."""
    return (
        np.zeros((n, len(FEATURES)), np.float32),
        np.zeros((n, 2, crop, crop), np.float32),
        np.zeros((n, 4), np.float32),
    )


def group_medians(values: np.ndarray, group: np.ndarray, groups: int) -> np.ndarray:
    """The median of ``values`` (float32) in each of ``groups`` groups (``group``: each
    value's, 0 .. groups - 1, every group non-empty), as ``np.median`` takes it (the mean of
    the two middle values of an even count). One sort of 64-bit keys, the group above the
    value's bits made unsigned in the same order, for all groups at once: a median call per
    object, and then two stable argsorts, each cost more (~3-6x at a frame's 3-20k pixels)."""
    bits = np.ascontiguousarray(values, np.float32).view(np.uint32)
    negative = (bits >> 31).astype(bool)
    key = np.where(negative, ~bits, bits | np.uint32(0x80000000)).astype(np.uint64)
    key |= group.astype(np.uint64) << np.uint64(32)
    key.sort()
    low_bits = key.astype(np.uint32)  # (the value's 32 bits: the group is cut off)
    ordered = np.where(low_bits >> 31, low_bits & np.uint32(0x7FFFFFFF), ~low_bits)
    ordered = ordered.view(np.float32)
    counts = np.bincount(group, minlength=groups)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    low, high = ordered[starts + (counts - 1) // 2], ordered[starts + counts // 2]
    out: np.ndarray = ((low + high) / 2).astype(np.float64)
    return out


def _round_up(length: int) -> int:
    return -(-length // FLOW_STEP) * FLOW_STEP


def _stepped(start: int, end: int, limit: int) -> int:
    """The end of [start, end) grown to a multiple of FLOW_STEP long, capped at ``limit``."""
    return min(start + _round_up(end - start), limit)


def background_bands(background: np.ndarray, shift: int) -> np.ndarray:
    """(3, h, w) int16: the background, and its darkest and brightest pixel within ``shift``
    pixels of each pixel; (1, h, w), the background alone, when 0."""
    if shift <= 0:
        return background[None]
    kernel = np.ones((2 * shift + 1, 2 * shift + 1), np.uint8)
    return np.stack([background, cv2.erode(background, kernel), cv2.dilate(background, kernel)])


def in_place(feats: np.ndarray, perspective: np.ndarray, height: int) -> None:
    """Fill the features measured against the object height expected at the foot's row
    (size, speed, velocity for the place) from the raw ones, in place. Velocity columns hold
    pixels a frame on entry."""
    slope, icpt, floor = (float(v) for v in perspective)
    foot = feats[:, 1] * height
    expected = np.maximum(slope * foot + icpt, floor)
    tall = np.exp(feats[:, 2]) * height
    speed = feats[:, 5] * height / 100.0
    feats[:, 4] = np.log(tall / expected)
    feats[:, 6] = speed / expected
    feats[:, 7] /= expected
    feats[:, 8] /= expected


def _crop(cur: np.ndarray, diff: np.ndarray, box: tuple[int, int, int, int], c: int) -> np.ndarray:
    """The object's square neighbourhood, grey and frame difference, scaled to ``c`` x ``c``."""
    x, y, bw, bh = box
    side = max(bw, bh) + 4
    cx, cy = x + bw // 2, y + bh // 2
    x0, y0 = max(cx - side // 2, 0), max(cy - side // 2, 0)
    grey = cur[y0 : y0 + side, x0 : x0 + side]
    moving = diff[y0 : y0 + side, x0 : x0 + side]
    out = np.empty((2, c, c), np.float32)
    out[0] = cv2.resize(grey, (c, c), interpolation=cv2.INTER_AREA) / 255.0
    out[1] = cv2.resize(moving, (c, c), interpolation=cv2.INTER_AREA) / 64.0
    return out


def learn_background(data: TrainingData, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel median of ``count`` frames spread over the footage, and each pixel's robust
    spread around it (1.4826 x the median absolute deviation)."""
    index = [(c, i) for c, clip in enumerate(data.clips) for i in range(len(clip))]
    pick = np.linspace(0, len(index) - 1, min(count, len(index))).astype(int)
    sample = np.stack([data.clips[index[k][0]][index[k][1]] for k in pick])
    background = np.median(sample, axis=0).astype(np.float32)
    spread = 1.4826 * np.median(np.abs(sample - background), axis=0)
    return background, spread.astype(np.float32)


def undo_place(feats: np.ndarray, perspective: np.ndarray, height: int) -> None:
    """Velocity columns back to pixels a frame (the inverse of ``in_place``'s division)."""
    slope, icpt, floor = (float(v) for v in perspective)
    expected = np.maximum(slope * feats[:, 1] * height + icpt, floor)
    feats[:, 7] *= expected
    feats[:, 8] *= expected


def fit_perspective(boxes: list[tuple[float, float]], height: int) -> tuple[float, float, float]:
    """Expected object height (pixels) at a foot row: a robust line through (foot, height)
    pairs of the training objects; a floor of a quarter of their median height. Without enough
    objects (or a slope that makes heights negative) the line is flat at the median."""
    if len(boxes) < 10:
        return 0.0, 0.1 * height, max(2.0, 0.025 * height)
    foot, tall = (np.array(v, np.float64) for v in zip(*boxes, strict=True))
    median = float(np.median(tall))
    keep = np.ones(len(foot), bool)
    slope, icpt = 0.0, median
    for _ in range(3):  # refit without the worst-fitting (merged groups, fragments)
        if keep.sum() < 10 or np.ptp(foot[keep]) < 1e-6:
            break
        slope, icpt = np.polyfit(foot[keep], tall[keep], 1)
        resid = np.abs(tall - (slope * foot + icpt))
        keep = resid <= 2.5 * max(float(np.median(resid[keep])), 1e-6)
    floor = max(2.0, 0.25 * median)
    if slope * height + icpt < floor and icpt < floor:
        slope, icpt = 0.0, median
    return float(slope), float(icpt), floor
