"""Objects against the camera's own normal ("objects"): what kinds of things happen where.

Per window (the newest frame and the one before), at the model's input size:

1. **Objects without a downloaded detector.** The camera's background is learned from its normal
   footage (the per-pixel median of training frames) with each pixel's own normal variation (its
   median absolute deviation), so a flickering screen or a burned-in clock needs a larger change
   than a quiet wall. A pixel is foreground where it differs from the background by more than
   ``max(bg_level, noise_k x its variation)``, after removing the frame's median offset (a
   global exposure change), and lies near a core that differs by as much from the
   background's darkest and brightest within ``shift_tolerance`` pixels (a shaken or jittering
   view moves the background's edges by a pixel; they differ from the background only where
   the edge was, and raise no core). Connected regions of the cleaned mask are the objects.
   On the validation sets (below) the tolerance gave AUC 0.904 -> 0.908 and 0.930 -> 0.933;
   comparing every pixel with the darkest and brightest alone (0.918, 0.939) lost a person on
   textured grass (the synthetic scene's forbidden-area walker).
2. **Per object:** where its foot is, how tall and wide it is, how fast and which way it moves
   (DIS optical flow, as ``motionflow``: the median vector over the object's pixels), how
   much of it is still (a lingering person, a left bag), and an appearance/motion embedding
   from a small convolutional autoencoder trained on this camera's own object crops (grey and
   frame difference, 24x24). Size and speed are given twice: raw, and divided by the object height
   expected at the foot's row (a line fitted on the training objects), so that perspective is
   learned: a walker near the camera is big and fast in pixels *there*.
3. **Density of normal:** a bank of the training objects' standardised features. Each
   feature subspace (``SUBSPACES``: place with speed, with size, with direction, with
   stillness, with look) scores an object by its mean distance to its ``k`` nearest normal
   objects there, over the same distance for normal objects of other moments (every fifth
   block of training windows against the rest), so 1 is typical; the object's score is the
   highest of them (as AI-VAD scores velocity, pose and appearance with a density each). One
   distance over all features at once let a bike's speed drown in the spread of the
   walkers' looks and shapes: on the validation sets (pasted anomalies in the real clips,
   Ped2 training clips) AUC 0.83 -> 0.91 and 0.926 -> 0.930 (``scoring: joint`` keeps that).
   ``k`` neighbours and down-weighted position make the density smooth: a normal walker at a
   rarely visited spot has walkers of its size and speed nearby in the other features.
4. **Score and reason:** the frame score is the highest object score (0 with no object); the
   anomaly map paints each object's score over its box; the reason is the feature group
   (fast, large/small, unusual place, wrong way, unusual look, lingering, left behind) that
   contributes most to the object's distance from its nearest normal neighbours.
5. **Learning that goes on:** after the trained rows the bank keeps two rings of fixed size:
   objects the camera saw far from any event (``online_bank``, oldest replaced first) and
   objects an operator said were normal (``taught_bank``, each k times); ``learn_normal``
   writes either from the feature rows ``forward`` returns (``ModelOutput.features``).

The CNN is the only part with weights; it runs in torch for all cameras' crops in one call
(``forward_grouped`` maps each camera's encoder over its crops with ``torch.vmap``) and exports
to ONNX on its own (``encoder_onnx``). The background subtraction, connected regions and flow are
OpenCV/NumPy outside torch, like ``motionflow``'s flow.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from streamdet.errors import ModelError
from streamdet.frames import REASONS
from streamdet.models.base import (
    AnomalyModel,
    ModelOutput,
    ModelSpec,
    Progress,
    TrainingData,
    TrainSettings,
    with_defaults,
)
from streamdet.models.motion import sample_windows
from streamdet.models.motionflow import DIS_KEYS, MOTIONFLOW_DEFAULTS, flow_pool, thread_dis

OBJECT_DEFAULTS: dict[str, Any] = {
    "bg_level": 20.0,  # grey levels: least difference from the background that is foreground
    "noise_k": 4.0,  # x a pixel's normal variation (robust std) when that is larger
    "motion_level": 16.0,  # grey levels: a pixel of an object "moves" above this frame change
    "min_area": 24,  # pixels at the model's size: smaller regions are noise
    "min_side": 4,  # pixels: thinner regions are edges and compression lines, not objects
    "max_objects": 16,  # largest objects kept per frame (the output has this many rows)
    "k": 5,  # nearest normal objects an object is compared with
    "bank": 4096,  # normal objects kept from training (fixed, so that cameras' models stack)
    "online_bank": 1024,  # then a ring of normal objects learned on line, oldest replaced first
    "taught_bank": 1024,  # then a ring of objects an operator said were normal (feedback)
    "samples": 600,  # training windows looked at (neighbours at 25 fps are near copies)
    "background_frames": 120,  # training frames the background median is taken over
    # pixels (at the model's size): a pixel is compared with the background's darkest and
    # brightest within this distance, so a camera's shake or jitter (an edge moved by a
    # pixel) is no object
    "shift_tolerance": 1,
    "scoring": "groups",  # groups: the highest of the subspaces' scores; joint: one k-NN
    "place_weight": 0.5,  # weight of the position features against the others
    "look_weight": 0.5,  # weight of the embedding (spread over its dimensions)
    "embed": 8,  # embedding size
    "crop": 24,  # crop side, pixels
    "ae_steps": 200,  # autoencoder training steps (batch 64)
    # DIS optical flow over the objects' rectangle (as ``motionflow``'s keys): only each
    # object's median vector is used
    **{key: MOTIONFLOW_DEFAULTS[key] for key in DIS_KEYS},
}
# Feature columns. Groups give an event its reason.
FEATURES = (
    "foot_x",
    "foot_y",
    "log_height",
    "log_aspect",
    "log_height_for_place",
    "speed",
    "speed_for_place",
    "vx_for_place",
    "vy_for_place",
    "still_share",
)
# Least spread each feature is standardised with, in its own units: a scene whose walkers all
# keep one pace and lane would otherwise make a hair's deviation (a flow estimate near the
# frame's edge) a hundred spreads away.
FLOORS = (0.02, 0.02, 0.05, 0.05, 0.05, 0.1, 0.01, 0.01, 0.01, 0.05)
GROUPS: dict[str, tuple[int, ...]] = {
    "place": (0, 1),
    "size": (2, 4),
    "speed": (5, 6),
    "direction": (7, 8),
    "still": (9,),
    "look": (3,),  # the embedding's columns are added to it
}
# Feature subspaces each scored by its own k-NN distance (the place is in each, so that each is
# "for the place"); the embedding's columns are added to "look".
SUBSPACES: dict[str, tuple[int, ...]] = {
    "speed": (0, 1, 5, 6),
    "size": (0, 1, 2, 3, 4),
    "direction": (0, 1, 7, 8),
    "still": (0, 1, 4, 9),
    "look": (0, 1, 3),
}
# which of GROUPS (columns) each of SUBSPACES (rows) measures, for its reasons; the place is
# in every subspace and is no reason of its own there (``PLACE_FAR`` says "unusual place")
SUBSPACE_GROUPS = torch.tensor(
    [
        [
            g != "place" and (bool(set(cols) & set(c)) or g == s == "look")
            for g, cols in GROUPS.items()
        ]
        for s, c in SUBSPACES.items()
    ]
)
BOX_COLUMNS = 7  # x0, y0, x1, y1 (0..1), score, reason index, valid (0/1)
FAR = 1e3  # where unused bank rows sit: never anyone's nearest neighbour
THING_HEIGHT = 0.6  # x the height expected at its place: shorter still objects are things
PLACE_FAR = 0.08  # frame fractions from the nearest normal object's foot: a place nobody goes


def default_spec() -> ModelSpec:
    return ModelSpec(kind="objects", width=360, height=240, patch=16, params={})


class CropEncoder(nn.Module):
    """A small convolutional autoencoder for 2x24x24 crops (grey, frame difference)."""

    def __init__(self, embed: int, crop: int) -> None:
        super().__init__()
        side = crop // 4
        self.side = side
        self.encode = nn.Sequential(
            nn.Conv2d(2, 16, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * side * side, embed),
        )
        self.decode = nn.Sequential(
            nn.Linear(embed, 32 * side * side),
            nn.ReLU(),
            nn.Unflatten(1, (32, side, side)),
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(16, 2, 4, stride=2, padding=1),
        )

    def forward(self, crops: Tensor) -> Tensor:
        """(N, 2, c, c) float -> (N, embed)."""
        out: Tensor = self.encode(crops)
        return out


class ObjectModel(AnomalyModel):
    """Objects from a learned background, scored against a bank of the camera's normal ones."""

    kind = "objects"
    onnx_exportable: ClassVar[bool] = False  # the encoder exports alone: encoder_onnx
    background: Tensor
    noise: Tensor
    perspective: Tensor
    feat_mean: Tensor
    feat_std: Tensor
    bank: Tensor
    bank_ref: Tensor
    sub_ref: Tensor
    online_next: Tensor
    shift: Tensor

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        p = self.params = with_defaults(self.kind, spec.params, OBJECT_DEFAULTS)
        if int(p["crop"]) % 4 or int(p["crop"]) < 8:
            raise ModelError(f"objects: crop must be a multiple of 4, >= 8; got {p['crop']}")
        if p["scoring"] not in ("groups", "joint"):
            raise ModelError(f"objects: scoring must be groups or joint; got {p['scoring']!r}")
        if int(p["k"]) < 1 or int(p["bank"]) <= int(p["k"]):
            raise ModelError(f"objects: need 1 <= k < bank; got k={p['k']}, bank={p['bank']}")
        if int(p["online_bank"]) < 0 or int(p["taught_bank"]) < 0:
            raise ModelError("objects: online_bank and taught_bank must be >= 0")
        self.context = 1
        h, w = spec.height, spec.width
        dims = len(FEATURES) + int(p["embed"])
        self.encoder = CropEncoder(int(p["embed"]), int(p["crop"]))
        self.register_buffer("background", torch.zeros(h, w))
        self.register_buffer("noise", torch.zeros(h, w))
        self.register_buffer("perspective", torch.tensor([0.0, 0.1 * h, 4.0]))  # slope, icpt, min
        self.register_buffer("feat_mean", torch.zeros(dims))
        self.register_buffer("feat_std", torch.ones(dims))
        rows = int(p["bank"]) + int(p["online_bank"]) + int(p["taught_bank"])
        self.register_buffer("bank", torch.full((rows, dims), FAR))
        self.register_buffer("bank_ref", torch.ones(()))
        self.register_buffer("sub_ref", torch.ones(len(SUBSPACES)))
        # rows written so far into the online and the taught ring (the next slot is this modulo
        # the ring's size): a buffer, so that a checkpoint keeps where each ring stands
        self.register_buffer("online_next", torch.zeros(2, dtype=torch.int64))
        if int(p["shift_tolerance"]) < 0:
            raise ModelError(f"objects: shift_tolerance must be >= 0; got {p['shift_tolerance']}")
        # a buffer, so that a checkpoint keeps the foreground its threshold was calibrated on
        self.register_buffer("shift", torch.tensor(int(p["shift_tolerance"])))
        # and the objects kept per frame (a frame's score is their highest)
        self.register_buffer("kept", torch.tensor(int(p["max_objects"])))
        self._weights = self._feature_weights(dims)
        # seconds spent, and windows scored, since built: finding and describing objects
        # (OpenCV, CPU), the crop CNN (on the model's device), the density (k-NN)
        self.stage_seconds: dict[str, float] = dict.fromkeys(
            ("objects", "cnn", "density", "windows"), 0.0
        )

    def _feature_weights(self, dims: int) -> Tensor:
        weights = torch.ones(dims)
        weights[list(GROUPS["place"])] = float(self.params["place_weight"])
        embed = int(self.params["embed"])
        weights[len(FEATURES) :] = float(self.params["look_weight"]) / math.sqrt(max(embed, 1))
        return weights

    # ------------------------------------------------------------------ learning on line
    def rings(self) -> dict[str, tuple[int, int]]:
        """The bank's rings after the trained rows: name -> (first row, size)."""
        trained, online = int(self.params["bank"]), int(self.params["online_bank"])
        return {
            "online": (trained, online),
            "taught": (trained + online, self.bank.shape[0] - trained - online),
        }

    @torch.no_grad()
    def learn_normal(self, z_rows: Tensor, ring: str = "online") -> int:
        """Add objects as normal: ``z_rows`` (n, D) standardised, weighted feature rows as
        ``ModelOutput.features`` gives them. They replace the ring's oldest rows ("online":
        what the camera saw without an event; "taught": what an operator said was normal, kept
        apart so that hours of ordinary footage never push it out). Returns the objects
        learned (n).

        A taught object is written ``k`` times: an object's score is its distance to its
        ``k`` nearest normal ones, and a moment an event had once (the loiterer stepping into
        view) has no near copies but itself; taught once, it would still be k - 1 neighbours
        from normal. Taught, the operator's word makes it a normal neighbourhood of its own."""
        first, size = self.rings()[ring]
        slot = 0 if ring == "online" else 1
        if size == 0 or len(z_rows) == 0:
            return 0
        if z_rows.ndim != 2 or z_rows.shape[1] != self.bank.shape[1]:
            raise ModelError(
                f"objects: feature rows of shape {tuple(z_rows.shape)} do not fit a bank of "
                f"{self.bank.shape[1]} columns (was the camera's model retrained?)"
            )
        objects = len(z_rows)
        if ring == "taught":
            z_rows = z_rows.repeat_interleave(int(self.params["k"]), dim=0)
        rows = z_rows[-size:].to(self.bank.device, self.bank.dtype)
        start = int(self.online_next[slot])
        where = first + (start + torch.arange(len(rows), device=self.bank.device)) % size
        self.bank[where] = rows
        self.online_next[slot] += len(rows)
        return objects

    def _load_from_state_dict(self, state: dict[str, Any], prefix: str, *args: Any) -> None:
        # checkpoints from before the rings: a bank of trained rows only, no ring positions
        bank = state.get(prefix + "bank")
        if bank is not None and bank.shape[0] < self.bank.shape[0]:
            pad = torch.full((self.bank.shape[0] - bank.shape[0], bank.shape[1]), FAR)
            state[prefix + "bank"] = torch.cat([bank, pad.to(bank.dtype)])
        state.setdefault(prefix + "online_next", torch.zeros(2, dtype=torch.int64))
        state.setdefault(prefix + "shift", torch.tensor(0))  # from before the tolerance
        kept = int(state.setdefault(prefix + "kept", torch.tensor(8)))  # from before 16 kept
        if kept != int(self.params["max_objects"]):  # the threshold was calibrated on these
            self._pin("max_objects", kept)
        if prefix + "sub_ref" not in state:  # from before subspace scores: its threshold was
            # calibrated on one joint distance, so it keeps scoring that way (and says so in
            # its spec, which a later save writes)
            state[prefix + "sub_ref"] = torch.ones(len(SUBSPACES))
            self._pin("scoring", "joint")
        super()._load_from_state_dict(state, prefix, *args)

    def _pin(self, key: str, value: Any) -> None:
        """Score with a checkpoint's own setting, and say so in the spec a later save writes."""
        self.params[key] = value
        self.spec = replace(self.spec, params={**self.spec.params, key: value})

    # ------------------------------------------------------------------ objects (OpenCV)
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
        _, labels, stats, centres = cv2.connectedComponentsWithStats(fg, connectivity=8)
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
        self, pair: np.ndarray, bands: np.ndarray, limit: np.ndarray, perspective: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One window -> (features (n, F), crops (n, 2, c, c), boxes (n, 4) x0 y0 x1 y1 in 0..1);
        ``bands`` as ``regions`` takes them."""
        prev, cur = pair[-2], pair[-1]
        h, w = bands.shape[1:]
        if cur.shape != (h, w):  # a window at another size than the model learned at
            prev = cv2.resize(prev, (w, h), interpolation=cv2.INTER_AREA)
            cur = cv2.resize(cur, (w, h), interpolation=cv2.INTER_AREA)
        found, labels = self.regions(cur, bands, limit)
        boxes = found[:, :5].astype(np.int32)
        c = int(self.params["crop"])
        feats = np.zeros((len(boxes), len(FEATURES)), np.float32)
        crops = np.zeros((len(boxes), 2, c, c), np.float32)
        norm_boxes = np.zeros((len(boxes), 4), np.float32)
        if not len(boxes):
            return feats, crops, norm_boxes
        flow = self._flow(prev, cur, boxes)
        diff = cv2.absdiff(prev, cur)
        moving = diff > float(self.params["motion_level"])
        for i, (x, y, bw, bh, j) in enumerate(boxes):
            inside = labels[y : y + bh, x : x + bw] == j
            # medians: DIS makes up wild vectors where content enters from outside the frame
            vx = float(np.median(flow[y : y + bh, x : x + bw, 0][inside]))
            vy = float(np.median(flow[y : y + bh, x : x + bw, 1][inside]))
            speed = math.hypot(vx, vy)
            foot = y + bh
            still = 1.0 - float(moving[y : y + bh, x : x + bw][inside].mean())
            feats[i, :4] = ((x + bw / 2) / w, foot / h, math.log(bh / h), math.log(bw / bh))
            feats[i, 5], feats[i, 9] = speed / h * 100.0, still
            feats[i, 7:9] = vx, vy  # pixels a frame until put in place below
            crops[i] = _crop(cur, diff, (x, y, bw, bh), c)
            norm_boxes[i] = (x / w, y / h, (x + bw) / w, (y + bh) / h)
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

    def _describe_all(
        self, pairs: np.ndarray, state: dict[str, Tensor]
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Every window's objects, spread over ``flow_pool()`` (the flow is the cost)."""
        backgrounds = np.rint(state["background"].cpu().numpy()).astype(np.int16)
        shifts = state["shift"].cpu().numpy().reshape(-1)
        bands = [background_bands(bg, int(r)) for bg, r in zip(backgrounds, shifts, strict=True)]
        limits = self._limits(state["noise"].cpu().numpy())
        persp = state["perspective"].cpu().numpy()

        def one(b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            s = b if len(bands) > 1 else 0
            return self.describe(pairs[b], bands[s], limits[s], persp[s])

        if len(pairs) == 1:
            return [one(0)]
        return list(flow_pool().map(one, range(len(pairs))))

    def _limits(self, noise: np.ndarray) -> np.ndarray:
        level = float(self.params["bg_level"])
        return np.maximum(level, float(self.params["noise_k"]) * noise).astype(np.int16)

    # ------------------------------------------------------------------ scoring (torch)
    def forward(self, frames: Tensor) -> ModelOutput:
        state = {k: v.unsqueeze(0) for k, v in self.named_buffers()}
        state.update({k: v.unsqueeze(0) for k, v in self.named_parameters()})
        return self.forward_grouped(frames, state)

    def forward_grouped(self, frames: Tensor, state: dict[str, Tensor]) -> ModelOutput:
        """Score the windows of several cameras at once: ``frames`` (B, T, H, W), every state
        tensor stacked per camera (B, ...) or shared (1, ...). The crops of all windows go
        through the cameras' encoders in one vmapped call."""
        started = time.perf_counter()
        pairs = frames[:, -2:].cpu().numpy()
        described = self._describe_all(pairs, state)
        b, k_max = len(pairs), int(self.params["max_objects"])
        c = int(self.params["crop"])
        crops = torch.zeros(b, k_max, 2, c, c)
        feats = torch.zeros(b, k_max, len(FEATURES))
        boxes = torch.zeros(b, k_max, 4)
        valid = torch.zeros(b, k_max, dtype=torch.bool)
        for i, (f, cr, bx) in enumerate(described):
            n = len(f)
            feats[i, :n], crops[i, :n], boxes[i, :n] = (
                torch.from_numpy(f),
                torch.from_numpy(cr),
                torch.from_numpy(bx),
            )
            valid[i, :n] = True
        device = frames.device
        described_at = time.perf_counter()
        embed = self._embed(crops.to(device), valid.to(device), state)  # (B, K, E)
        if device.type == "cuda":  # the device's own time, not the launch's
            torch.cuda.synchronize(device)
        embedded_at = time.perf_counter()
        full = torch.cat([feats.to(device), embed], dim=2)
        out = self._score(full, boxes.to(device), valid.to(device), state)
        clock = self.stage_seconds
        clock["objects"] += described_at - started
        clock["cnn"] += embedded_at - described_at
        clock["density"] += time.perf_counter() - embedded_at
        clock["windows"] += len(pairs)
        return out

    def _embed(self, crops: Tensor, valid: Tensor, state: dict[str, Tensor]) -> Tensor:
        b, k = crops.shape[:2]
        params = {n[len("encoder.") :]: v for n, v in state.items() if n.startswith("encoder.")}
        dtype = next(iter(params.values())).dtype
        crops = crops.to(dtype)
        if next(iter(params.values())).shape[0] == 1:  # one camera's encoder for every window:
            one = {n: v[0] for n, v in params.items()}  # only the objects found are encoded
            found: Tensor = functional_call(self.encoder, one, (crops[valid],))
            out = torch.zeros(b, k, found.shape[-1], device=crops.device)
            out[valid] = found.float()
            return out

        def call(p: dict[str, Tensor], x: Tensor) -> Tensor:
            each: Tensor = functional_call(self.encoder, p, (x,))
            return each

        stacked: Tensor = torch.vmap(call)(params, crops)
        return stacked.float()

    def _score(
        self, full: Tensor, boxes: Tensor, valid: Tensor, state: dict[str, Tensor]
    ) -> ModelOutput:
        b, k_max, dims = full.shape
        mean, std = state["feat_mean"].view(-1, 1, dims), state["feat_std"].view(-1, 1, dims)
        weights = self._weights.to(full.device)
        z = (full - mean) / std * weights  # (B, K, D)
        bank = state["bank"]  # (B or 1, M, D), already standardised and weighted
        # rows no camera has written yet (the rings' unused end) are never anyone's neighbour
        bank = bank[:, (bank[..., 0] < FAR / 2).any(dim=0)]
        k = int(self.params["k"])
        masks = self._masks(dims, full.device)  # joint, then each of SUBSPACES
        if bank.shape[0] == 1:  # one camera's bank: only the objects found are compared
            near = torch.zeros(b, k_max, len(masks), device=full.device)
            idx = torch.zeros(b, k_max, k, dtype=torch.int64, device=full.device)
            found, found_idx = knn_means(z[valid][None].float(), bank.float(), masks, k)
            near[valid], idx[valid] = found[0], found_idx[0]
        else:
            near, idx = knn_means(z.float(), bank.float(), masks, k)  # (B, K, 1 + S)
        banks, bank = bank, bank.expand(b, -1, -1)
        obj = near[..., 0] / state["bank_ref"].view(-1, 1)  # (B, K)
        if self.params["scoring"] != "joint":
            subs = near[..., 1:] / state["sub_ref"].view(-1, 1, len(SUBSPACES))
            obj, best = subs.max(dim=-1)  # the reason is found in the subspace that scored
        else:
            best = None
        obj = torch.where(valid, obj, torch.zeros_like(obj))
        neighbours = torch.gather(bank, 1, idx.flatten(1).unsqueeze(-1).expand(-1, -1, dims)).view(
            b, k_max, k, dims
        )
        reasons = self._reasons(z, neighbours, full[..., 4], best)
        # where no normal object ever stood is the reason, whatever else differs: its other
        # features have no neighbours of their own place to differ from
        cols = list(GROUPS["place"])
        unit = std[..., cols] / weights[cols]  # standardised, weighted -> frame fractions
        unvisited = self._unvisited(z[..., cols] * unit, banks[..., cols] * unit, valid)
        reasons = torch.where(unvisited, REASONS.index("unusual place"), reasons)
        score = obj.amax(dim=1)
        amap = self._paint(obj, boxes, valid)
        table = torch.cat(
            [boxes, obj.unsqueeze(-1), reasons.unsqueeze(-1).float(), valid.unsqueeze(-1).float()],
            dim=2,
        )
        normalised = (score - state["norm_mean"].view(-1)) / state["norm_std"].view(-1)
        return ModelOutput(normalised, amap, table, z)

    @staticmethod
    def _unvisited(place: Tensor, bank_place: Tensor, valid: Tensor) -> Tensor:
        """(B, K): objects farther than ``PLACE_FAR`` (frame fractions) from every normal
        object's foot; ``place`` (B, K, 2), ``bank_place`` (B or 1, M, 2) in frame fractions.
        Only the objects found are measured (the rest are False)."""
        out = torch.zeros(valid.shape, dtype=torch.bool, device=valid.device)
        if bank_place.shape[0] == 1:  # one bank: every window's objects in one call
            near = torch.cdist(place[valid].float(), bank_place[0].float())
            out[valid] = near.amin(dim=1) > PLACE_FAR
            return out
        for i in torch.nonzero(valid.any(dim=1)).flatten().tolist():
            near = torch.cdist(place[i][valid[i]].float(), bank_place[i].float())
            out[i, valid[i]] = near.amin(dim=1) > PLACE_FAR
        return out

    def _subspace_columns(self, dims: int) -> list[list[int]]:
        cols = {g: list(c) for g, c in SUBSPACES.items()}
        cols["look"] += list(range(len(FEATURES), dims))
        return list(cols.values())

    def _masks(self, dims: int, device: torch.device | str = "cpu") -> Tensor:
        """(1 + S, D) 0/1 column masks: every column (the joint distance), then each subspace."""
        masks = torch.zeros(1 + len(SUBSPACES), dims)
        masks[0] = 1.0
        for i, cols in enumerate(self._subspace_columns(dims)):
            masks[1 + i, cols] = 1.0
        return masks.to(device)

    def _reasons(
        self, z: Tensor, neighbours: Tensor, height_for_place: Tensor, within: Tensor | None
    ) -> Tensor:
        """The reason index of each object: the feature group farthest from its neighbours
        (among the groups of subspace ``within``, an index into ``SUBSPACES``, when given),
        said in its terms (faster or slower than its neighbours, ...). A still object is
        ``left behind`` when it is much shorter than the objects expected at its place
        (``height_for_place``: log of its height over that), else ``lingering``."""
        gap = z.unsqueeze(2) - neighbours  # (B, K, k, D): object minus each neighbour
        sq = (gap**2).mean(dim=2)  # (B, K, D)
        signed = gap.mean(dim=2)
        groups = list(GROUPS)
        cols = {g: list(GROUPS[g]) for g in groups}
        cols["look"] = [*GROUPS["look"], *range(len(FEATURES), z.shape[2])]
        shares = torch.stack([sq[..., cols[g]].sum(-1) for g in groups], dim=-1)
        if within is not None:  # only the groups the scoring subspace has (not the place)
            has = SUBSPACE_GROUPS.to(z.device)[within]
            shares = torch.where(has, shares, torch.full_like(shares, -1.0))
        best = shares.argmax(-1)  # index into groups
        still_obj = z[..., GROUPS["still"][0]] > 0  # stiller than the normal median
        thing = height_for_place < math.log(THING_HEIGHT)  # too short to be who walks there
        staying = torch.where(thing, REASONS.index("left behind"), REASONS.index("lingering"))
        out = torch.full_like(best, REASONS.index("unusual look"))
        faster = signed[..., 6] > 0
        bigger = signed[..., 4] > 0
        rules = {
            "speed": torch.where(
                faster,
                REASONS.index("fast"),
                torch.where(still_obj, REASONS.index("lingering"), REASONS.index("slow")),
            ),
            "size": torch.where(bigger, REASONS.index("large"), REASONS.index("small")),
            "place": torch.full_like(best, REASONS.index("unusual place")),
            "direction": torch.full_like(best, REASONS.index("wrong way")),
            "still": staying,
            "look": torch.full_like(best, REASONS.index("unusual look")),
        }
        for i, g in enumerate(groups):
            out = torch.where(best == i, torch.as_tensor(rules[g]).expand_as(best), out)
        # clearly still where normal objects move: what it is not doing is the reason, not its
        # size or look (a bag is small, but it is there because it was left)
        still = (z[..., GROUPS["still"][0]] > 1.0) & (signed[..., 5] < -1.0)
        return torch.where(still, staying, out)

    def _paint(self, obj: Tensor, boxes: Tensor, valid: Tensor) -> Tensor:
        """(B, gh, gw): each cell the highest score of the objects whose box covers it."""
        gh, gw = self.spec.grid
        ys = (torch.arange(gh, device=obj.device) + 0.5) / gh
        xs = (torch.arange(gw, device=obj.device) + 0.5) / gw
        half_h, half_w = 0.5 / gh, 0.5 / gw
        inside_y = (ys.view(1, 1, -1) + half_h > boxes[..., 1:2]) & (
            ys.view(1, 1, -1) - half_h < boxes[..., 3:4]
        )
        inside_x = (xs.view(1, 1, -1) + half_w > boxes[..., 0:1]) & (
            xs.view(1, 1, -1) - half_w < boxes[..., 2:3]
        )
        cover = inside_y.unsqueeze(-1) & inside_x.unsqueeze(-2) & valid[..., None, None]
        painted = torch.where(cover, obj[..., None, None], torch.zeros_like(obj[..., None, None]))
        return painted.amax(dim=1)

    def encoder_onnx(self, path: str) -> None:
        """Export the crop encoder (the part with weights) to ONNX: (N, 2, c, c) -> (N, embed)."""
        c = int(self.params["crop"])
        torch.onnx.export(
            self.encoder.cpu().eval(),
            (torch.zeros(1, 2, c, c),),
            path,
            input_names=["crops"],
            output_names=["embedding"],
            dynamic_axes={"crops": {0: "n"}, "embedding": {0: "n"}},
            dynamo=False,
        )


FLOW_MARGIN = 32  # pixels around the objects' rectangle that the flow is computed over
FLOW_STEP = 32  # its sides are rounded up to multiples of this (a DIS object per size)


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


# ---------------------------------------------------------------------- training
def learn_background(data: TrainingData, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel median of ``count`` frames spread over the footage, and each pixel's robust
    spread around it (1.4826 x the median absolute deviation)."""
    index = [(c, i) for c, clip in enumerate(data.clips) for i in range(len(clip))]
    pick = np.linspace(0, len(index) - 1, min(count, len(index))).astype(int)
    sample = np.stack([data.clips[index[k][0]][index[k][1]] for k in pick])
    background = np.median(sample, axis=0).astype(np.float32)
    spread = 1.4826 * np.median(np.abs(sample - background), axis=0)
    return background, spread.astype(np.float32)


def _undo_place(feats: np.ndarray, perspective: np.ndarray, height: int) -> None:
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


def train_objects(
    model: AnomalyModel, data: TrainingData, settings: TrainSettings, progress: Progress
) -> None:
    """Background, perspective, crop autoencoder and the bank of normal objects."""
    if not isinstance(model, ObjectModel):
        raise ModelError(f"train_objects needs an ObjectModel, got {type(model).__name__}")
    p = model.params
    progress("background", 0.0, {})
    background, spread = learn_background(data, int(p["background_frames"]))
    model.background.copy_(torch.from_numpy(background))
    model.noise.copy_(torch.from_numpy(spread))
    batches = sample_windows(data, model.context, int(p["samples"]), settings.seed)
    windows_all = np.concatenate(batches) if batches else np.zeros((0, 2, 1, 1), np.uint8)
    flat = torch.zeros(3)
    model.perspective.copy_(flat + torch.tensor([0.0, 0.1 * model.spec.height, 4.0]))
    state = {k: v.unsqueeze(0) for k, v in model.named_buffers()}
    # one pass with a flat line; the perspective line is then fitted on the objects' feet and
    # heights, and the features measured against it recomputed (the regions do not change)
    flat_line = model.perspective.numpy().copy()
    described = model._describe_all(windows_all, state)
    boxes = [
        (b[3] * model.spec.height, (b[3] - b[1]) * model.spec.height)
        for d in described
        for b in d[2]
    ]
    slope, icpt, floor = fit_perspective(boxes, model.spec.height)
    model.perspective.copy_(torch.tensor([slope, icpt, floor]))
    for feats_one, _, _ in described:
        _undo_place(feats_one, flat_line, model.spec.height)
        in_place(feats_one, model.perspective.numpy(), model.spec.height)
    progress("objects", 0.5, {"windows": float(len(windows_all))})
    feats = np.concatenate([d[0] for d in described]) if described else np.zeros((0, 10))
    crops = np.concatenate([d[1] for d in described]) if described else np.zeros((0, 2, 1, 1))
    if len(feats) < 4 * int(p["k"]):
        raise ModelError(
            f"objects: only {len(feats)} objects in {len(windows_all)} training windows; "
            f"need at least {4 * int(p['k'])} (is anything moving in the footage?)"
        )
    crops_t = torch.from_numpy(crops.astype(np.float32))
    _train_encoder(model.encoder, crops_t, settings, progress, int(p["ae_steps"]))
    with torch.no_grad():
        embed = torch.cat(
            [model.encoder(crops_t[i : i + 512]) for i in range(0, len(crops_t), 512)]
        )
    full = torch.cat([torch.from_numpy(feats), embed], dim=1)
    block = np.concatenate([np.full(len(d[0]), i // REF_BLOCK) for i, d in enumerate(described)])
    _fill_bank(model, full, torch.from_numpy(block % REF_EVERY == REF_EVERY - 1), settings.seed)
    progress("objects", 1.0, {"objects": float(len(full))})


def _train_encoder(
    encoder: CropEncoder, crops: Tensor, settings: TrainSettings, progress: Progress, steps: int
) -> None:
    generator = torch.Generator().manual_seed(settings.seed)
    optimiser = torch.optim.Adam(encoder.parameters(), lr=2e-3)
    encoder.train()
    for step in range(steps):
        pick = torch.randint(len(crops), (min(64, len(crops)),), generator=generator)
        batch = crops[pick]
        loss = F.mse_loss(encoder.decode(encoder.encode(batch)), batch)
        optimiser.zero_grad()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        if step % 100 == 0:
            progress("crop autoencoder", step / steps, {"loss": float(loss.detach())})
    encoder.eval()


REF_BLOCK, REF_EVERY = 20, 5  # windows per block; every 5th block measures the scale


@torch.no_grad()
def _fill_bank(model: ObjectModel, full: Tensor, reference: Tensor, seed: int) -> None:
    """Standardise, weight and store (a sample of) the normal objects. The scale object scores
    are measured in is the median distance of ``reference`` objects (every fifth block of
    training windows) to their k nearest among the *other* blocks' objects: neighbours from
    the same moment are near-copies of an object, and a leave-one-out distance among them
    would be far smaller than any new footage's."""
    mean = full.median(dim=0).values
    floors = torch.full((full.shape[1],), 1e-3)
    floors[: len(FLOORS)] = torch.tensor(FLOORS)
    std = torch.maximum(full.std(dim=0), floors)
    model.feat_mean.copy_(mean)
    model.feat_std.copy_(std)
    z = (full - mean) / std * model._weights
    size = int(model.params["bank"])  # the rows after it are the rings learned on line
    rng = np.random.default_rng(seed)
    if len(z) > size:
        z = z[torch.from_numpy(np.sort(rng.permutation(len(z))[:size]))]
    model.bank.fill_(FAR)
    model.bank[: len(z)] = z
    model.online_next.zero_()
    k = int(model.params["k"])
    zall = (full - mean) / std * model._weights
    ref, rest = zall[reference], zall[~reference]
    if len(ref) < 1 or len(rest) <= k:  # too little footage for blocks: leave-one-out
        ref, rest, skip = zall, zall, 1
    else:
        skip = 0
    near, _ = knn_means(ref[None], rest[None], model._masks(zall.shape[1]), k, skip)
    scales = near[0].median(dim=0).values.clamp(min=1e-3)  # (1 + S,)
    model.bank_ref.fill_(float(scales[0]))
    model.sub_ref.copy_(scales[1:])


def knn_means(
    z: Tensor, bank: Tensor, masks: Tensor, k: int, skip: int = 0
) -> tuple[Tensor, Tensor]:
    """For each row of ``z`` (B, N, D) and each column mask (S, D): the mean Euclidean
    distance over those columns to its ``k`` nearest rows of ``bank`` (B or 1, M, D), after
    the ``skip`` nearest (1: leave-one-out, when ``z`` is the bank). Returns (B, N, S) and the
    nearest rows' indices under the first mask (B, N, k).

    One matrix product for every mask at once, ||a||^2 + ||b||^2 - 2 a.b over each mask's
    columns, and one top-k: a distance per subspace (``torch.cdist`` on column slices) cost a
    copy of the bank's columns and a top-k each, a third of the model's time at Ped2's size."""
    b, n, dims = z.shape
    if bank.shape[0] == 1 and b > 1:  # one bank for every window: one product for all rows
        dist, idx = knn_means(z.reshape(1, b * n, dims), bank, masks, k, skip)
        return dist.view(b, n, -1), idx.view(b, n, -1)
    s = len(masks)
    masked = (z.unsqueeze(1) * masks.view(1, s, 1, dims)).reshape(b, s * n, dims)
    cross = torch.bmm(masked, bank.transpose(1, 2)).view(b, s, n, bank.shape[1])  # (B, S, N, M)
    z_sq = (z * z) @ masks.T  # (B, N, S)
    bank_sq = (bank * bank) @ masks.T  # (B, M, S)
    sq = cross.mul_(-2).add_(z_sq.transpose(1, 2).unsqueeze(-1))
    sq.add_(bank_sq.transpose(1, 2).unsqueeze(2))
    near, idx = sq.topk(k + skip, dim=-1, largest=False)  # (B, S, N, k + skip)
    dist = near[..., skip:].clamp(min=0).sqrt().mean(dim=-1)  # (B, S, N)
    return dist.transpose(1, 2), idx[:, 0, :, skip:]


def build(spec: ModelSpec) -> AnomalyModel:
    if spec.kind != ObjectModel.kind:
        raise ModelError(f"objects.build: unknown kind {spec.kind!r}")
    return ObjectModel(spec)
