"""Checkpoints: weights as safetensors plus a small JSON of metadata. Never unpickles anything.

A checkpoint is a folder::

    model.safetensors   tensors of the model's state_dict (weights and normalisation buffers)
    model.json          {"format": 1, "spec": {...}, "version": N, "calibration": {...}, ...}

``load_checkpoint`` rebuilds the model from the spec through the registry, then loads the weights
strictly, so a damaged file or a mismatched model gives a clear ``ModelError``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from streamdet.errors import ModelError
from streamdet.models.base import AnomalyModel, ModelSpec

FORMAT = 1
WEIGHTS, METADATA = "model.safetensors", "model.json"


def save_checkpoint(model: AnomalyModel, folder: Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``model`` and ``extra`` metadata (calibration, training summary) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "kind": model.kind,
        "version": model.version,
        "spec": asdict(model.spec),
        **(extra or {}),
    }
    # Write both files under temporary names first: a crash never leaves half a checkpoint.
    tmp_weights, tmp_meta = folder / (WEIGHTS + ".tmp"), folder / (METADATA + ".tmp")
    save_file(tensors, str(tmp_weights), metadata={"kind": model.kind})
    tmp_meta.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tmp_weights.replace(folder / WEIGHTS)
    tmp_meta.replace(folder / METADATA)
    return folder


def read_metadata(folder: Path) -> dict[str, Any]:
    """The checkpoint's JSON metadata. Raises ModelError when missing or malformed."""
    path = Path(folder) / METADATA
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"no checkpoint at {folder} (missing {METADATA})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: damaged metadata: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "spec" not in meta:
        raise ModelError(f"{path}: not a streamdet checkpoint of format {FORMAT}")
    return meta


def load_checkpoint(folder: Path, device: str = "cpu") -> tuple[AnomalyModel, dict[str, Any]]:
    """Rebuild the model and load its weights. Raises ModelError on any mismatch."""
    from streamdet.models.registry import build_model

    folder = Path(folder)
    meta = read_metadata(folder)
    try:
        spec = ModelSpec(**meta["spec"])
    except TypeError as exc:
        raise ModelError(f"{folder / METADATA}: bad model spec: {exc}") from None
    model = build_model(spec)
    if meta.get("version") != model.version:
        raise ModelError(
            f"{folder}: checkpoint is {spec.kind} v{meta.get('version')}, this streamdet "
            f"builds {spec.kind} v{model.version}: retrain the camera"
        )
    try:
        tensors = load_file(str(folder / WEIGHTS), device="cpu")
    except FileNotFoundError:
        raise ModelError(f"no weights at {folder / WEIGHTS}") from None
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{folder / WEIGHTS}: damaged weights: {exc}") from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0:3]
        raise ModelError(
            f"{folder}: weights do not fit a {spec.kind} model: {' '.join(first)}"
        ) from None
    model.to(torch.device(device)).eval()
    return model, meta
