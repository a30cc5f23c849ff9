"""Training the "objects" model from a camera's normal footage: background, perspective line,
crop autoencoder, and the bank of normal objects with the scale its scores are measured in."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from streamdet.errors import ModelError
from streamdet.models.base import AnomalyModel, Progress, TrainingData, TrainSettings
from streamdet.models.motion import sample_window_frames
from streamdet.models.objects.density import knn_means
from streamdet.models.objects.features import FAR, FLOORS
from streamdet.models.objects.finding import (
    fit_perspective,
    in_place,
    learn_background,
    undo_place,
)
from streamdet.models.objects.model import CropEncoder, ObjectModel


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
    model.new_view()
    batches, ends = sample_window_frames(data, model.context, int(p["samples"]), settings.seed)
    windows_all = np.concatenate(batches) if batches else np.zeros((0, 2, 1, 1), np.uint8)
    flat = torch.zeros(3)
    model.perspective.copy_(flat + torch.tensor([0.0, 0.1 * model.spec.height, 4.0]))
    state = {k: v.unsqueeze(0) for k, v in model.named_buffers()}
    # one pass with a flat line; the perspective line is then fitted on the objects' feet and
    # heights, and the features measured against it recomputed (the regions do not change)
    flat_line = model.perspective.numpy().copy()
    described = model.finder.describe_all(windows_all, state)
    boxes = [
        (b[3] * model.spec.height, (b[3] - b[1]) * model.spec.height)
        for d in described
        for b in d[2]
    ]
    slope, icpt, floor = fit_perspective(boxes, model.spec.height)
    model.perspective.copy_(torch.tensor([slope, icpt, floor]))
    for feats_one, _, _ in described:
        undo_place(feats_one, flat_line, model.spec.height)
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
    frame = np.concatenate([np.full(len(d[0]), ends[i]) for i, d in enumerate(described)])
    reference = torch.from_numpy(block % REF_EVERY == REF_EVERY - 1)
    kept = _fill_bank(model, full, reference, settings.seed)
    model.bank_frames = frame[kept]
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
def _fill_bank(model: ObjectModel, full: Tensor, reference: Tensor, seed: int) -> np.ndarray:
    """Standardise, weight and store (a sample of) the normal objects; returns which of them
    (indices into ``full``) the bank kept. The scale object scores
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
    kept = np.arange(len(z))
    if len(z) > size:
        kept = np.sort(rng.permutation(len(z))[:size])
        z = z[torch.from_numpy(kept)]
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
    scales = torch.stack([_spread(d) for d in near[0].T])  # (1 + S,)
    model.bank_ref.fill_(float(scales[0]))
    model.sub_ref.copy_(scales[1:])
    return kept


COPY = 1e-3  # standardised distance: below it, a reference object's neighbours are copies


def _spread(distances: Tensor) -> Tensor:
    """The median distance of the reference objects that are not copies (``COPY``). A thing
    that stood still all along (furniture the background did not take in) is found again in
    every block of the footage at the same box, so the subspaces without the embedding give
    it a distance of 0. Where such copies were about half of all objects, the plain median
    jumped between ~0 and the moving objects' distance: one clip's two encodings (0.3 grey
    levels apart) had its size scale 10x apart, and that subspace outscored every other."""
    moved = distances[distances > COPY]
    pick = moved if len(moved) else distances
    return pick.median().clamp(min=COPY)
