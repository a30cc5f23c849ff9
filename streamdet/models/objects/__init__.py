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
   textured grass (the synthetic scene's forbidden-area walker). A view that drifted further
   (``register_px``, 6 pixels) is found when a frame has an object that stands still: the
   background's textured tiles are looked for in the frame and the background is moved by
   the shift they agree on (``register``). On the real clips' validation set a parking lane
   whose camera drifts 3 pixels had lane lines scoring as high as cars in every frame;
   registered, its watched normal maximum fell from 0.99 to 0.87 of the threshold and the
   pooled pasted AUC rose 0.924 -> 0.943 (Ped2's fixed camera: no change).
2. **Per object:** where its foot is, how tall and wide it is, how fast and which way it moves
   (DIS optical flow, as ``motionflow``: the median vector over the object's pixels, checked
   against the frames: an object that moved farther than it is wide, which DIS loses, takes
   the move from where it was in the frame before, ``motion``), how
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

from streamdet.models.objects.density import knn_means
from streamdet.models.objects.features import (
    BOX_COLUMNS,
    FAR,
    FEATURES,
    GROUPS,
    OBJECT_DEFAULTS,
    SUBSPACES,
)
from streamdet.models.objects.finding import Finder, background_bands, fit_perspective
from streamdet.models.objects.model import CropEncoder, ObjectModel, build, default_spec
from streamdet.models.objects.training import train_objects

__all__ = [
    "BOX_COLUMNS",
    "FAR",
    "FEATURES",
    "GROUPS",
    "OBJECT_DEFAULTS",
    "SUBSPACES",
    "CropEncoder",
    "Finder",
    "ObjectModel",
    "background_bands",
    "build",
    "default_spec",
    "fit_perspective",
    "knn_means",
    "train_objects",
]
