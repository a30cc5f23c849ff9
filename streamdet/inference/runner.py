"""The model runner: the one owner of the device.

Every camera has its own trained model, yet cameras whose models share an architecture (same
kind and spec, same parameter shapes) are scored in **one** call: their parameters are stacked
(``torch.func.stack_module_state``) and the model is called through ``functional_call`` under
``vmap``. A group whose model cannot run under ``vmap`` falls back to one call per camera (logged
once). CUDA (with fp16 autocast) and CPU (with a deliberate thread count) share this code path.

Whether the grouped call is actually faster depends on the device and the model: on a GPU one
launch for all cameras wins; on a small CPU, per-camera calls of a cheap model are often faster
than ``vmap``'s batching rules. With ``grouping="auto"`` (the default) the runner times both
ways on the group's first real batch (best of three each, interleaved) and keeps the faster,
again whenever the group's cameras change; ``"vmap"`` or ``"loop"`` force one. A model whose
forward leaves torch (OpenCV optical flow) cannot run under ``vmap``; if it offers
``forward_grouped(frames, stacked_buffers)`` (``motionflow`` does: only its statistics differ per
camera), that is its grouped call instead, taken without timing unless ``"loop"`` is forced.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call, stack_module_state

from streamdet.models.base import AnomalyModel

logger = logging.getLogger(__name__)


class Scores(NamedTuple):
    score: float
    anomaly_map: np.ndarray  # (gh, gw) float32
    objects: np.ndarray | None = None  # (K, 7) object rows (see ModelOutput), object models
    features: np.ndarray | None = None  # (K, D) the objects' feature rows, object models


def choose_device(preference: str = "auto") -> torch.device:
    """``auto``: CUDA when present, else CPU."""
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(preference)


def group_key(model: AnomalyModel) -> str:
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return json.dumps([model.kind, model.version, asdict(model.spec), sorted(shapes.items())])


@dataclass
class _Group:
    cameras: list[str] = field(default_factory=list)
    models: list[AnomalyModel] = field(default_factory=list)
    stacked: tuple[dict[str, Tensor], dict[str, Tensor]] | None = None
    call: Callable[..., Any] | None = None
    vmap_ok: bool = True
    mode: str | None = None  # "vmap" or "loop" once chosen; None: choose on the next batch
    timings: dict[str, float] = field(default_factory=dict)  # seconds per batch, when timed


GROUPINGS = ("auto", "vmap", "loop")
# scores, maps, object rows and their feature rows (object models)
_Batch = tuple[Tensor, Tensor, Tensor | None, Tensor | None]


class ModelRunner:
    """Holds every camera's model on one device and scores windows of frames for many cameras."""

    def __init__(
        self, device: str = "auto", threads: int | None = None, grouping: str = "auto"
    ) -> None:
        if grouping not in GROUPINGS:
            raise ValueError(f"grouping must be one of {GROUPINGS}, not {grouping!r}")
        self.grouping = grouping
        self.device = choose_device(device)
        if self.device.type == "cpu" and threads:
            torch.set_num_threads(threads)  # leave cores for the decode threads
        self._groups: dict[str, _Group] = {}
        self._camera_group: dict[str, str] = {}

    @property
    def cameras(self) -> list[str]:
        return list(self._camera_group)

    def context(self, camera: str) -> int:
        return self._group(camera).models[0].context

    def add(self, camera: str, model: AnomalyModel) -> None:
        """Install (or replace) ``camera``'s model."""
        self.remove(camera)
        model = model.to(self.device).eval()
        key = group_key(model)
        group = self._groups.setdefault(key, _Group())
        group.cameras.append(camera)
        group.models.append(model)
        group.stacked, group.mode = None, None  # restacked and re-chosen on the next call
        self._camera_group[camera] = key

    def remove(self, camera: str) -> None:
        key = self._camera_group.pop(camera, None)
        if key is None:
            return
        group = self._groups[key]
        i = group.cameras.index(camera)
        del group.cameras[i], group.models[i]
        group.stacked, group.mode = None, None
        if not group.cameras:
            del self._groups[key]

    def _group(self, camera: str) -> _Group:
        return self._groups[self._camera_group[camera]]

    @torch.inference_mode()
    def run(
        self, windows: dict[str, np.ndarray], time_scales: dict[str, float] | None = None
    ) -> dict[str, Scores]:
        """Score one window (T, H, W) uint8 per camera; cameras grouped into batched calls.
        ``time_scales``: each camera's usual frame interval over its window's last one, for
        models that measure moves in time (``AnomalyModel.timed``; others ignore it)."""
        by_group: dict[str, list[str]] = {}
        for camera in windows:
            by_group.setdefault(self._camera_group[camera], []).append(camera)
        results: dict[str, Scores] = {}
        for key, cameras in by_group.items():
            group = self._groups[key]
            # in the group's own order: a batch of all its cameras then reads the stacked
            # state as it is, without a copy of each camera's part (``_vmapped``)
            cameras.sort(key=group.cameras.index)
            results.update(self._run_group(group, cameras, windows, time_scales))
        return results

    def _run_group(
        self,
        group: _Group,
        cameras: list[str],
        windows: dict[str, np.ndarray],
        time_scales: dict[str, float] | None = None,
    ) -> dict[str, Scores]:
        frames = torch.from_numpy(np.stack([windows[c] for c in cameras])).to(self.device)
        timed = None  # (the first calls of auto grouping's timing go without)
        if time_scales is not None and group.models[0].timed:
            timed = torch.tensor([time_scales.get(c, 1.0) for c in cameras], dtype=torch.float64)
        with torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda"):
            if len(cameras) > 1 and self._mode(group, cameras, frames) == "vmap":
                score, amap, objects, features = self._vmapped(group, cameras, frames, timed)
            else:
                score, amap, objects, features = self._looped(group, cameras, frames, timed)
        score_np = score.float().cpu().numpy()
        map_np = amap.float().cpu().numpy()
        obj_np = None if objects is None else objects.float().cpu().numpy()
        feat_np = None if features is None else features.float().cpu().numpy()
        return {
            c: Scores(
                float(score_np[i]),
                map_np[i],
                None if obj_np is None else obj_np[i],
                None if feat_np is None else feat_np[i],
            )
            for i, c in enumerate(cameras)
        }

    def _mode(self, group: _Group, cameras: list[str], frames: Tensor) -> str:
        if group.mode is not None:
            return group.mode
        if hasattr(group.models[0], "forward_grouped"):
            # The model's own grouped computation does the per-camera work once, by design: no
            # need to time it (a timing on a busy machine's first small batch once picked one
            # call per camera and cost a third of the pipeline's throughput).
            group.mode = "loop" if self.grouping == "loop" else "vmap"
            return group.mode
        if group.vmap_ok and self.grouping != "loop":
            try:
                self._vmapped(group, cameras, frames)
            except RuntimeError as exc:
                group.vmap_ok = False
                logger.warning(
                    "model %s cannot run under vmap (%s): one call per camera",
                    group.models[0].kind,
                    str(exc).splitlines()[0],
                )
        if not group.vmap_ok or self.grouping != "auto":
            group.mode = "vmap" if group.vmap_ok and self.grouping == "vmap" else "loop"
            return group.mode
        ways = {"vmap": self._vmapped, "loop": self._looped}
        runs: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(3):
            for name, way in ways.items():
                runs[name].append(self._timed(way, group, cameras, frames))
        group.timings = {name: min(t) for name, t in runs.items()}
        group.mode = min(group.timings, key=group.timings.__getitem__)
        logger.info(
            "model %s, %d cameras: %s (one grouped call %.1f ms, one call per camera %.1f ms)",
            group.models[0].kind,
            len(cameras),
            "one grouped call" if group.mode == "vmap" else "one call per camera",
            group.timings["vmap"] * 1e3,
            group.timings["loop"] * 1e3,
        )
        return group.mode

    def _timed(
        self,
        way: Callable[[_Group, list[str], Tensor], _Batch],
        group: _Group,
        cameras: list[str],
        frames: Tensor,
    ) -> float:
        started = time.perf_counter()
        way(group, cameras, frames)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)  # kernels run asynchronously: wait for them
        return time.perf_counter() - started

    def modes(self) -> dict[str, str | None]:
        """Per group (its first camera's name): how its cameras are scored, once chosen."""
        return {g.cameras[0]: g.mode for g in self._groups.values()}

    def _looped(
        self, group: _Group, cameras: list[str], frames: Tensor, scales: Tensor | None = None
    ) -> _Batch:
        def one(i: int, camera: str) -> Any:  # a ModelOutput
            model = group.models[group.cameras.index(camera)]
            if scales is None:
                return model(frames[i : i + 1])
            return model(frames[i : i + 1], time_scales=scales[i : i + 1])

        outs = [one(i, c) for i, c in enumerate(cameras)]
        objects = None if outs[0].objects is None else torch.cat([o.objects for o in outs])
        features = None if outs[0].features is None else torch.cat([o.features for o in outs])
        score, amap = torch.cat([o.score for o in outs]), torch.cat([o.anomaly_map for o in outs])
        return score, amap, objects, features

    def _vmapped(
        self, group: _Group, cameras: list[str], frames: Tensor, scales: Tensor | None = None
    ) -> _Batch:
        grouped = getattr(group.models[0], "forward_grouped", None)
        if group.stacked is None or (group.call is None and grouped is None):
            group.stacked = stack_module_state(group.models)
        if grouped is not None:  # the model's own grouped computation (e.g. OpenCV inside)
            # its per-camera state: buffers and (for a model with weights) parameters
            params, buffers = group.stacked
            state = {**params, **buffers}
            if cameras != group.cameras:  # some of its cameras: their rows (a copy)
                index = torch.tensor([group.cameras.index(c) for c in cameras], device=self.device)
                state = {k: v.index_select(0, index) for k, v in state.items()}
            out = grouped(frames, state) if scales is None else grouped(frames, state, scales)
            return out.score, out.anomaly_map, out.objects, out.features
        if group.call is None:
            base = copy.deepcopy(group.models[0]).to("meta")

            def call(params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Any:
                out = functional_call(base, (params, buffers), (x,))
                return out[0], out[1]

            group.call = torch.vmap(call)
        params, buffers = group.stacked
        index = torch.tensor([group.cameras.index(c) for c in cameras], device=self.device)
        if len(cameras) != len(group.cameras):  # only some cameras of the group are in this batch
            params = {k: v.index_select(0, index) for k, v in params.items()}
            buffers = {k: v.index_select(0, index) for k, v in buffers.items()}
        score, amap = group.call(params, buffers, frames.unsqueeze(1))
        return score.squeeze(1), amap.squeeze(1), None, None

    @torch.inference_mode()
    def refresh(self, camera: str, names: tuple[str, ...] | None = None) -> None:
        """``camera``'s model changed its buffers in place (it learned objects on line, its
        background took a frame): copy them (``names``: only these) into its group's stacked
        state, which the grouped call reads."""
        group = self._group(camera)
        if group.stacked is None:
            return
        i = group.cameras.index(camera)
        buffers = group.stacked[1]
        for name, value in group.models[i].named_buffers():
            if names is None or name in names:
                buffers[name][i].copy_(value)

    def warm_up(self, shape: dict[str, tuple[int, ...]]) -> None:
        """One call per group at the real input shapes, so the first live batch is not slow."""
        self.run({c: np.zeros(s, np.uint8) for c, s in shape.items()})
