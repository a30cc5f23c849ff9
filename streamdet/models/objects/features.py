"""The "objects" model's settings and feature layout: which columns an object's feature row has,
their groups (an event's reason) and the subspaces each scored by its own k-NN distance."""

from __future__ import annotations

from typing import Any

import torch

from streamdet.models.motionflow import DIS_KEYS, MOTIONFLOW_DEFAULTS

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
    # pixels: a view that drifted by up to this since the background was learned is found
    # (the background's textured tiles looked for in the frame) and the background moved by
    # it, when a frame has an object that stands still (``register``); 0: never
    "register_px": 6,
    # an object's flow vector is checked against the frames (its pixels moved back by it land
    # on the same grey levels before), and one that does not explain it is replaced by the
    # move from an object of the frame before (``motion``): DIS loses objects that move
    # farther than they are wide between frames
    "verify_moves": True,
    "scoring": "groups",  # groups: the highest of the subspaces' scores; joint: one k-NN
    "place_weight": 0.5,  # weight of the position features against the others
    "look_weight": 0.5,  # weight of the embedding (spread over its dimensions)
    "embed": 8,  # embedding size
    "crop": 24,  # crop side, pixels
    "ae_steps": 200,  # autoencoder training steps (batch 64)
    # the background keeps learning while the camera runs (``ObjectModel.settle``): seconds
    # for a change to be taken in (1 - 1/e of it) where no object is (light, shadows), and
    # under objects (a car that parked, a chair that moved: it is an object first, e.g. "left
    # behind", and part of the view after ~this x 1.4)
    "settle_free_s": 60.0,
    "settle_object_s": 600.0,
    # DIS optical flow over the objects' rectangle (as ``motionflow``'s keys): only each
    # object's median vector is used
    **{key: MOTIONFLOW_DEFAULTS[key] for key in DIS_KEYS},
    # variational refinement iterations: 3, not motionflow's 5 (the flow is ~60 % of finding
    # a window's objects and refinement ~60 % of the flow): 1.2x the windows a second found,
    # Ped2 validation AUC 0.929 vs 0.930 and the real clips' 0.959 vs 0.965, pasted recall
    # 14 vs 13 of 21 and 5 vs 5 of 16 (benchmarks/ped2_ablation.py, real_validation.py)
    "dis_refine": 3,
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
