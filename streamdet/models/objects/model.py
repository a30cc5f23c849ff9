"""The "objects" model: a camera's learned background, perspective, crop autoencoder and bank of
normal objects as buffers; scoring a batch of windows (several cameras' at once) and learning
normal objects on line. See ``streamdet.models.objects`` for what it does and why."""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from streamdet.errors import ModelError
from streamdet.frames import REASONS
from streamdet.models.base import AnomalyModel, ModelOutput, ModelSpec, with_defaults
from streamdet.models.objects import density
from streamdet.models.objects.features import (
    FAR,
    FEATURES,
    GROUPS,
    OBJECT_DEFAULTS,
    SUBSPACES,
)
from streamdet.models.objects.finding import Finder


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
    timed: ClassVar[bool] = True
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
    view_token: Tensor
    # what ``settle`` changes: the runner copies these into its stacked state after it
    SETTLED: ClassVar[tuple[str, ...]] = ("background", "view_token")

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
        if int(p["register_px"]) < 0:
            raise ModelError(f"objects: register_px must be >= 0; got {p['register_px']}")
        if int(p["shift_tolerance"]) < 0:
            raise ModelError(f"objects: shift_tolerance must be >= 0; got {p['shift_tolerance']}")
        # a buffer, so that a checkpoint keeps the foreground its threshold was calibrated on
        self.register_buffer("shift", torch.tensor(int(p["shift_tolerance"])))
        # and the objects kept per frame (a frame's score is their highest)
        self.register_buffer("kept", torch.tensor(int(p["max_objects"])))
        # and the flow's refinement its objects' speeds were measured with
        self.register_buffer("refine", torch.tensor(int(p["dis_refine"])))
        # a new random number whenever the background changes: what the finder derives from
        # a view (its bands, limits and registration tiles) is kept under it, not computed
        # again for every window (``Finder.views``)
        self.register_buffer("view_token", torch.tensor(0, dtype=torch.int64))
        self.new_view()
        self._weights = self._feature_weights(dims)
        self.finder = Finder(self.params)  # finds and describes a window's objects (OpenCV)
        # the footage frame each trained bank row's window ends at (``leaving_out``); set by
        # training, not saved
        self.bank_frames: np.ndarray | None = None
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

    def new_view(self) -> None:
        """Say that the background (or its variation) changed: a fresh ``view_token``."""
        self.view_token.fill_(secrets.randbits(62))

    @contextmanager
    def _left_out(self, rows: Tensor) -> Iterator[ObjectModel]:
        kept = self.bank[rows].clone()
        self.bank[rows] = FAR  # never anyone's neighbour (``_score``)
        try:
            yield self
        finally:
            self.bank[rows] = kept

    def leaving_out(self, first: int, end: int) -> AbstractContextManager[ObjectModel] | None:
        """The bank without the objects of training windows that end at frames ``first`` ..
        ``end`` - 1 (background, embedding and scales as trained on all of the footage): what
        an object there scores against the rest of the footage. None once the model was not
        just trained (a loaded checkpoint does not know its objects' frames)."""
        if self.bank_frames is None:
            return None
        rows = np.flatnonzero((self.bank_frames >= first) & (self.bank_frames < end))
        return self._left_out(torch.from_numpy(rows))

    # ------------------------------------------------------------------ learning on line
    def rings(self) -> dict[str, tuple[int, int]]:
        """The bank's rings after the trained rows: name -> (first row, size)."""
        trained, online = int(self.params["bank"]), int(self.params["online_bank"])
        return {
            "online": (trained, online),
            "taught": (trained + online, self.bank.shape[0] - trained - online),
        }

    @torch.no_grad()
    def settle(self, frame: np.ndarray, boxes: np.ndarray, seconds: float) -> None:
        """Let the background keep learning from a live frame (grey, any size; ``boxes``
        (n, 4) x0 y0 x1 y1 in 0..1: the objects found in it) after ``seconds`` of footage:
        each pixel moves toward the frame by 1 - exp(-seconds / tau), tau ``settle_free_s``
        where no object is and ``settle_object_s`` under one. Scene changes after learning
        (light, a parked car) stop being objects instead of scoring high for ever; an object
        that appears is found as one long before it is taken in. Not used in training or
        offline evaluation (they score a fixed background)."""
        h, w = self.background.shape
        if frame.shape != (h, w):
            frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        free = 1.0 - math.exp(-max(seconds, 0.0) / float(self.params["settle_free_s"]))
        under = 1.0 - math.exp(-max(seconds, 0.0) / float(self.params["settle_object_s"]))
        rate = np.full((h, w), free, np.float32)
        pad = 2  # pixels around a box: the object's blurred edge
        for x0, y0, x1, y1 in np.asarray(boxes, np.float64).reshape(-1, 4):
            rate[
                max(int(y0 * h) - pad, 0) : math.ceil(y1 * h) + pad,
                max(int(x0 * w) - pad, 0) : math.ceil(x1 * w) + pad,
            ] = under
        change = torch.from_numpy(rate * (frame.astype(np.float32) - self.background.cpu().numpy()))
        self.background.add_(change.to(self.background.device, self.background.dtype))
        self.new_view()

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
        state.setdefault(prefix + "view_token", torch.tensor(secrets.randbits(62)))
        kept = int(state.setdefault(prefix + "kept", torch.tensor(8)))  # from before 16 kept
        if kept != int(self.params["max_objects"]):  # the threshold was calibrated on these
            self._pin("max_objects", kept)
        refine = int(state.setdefault(prefix + "refine", torch.tensor(5)))  # from before 3
        if refine != int(self.params["dis_refine"]):
            self._pin("dis_refine", refine)
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

    # ------------------------------------------------------------------ scoring (torch)
    def forward(self, frames: Tensor, time_scales: Tensor | None = None) -> ModelOutput:
        state = {k: v.unsqueeze(0) for k, v in self.named_buffers()}
        state.update({k: v.unsqueeze(0) for k, v in self.named_parameters()})
        return self.forward_grouped(frames, state, time_scales)

    def forward_grouped(
        self, frames: Tensor, state: dict[str, Tensor], time_scales: Tensor | None = None
    ) -> ModelOutput:
        """Score the windows of several cameras at once: ``frames`` (B, T, H, W), every state
        tensor stacked per camera (B, ...) or shared (1, ...). The crops of all windows go
        through the cameras' encoders in one vmapped call. ``time_scales`` (B,): each
        window's moves are multiplied by it (its camera's usual frame interval over this
        pair's, ``Finder.describe``; None: 1)."""
        started = time.perf_counter()
        pairs = frames[:, -2:].cpu().numpy()
        scales = None if time_scales is None else time_scales.double().cpu().numpy()
        described = self.finder.describe_all(pairs, state, scales)
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
        k = int(self.params["k"])
        written = (bank[..., 0] < FAR / 2).any(dim=0)
        if int(written.sum()) >= k:  # (an untrained bank has none: all its rows are scored)
            bank = bank[:, written]
        masks = self._masks(dims, full.device)  # joint, then each of SUBSPACES
        if bank.shape[0] == 1:  # one camera's bank: only the objects found are compared
            near = torch.zeros(b, k_max, len(masks), device=full.device)
            idx = torch.zeros(b, k_max, k, dtype=torch.int64, device=full.device)
            found, found_idx = density.knn_means(z[valid][None].float(), bank.float(), masks, k)
            near[valid], idx[valid] = found[0], found_idx[0]
        else:  # each camera's own bank: up to the most objects any window has (a window's
            # objects come first), not every one of the K rows
            n = int(valid.sum(dim=1).max())
            near = torch.zeros(b, k_max, len(masks), device=full.device)
            idx = torch.zeros(b, k_max, k, dtype=torch.int64, device=full.device)
            if n:
                found, found_idx = density.knn_means(z[:, :n].float(), bank.float(), masks, k)
                near[:, :n], idx[:, :n] = found, found_idx  # (B, K, 1 + S), (B, K, k)
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
        # which way each object goes against its normal neighbours' mean heading (raw
        # per-place velocities): a "direction" score along it is speed, not a wrong way
        cols_v = list(GROUPS["direction"])
        normal_v = neighbours[..., cols_v].mean(dim=2) / weights[cols_v] * std[..., cols_v]
        headings = (full[..., cols_v], normal_v + mean[..., cols_v])  # (the mean of the raw)
        reasons = density.reasons(z, neighbours, full[..., 4], best, headings)
        # where no normal object ever stood is the reason, whatever else differs: its other
        # features have no neighbours of their own place to differ from
        cols = list(GROUPS["place"])
        unit = std[..., cols] / weights[cols]  # standardised, weighted -> frame fractions
        unvisited = density.unvisited(z[..., cols] * unit, banks[..., cols] * unit, valid)
        reasons = torch.where(unvisited, REASONS.index("unusual place"), reasons)
        reasons = torch.where(valid, reasons, 0)  # no object, no reason (whatever the path)
        score = obj.amax(dim=1)
        amap = density.paint(obj, boxes, valid, self.spec.grid)
        table = torch.cat(
            [boxes, obj.unsqueeze(-1), reasons.unsqueeze(-1).float(), valid.unsqueeze(-1).float()],
            dim=2,
        )
        normalised = (score - state["norm_mean"].view(-1)) / state["norm_std"].view(-1)
        return ModelOutput(normalised, amap, table, z)

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


def build(spec: ModelSpec) -> AnomalyModel:
    if spec.kind != ObjectModel.kind:
        raise ModelError(f"objects.build: unknown kind {spec.kind!r}")
    return ObjectModel(spec)
