"""The validation set made from training footage: what it pastes where, and its labels."""

from __future__ import annotations

import numpy as np
import pytest

from streamdet.eval import validation


def walkway(frames: int = 80, seed: int = 0) -> np.ndarray:
    """A textured still background with dark walker-sized blobs moving right: (N, 160, 240)."""
    rng = np.random.default_rng(seed)
    base = (150 + rng.normal(0, 3, (160, 240))).clip(0, 255).astype(np.uint8)
    clip = np.repeat(base[None], frames, axis=0)
    for t in range(frames):
        for row, x0 in ((90, 10), (115, 120)):
            x = (x0 + 2 * t) % 220
            clip[t, row : row + 20, x : x + 9] = 40
    return clip


def test_sprites_are_walker_sized_cut_outs() -> None:
    sprites = validation.person_sprites([walkway(), walkway(seed=1)], count=10)
    assert 1 <= len(sprites) <= 10
    for grey, mask in sprites:
        assert grey.shape == mask.shape and 14 <= grey.shape[0] <= 28
        assert mask.max() > 0.9 and grey[mask > 0.9].mean() < 80


@pytest.mark.parametrize("kind", validation.KINDS)
def test_inject_changes_only_labelled_frames(kind: str) -> None:
    clip = walkway()
    person = validation.person_sprites([walkway(seed=1)])[0]
    out, labels = validation.inject(clip, kind, person, np.random.default_rng(0), start=20)
    assert out.shape == clip.shape and labels.shape == (len(clip),)
    assert not labels[:20].any() and labels.sum() >= 5
    changed = (out != clip).reshape(len(clip), -1).any(axis=1)
    assert not changed[:20].any()
    assert changed[labels == 1].all()


def test_positions_scale_with_the_frame_width() -> None:
    person = validation.person_sprites([walkway(seed=1)])[0]
    small, _ = validation.inject(walkway(), "cart", person, np.random.default_rng(3), start=0)
    big_clip = np.repeat(np.repeat(walkway(), 2, axis=1), 2, axis=2)
    big, _ = validation.inject(big_clip, "cart", person, np.random.default_rng(3), start=0)
    rows_small = np.nonzero((small != walkway()).any(axis=(0, 2)))[0]
    rows_big = np.nonzero((big != big_clip).any(axis=(0, 2)))[0]
    assert abs(rows_big.mean() - 2 * rows_small.mean()) < 4  # same place, twice the size


def test_build_pairs_every_clip_with_one_copy_per_kind() -> None:
    held = [walkway(60, seed=2), walkway(70, seed=3)]
    result = validation.build_validation(held, [walkway(seed=1)], seed=0)
    per_clip = 1 + len(validation.KINDS)
    assert len(result.clips) == len(result.labels) == len(result.kinds) == 2 * per_clip
    assert result.kinds[:per_clip] == ["normal", *validation.KINDS]
    assert result.clips[0] is held[0] and not result.labels[0].any()
    assert all(
        lab.any() for lab, k in zip(result.labels, result.kinds, strict=True) if k != "normal"
    )
    with pytest.raises(ValueError, match="no walker"):
        validation.build_validation(held, [np.zeros((10, 160, 240), np.uint8)])


def test_speed_size_subset_names_known_kinds_without_place_or_direction() -> None:
    assert set(validation.SPEED_SIZE_KINDS) < set(validation.KINDS)
    assert not {"against", "grass"} & set(validation.SPEED_SIZE_KINDS)
