"""Export a trained model to ONNX with the same inputs and outputs as ``forward``."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import torch

from streamdet.errors import ModelError
from streamdet.models.base import AnomalyModel


def export_onnx(model: AnomalyModel, path: Path, batch: int = 1) -> Path:
    """Write ``path``: input ``frames`` uint8 (B, T, H, W) -> ``score`` (B,), ``anomaly_map``.

    An object-level model (``objects``) exports its crop encoder instead, the part with weights
    (``crops`` (N, 2, c, c) float -> ``embedding``); its background subtraction, regions, flow
    and k-NN bank run in OpenCV/NumPy/torch outside the graph (see ``streamdet.models.objects``).
    """
    spec = model.spec
    encoder_onnx = getattr(model, "encoder_onnx", None)
    if encoder_onnx is not None:  # an object-level model: only its CNN is torch
        path.parent.mkdir(parents=True, exist_ok=True)
        with redirect_stdout(io.StringIO()):
            encoder_onnx(str(path))
        return path
    parts = [model, *(m for m in model.modules() if isinstance(m, AnomalyModel))]
    if not all(m.onnx_exportable for m in parts):  # a fusion is as exportable as its members
        # tracing would silently bake the non-torch part of forward in as constants
        raise ModelError(f"cannot export {spec.kind} to ONNX: its forward runs outside torch")
    example = torch.zeros((batch, model.context + 1, spec.height, spec.width), dtype=torch.uint8)
    model = model.cpu().eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with redirect_stdout(io.StringIO()):  # the exporter narrates every step on stdout
            torch.onnx.export(
                model,
                (example,),
                str(path),
                input_names=["frames"],
                output_names=["score", "anomaly_map"],
                dynamic_axes={
                    "frames": {0: "batch"},
                    "score": {0: "batch"},
                    "anomaly_map": {0: "batch"},
                },
                dynamo=False,
            )
    except Exception as exc:  # the exporter raises many types; the user needs one clear line
        raise ModelError(f"cannot export {spec.kind} to ONNX: {exc}") from exc
    return path
