"""The density of a camera's normal objects, in torch: k nearest normal objects per feature
subspace in one matrix product (``knn_means``), an object's reason from how it differs from
them, the places no normal object stood, and the anomaly map painted from object scores. See
``streamdet.models.objects``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from streamdet.frames import REASONS
from streamdet.models.objects.features import (
    FEATURES,
    GROUPS,
    PLACE_FAR,
    SUBSPACE_GROUPS,
    THING_HEIGHT,
)


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
    # minus the squared distances: torch's CPU top-k of the largest is ~1.7x faster than of
    # the smallest (same rows, exact negation)
    near = cross.mul_(2).sub_(z_sq.transpose(1, 2).unsqueeze(-1))
    near.sub_(bank_sq.transpose(1, 2).unsqueeze(2))
    _, idx = near.topk(k + skip, dim=-1)  # (B, S, N, k + skip)
    idx = idx[..., skip:]
    # the chosen neighbours' distances again, exactly: the expansion cancels to a float's
    # rounding (1e-3 after the root for a copy of a normal object, and shape-dependent)
    rows = torch.gather(
        bank.unsqueeze(1).expand(b, s, -1, -1),
        2,
        idx.reshape(b, s, n * k, 1).expand(-1, -1, -1, dims),
    ).view(b, s, n, k, dims)
    gap = (rows - z.view(b, 1, n, 1, dims)) * masks.view(1, s, 1, 1, dims)
    dist = gap.pow(2).sum(-1).sqrt().mean(dim=-1)  # (B, S, N)
    return dist.transpose(1, 2), idx[:, 0]


def reasons(
    z: Tensor,
    neighbours: Tensor,
    height_for_place: Tensor,
    within: Tensor | None,
    headings: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """The reason index of each object: the feature group farthest from its neighbours
    (among the groups of subspace ``within``, an index into ``SUBSPACES``, when given),
    said in its terms (faster or slower than its neighbours, ...). A still object is
    ``left behind`` when it is much shorter than the objects expected at its place
    (``height_for_place``: log of its height over that), else ``lingering``. ``headings``:
    each object's velocity and its neighbours' mean one (B, K, 2 each): where the direction
    differs most but the object goes the neighbours' way (within ``SAME_WAY``), it is
    ``fast`` or ``slow`` along it, not ``wrong way`` (a car speeding down its lane)."""
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
        "direction": _along(headings, best, still_obj),
        "still": staying,
        "look": torch.full_like(best, REASONS.index("unusual look")),
    }
    for i, g in enumerate(groups):
        out = torch.where(best == i, torch.as_tensor(rules[g]).expand_as(best), out)
    # clearly still where normal objects move: what it is not doing is the reason, not its
    # size or look (a bag is small, but it is there because it was left)
    still = (z[..., GROUPS["still"][0]] > 1.0) & (signed[..., 5] < -1.0)
    return torch.where(still, staying, out)


SAME_WAY = math.cos(math.radians(45))  # an object within 45 degrees of its neighbours' way


def _along(headings: tuple[Tensor, Tensor] | None, like: Tensor, still_obj: Tensor) -> Tensor:
    """The reason of an object whose direction features differ most: ``wrong way``, unless
    it goes its neighbours' way (``headings``), when it is faster or slower along it."""
    wrong = torch.full_like(like, REASONS.index("wrong way"))
    if headings is None:
        return wrong
    own, normal = headings
    own_speed, normal_speed = own.norm(dim=-1), normal.norm(dim=-1)
    cosine = (own * normal).sum(-1) / (own_speed * normal_speed).clamp(min=1e-9)
    slow = torch.where(still_obj, REASONS.index("lingering"), REASONS.index("slow"))
    along = torch.where(own_speed > normal_speed, REASONS.index("fast"), slow)
    return torch.where(cosine >= SAME_WAY, along, wrong)


def paint(obj: Tensor, boxes: Tensor, valid: Tensor, grid: tuple[int, int]) -> Tensor:
    """(B, gh, gw): each cell the highest score of the objects whose box covers it."""
    gh, gw = grid
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


def unvisited(place: Tensor, bank_place: Tensor, valid: Tensor) -> Tensor:
    """(B, K): objects farther than ``PLACE_FAR`` (frame fractions) from every normal
    object's foot; ``place`` (B, K, 2), ``bank_place`` (B or 1, M, 2) in frame fractions.
    Only the objects found are measured (the rest are False)."""
    out = torch.zeros(valid.shape, dtype=torch.bool, device=valid.device)
    if bank_place.shape[0] == 1:  # one bank: every window's objects in one call
        near = torch.cdist(place[valid].float(), bank_place[0].float())
        out[valid] = near.amin(dim=1) > PLACE_FAR
        return out
    # each camera's own bank: one batched call over the rows up to the most objects any window
    # has (a window's objects come first), not a call per camera
    n = int(valid.sum(dim=1).max())
    if n:
        near = torch.cdist(place[:, :n].float(), bank_place.float()).amin(dim=2)
        out[:, :n] = (near > PLACE_FAR) & valid[:, :n]
    return out
