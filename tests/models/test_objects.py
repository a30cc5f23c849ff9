"""The object-level model ("objects"): it learns a synthetic walkway's normal and says why.

One model is trained per test module on normal footage of the synthetic scene (people walking
left to right along the path, perspective: nearer walkers are lower and taller) and calibrated
on held-out normal footage; every scheduled anomaly must then cross the threshold with the
right reason, and normal footage must not.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime
import pytest
import torch

from streamdet.capture.synthetic import ScheduledAnomaly, SyntheticScene
from streamdet.eval.events import clip_events
from streamdet.frames import REASONS, DetectedObject
from streamdet.learning.workflow import Budget, Plan, Trained, learn
from streamdet.models import objects
from streamdet.models.base import ModelSpec, TrainingData, TrainSettings
from streamdet.models.export import export_onnx
from streamdet.models.kinds import DEFAULT_KIND
from streamdet.models.objects.density import reasons
from streamdet.models.objects.motion import verified_moves
from streamdet.models.objects.register import Anchors
from streamdet.scoring.smoothing import ema

W, H, FPS = 320, 240, 25.0
# the module's model learns 3 minutes of footage and scores all of it out of fold (every
# frame: analysed at 25 fps) in its first test: ~60 s alone, more beside other work
pytestmark = pytest.mark.timeout(300)


def test_it_is_the_default_kind() -> None:
    assert DEFAULT_KIND == "objects"


def render(scene: SyntheticScene, frames: range) -> np.ndarray:
    out = np.empty((H, W, 3), np.uint8)
    grey = np.empty((len(frames), H, W), np.uint8)
    for i, n in enumerate(frames):
        scene.render(n, out)
        grey[i] = out.mean(axis=2).astype(np.uint8)
    return grey


@pytest.fixture(scope="module")
def trained() -> Trained:
    scene = SyntheticScene(W, H, FPS, seed=3)
    clip = render(scene, range(0, 4500))  # 3 minutes of normal footage
    spec = ModelSpec("objects", W, H, 16)
    return learn(
        TrainingData([clip[i : i + 750] for i in range(0, 4500, 750)], FPS),
        # every frame analysed, smoothed with the product's EMA 0.5
        Plan(spec, TrainSettings(seed=0), Budget(FPS, 1.0, 0.5)),
    )


def scored(model: objects.ObjectModel, clip: np.ndarray) -> list[tuple[DetectedObject, ...]]:
    """Every frame's objects (from its pair with the frame before)."""
    pairs = np.lib.stride_tricks.sliding_window_view(clip, 2, axis=0).transpose(0, 3, 1, 2)
    found: list[tuple[DetectedObject, ...]] = []
    with torch.inference_mode():
        for start in range(0, len(pairs), 32):
            batch = torch.from_numpy(np.ascontiguousarray(pairs[start : start + 32]))
            rows = model(batch).objects
            assert rows is not None
            found += [DetectedObject.from_rows(r) for r in rows.numpy()]
    return found


def test_windows_without_any_object_score_zero(trained: Trained) -> None:
    """An empty scene (the learned background itself, a batch of nothing): no object, score
    at the model's floor, not an error."""
    model = trained.model
    assert isinstance(model, objects.ObjectModel)
    empty = model.background.round().to(torch.uint8).expand(4, 2, H, W).contiguous()
    windows = model.stage_seconds["windows"]
    with torch.inference_mode():
        out = model(empty)
    assert model.stage_seconds["windows"] == windows + 4  # the clock eval reports counts them
    assert out.objects is not None and not out.objects[..., 6].any()
    expected = (0 - model.norm_mean) / model.norm_std  # a raw 0, normalised
    assert torch.allclose(out.score, expected.expand(4))


def test_footage_left_out_scores_against_the_rest_of_the_footage_only(trained: Trained) -> None:
    """The first 30 s of the training footage, left out of the bank (as calibration scores each
    block of footage out of fold): its objects lose their own copies as neighbours, so no
    window scores lower and most score higher; afterwards the bank is as it was."""
    model = trained.model
    assert isinstance(model, objects.ObjectModel) and model.bank_frames is not None
    assert trained.summary["folds"] == 8 and trained.summary["frames"] == 4500  # learned all
    clip = render(SyntheticScene(W, H, FPS, seed=3), range(0, 300))  # the footage's start
    pairs = torch.from_numpy(
        np.ascontiguousarray(np.lib.stride_tricks.sliding_window_view(clip, 2, axis=0))
    ).permute(0, 3, 1, 2)
    bank = model.bank.clone()
    with torch.inference_mode():
        full = torch.cat([model(pairs[i : i + 64]).score for i in range(0, len(pairs), 64)])
    left_out = model.leaving_out(0, 750)
    assert left_out is not None
    with left_out as scorer, torch.inference_mode():
        assert (scorer.bank[: model.bank_frames.shape[0]] < objects.FAR / 2).any(dim=1).sum() < (
            (bank[: model.bank_frames.shape[0]] < objects.FAR / 2).any(dim=1).sum()
        )
        out = torch.cat([scorer(pairs[i : i + 64]).score for i in range(0, len(pairs), 64)])
    assert torch.equal(model.bank, bank)
    assert bool((out >= full - 1e-4).all())
    assert float((out > full + 1e-3).float().mean()) > 0.5


def test_normal_footage_raises_no_event(trained: Trained) -> None:
    """20 s of new walkers, every frame scored and smoothed as calibrated (EMA 0.5), through
    the product's event rules (``streamdet.eval.events``): no event. The threshold is set for
    1 false event an hour, so a model that keeps its budget fails this by chance with
    probability about 20 / 3600 = 0.6 %. (Bare up-crossings are stricter than events, which
    must stay above for ``min_duration_s``: this footage has one, 0.16 s long, from two
    walkers merged into one region.)"""
    model = trained.model
    assert isinstance(model, objects.ObjectModel)
    clip = render(SyntheticScene(W, H, FPS, seed=3), range(6000, 6500))  # people it never saw
    found = scored(model, clip)
    assert sum(1 for f in found if f) > 400  # it sees the walkers
    tops = np.array([f[0].score if f else 0.0 for f in found])
    smoothed = ema(tops, 0.5)
    events = clip_events(smoothed, np.zeros(len(smoothed)), trained.calibration.threshold, FPS)
    assert events.events == 0, (events, smoothed.max(), trained.calibration.threshold)


@pytest.mark.parametrize(
    ("kind", "reasons"),
    [
        ("fast", {"fast"}),
        ("wrong_way", {"wrong way"}),
        ("forbidden_area", {"unusual place"}),
        ("loiter", {"lingering"}),
        ("left_object", {"left behind"}),
    ],
)
def test_each_anomaly_crosses_the_threshold_with_its_reason(
    trained: Trained, kind: str, reasons: set[str]
) -> None:
    model = trained.model
    assert isinstance(model, objects.ObjectModel)
    anomaly = ScheduledAnomaly(kind, 302.0, 6.0)  # type: ignore[arg-type]
    scene = SyntheticScene(W, H, FPS, seed=3, anomalies=[anomaly])
    first = 7520
    clip = render(scene, range(first, first + 200))
    found = scored(model, clip)
    threshold = trained.calibration.threshold
    hot = [o for n, f in enumerate(found, start=first + 1) if scene.is_anomalous(n) for o in f[:1]]
    above = [o for o in hot if o.score > threshold]
    assert len(above) >= 0.5 * len(hot), f"{kind}: {len(above)} of {len(hot)} frames above"
    said = [o.reason for o in above]
    top = max(set(said), key=said.count)
    assert top in reasons, f"{kind}: reasons {sorted(set(said))}"


def test_the_crop_encoder_exports_to_onnx_with_the_same_embeddings(
    trained: Trained, tmp_path: Path
) -> None:
    model = trained.model
    path = export_onnx(model, tmp_path / "encoder.onnx")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert isinstance(model, objects.ObjectModel)
    crops = torch.rand(5, 2, 24, 24)
    with torch.inference_mode():
        expected = model.encoder(crops).numpy()
    (got,) = session.run(None, {"crops": crops.numpy()})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


class PerspectiveWalkway:
    """Walkers whose height grows with their foot row (2.9x from the far top to the near
    bottom, a steeper perspective than the synthetic scene's) and whose pace grows with it."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        texture = rng.integers(90, 170, (H, W)).astype(np.uint8)
        self.plate = cv2.GaussianBlur(texture, (7, 7), 0)
        self.rng = rng

    @staticmethod
    def height_at(feet: float) -> float:
        return 0.3 * feet

    def draw(self, frame: np.ndarray, cx: float, feet: float, height: float) -> None:
        cv2.ellipse(
            frame,
            (round(cx), round(feet - 0.4 * height)),
            (round(0.2 * height), round(0.4 * height)),
            0,
            0,
            360,
            40,
            -1,
        )
        cv2.circle(frame, (round(cx), round(feet - 0.85 * height)), round(0.14 * height), 200, -1)

    def footage(self, frames: int) -> np.ndarray:
        walkers: list[list[float]] = []  # cx, feet
        out = np.empty((frames, H, W), np.uint8)
        for n in range(frames):
            if self.rng.random() < 0.04:
                walkers.append([-20.0, float(self.rng.uniform(75, 235))])
            frame = self.plate.copy()
            for w in walkers:
                w[0] += 0.06 * self.height_at(w[1])
                self.draw(frame, w[0], w[1], self.height_at(w[1]))
            walkers = [w for w in walkers if w[0] < W + 40]
            out[n] = frame
        return out


@pytest.fixture(scope="module")
def perspective() -> tuple[Trained, PerspectiveWalkway]:
    scene = PerspectiveWalkway()
    clip = scene.footage(2400)
    trained = learn(
        # taken as 10 fps footage: 240 s, 72 s of it held out, enough for a threshold that is
        # not the conservative one of short footage. A held-out tail (folds=0), not the
        # default's out-of-fold blocks: this tests perspective against a threshold, and with
        # the 8 blocks' higher one (34.4) the far walker of a near one's size scored 0.89 x it
        TrainingData([clip[i : i + 600] for i in range(0, 2400, 600)], 10.0),
        Plan(
            ModelSpec("objects", W, H, 16),
            TrainSettings(seed=0),
            Budget(10.0, 1.0, 1.0, holdout=0.3, folds=0),
        ),
    )
    return trained, scene


def test_perspective_near_and_far_walkers_are_normal_a_near_size_far_away_is_not(
    perspective: tuple[Trained, PerspectiveWalkway],
) -> None:
    trained, scene = perspective
    model = trained.model
    assert isinstance(model, objects.ObjectModel)
    far, near = 90.0, 225.0
    cases = {
        "far": (far, scene.height_at(far)),
        "near": (near, scene.height_at(near)),
        "near size far away": (far, scene.height_at(near)),
    }
    found: dict[str, DetectedObject | None] = {}
    for name, (feet, height) in cases.items():
        frames = []
        for step in range(2):  # at the place's normal pace, one frame apart
            frame = scene.plate.copy()
            scene.draw(frame, 150 + step * 0.06 * scene.height_at(feet), feet, height)
            frames.append(frame)
        objects_seen = scored(model, np.stack(frames))[0]
        found[name] = objects_seen[0] if objects_seen else None
    threshold = trained.calibration.threshold
    far_seen, near_seen, odd = found["far"], found["near"], found["near size far away"]
    assert far_seen is not None and near_seen is not None and odd is not None, found
    assert far_seen.score < threshold and near_seen.score < threshold, found
    assert odd.score > threshold and odd.reason == "large", found


def test_a_camera_shaken_by_a_pixel_shows_no_object_a_real_one_still_shows() -> None:
    """The background is compared within ``shift_tolerance`` pixels: the whole view moved by
    one pixel (a shake, a jittering stream) leaves its edges where the background has such
    values nearby; an object that was not there stands out as before."""
    rng = np.random.default_rng(0)
    tiles = rng.choice(np.array([30, 220], np.uint8), (H // 16, W // 16))
    sharp = cv2.resize(tiles, (W, H), interpolation=cv2.INTER_NEAREST)
    background = cv2.GaussianBlur(sharp, (0, 0), 1.5)  # edges a few pixels wide, as cameras see
    shaken = np.roll(background, (1, 1), axis=(0, 1))
    with_object = shaken.copy()
    with_object[100:140, 150:170] = 250
    limit = np.full((H, W), 20, np.int16)
    bg16 = background.astype(np.int16)

    def found(tolerance: int, frame: np.ndarray) -> int:
        model = objects.ObjectModel(ModelSpec("objects", W, H, 16, {"shift_tolerance": tolerance}))
        rows, _ = model.finder.regions(frame, objects.background_bands(bg16, tolerance), limit)
        return len(rows)

    assert found(0, shaken) > 0  # without the tolerance, the moved edges are "objects"
    assert found(1, shaken) == 0
    assert found(1, with_object) == 1


def test_a_view_that_drifted_by_pixels_is_registered_and_a_real_object_still_shows() -> None:
    """The whole view moved by 4 pixels right and 2 up since the background was learned (a
    sagging mount): more than the tolerance's pixel, so its edges are "objects" that stand
    still. The background's tiles are found where they moved to, the background is moved by
    as much, and only the object that came in is found, at its own place."""
    rng = np.random.default_rng(0)
    tiles = rng.choice(np.array([30, 220], np.uint8), ((H + 16) // 16, (W + 16) // 16))
    wide = cv2.resize(tiles, (W + 16, H + 16), interpolation=cv2.INTER_NEAREST)
    scene = cv2.GaussianBlur(wide, (0, 0), 1.5)  # more than the camera sees: the drift brings
    background = scene[8 : 8 + H, 8 : 8 + W]  # some in at an edge
    drifted = scene[10 : 10 + H, 4 : 4 + W].copy()  # drifted[y, x] = background[y + 2, x - 4]
    with_object = drifted.copy()
    with_object[100:140, 150:170] = 250
    bg16 = background.astype(np.int16)
    assert Anchors(bg16, 6).shift(drifted) == (4, -2)
    assert Anchors(bg16, 6).shift(rng.integers(0, 255, (H, W), dtype=np.uint8)) == (0, 0)

    def boxes(reach: int, prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
        model = objects.ObjectModel(ModelSpec("objects", W, H, 16, {"register_px": reach}))
        bands = objects.background_bands(bg16, 1)
        limit = np.full((H, W), 20, np.int16)
        anchors = Anchors(bg16, reach) if reach else None
        pair = np.stack([prev, cur])
        return model.finder.describe(pair, bands, limit, model.perspective.numpy(), anchors)[2]

    assert len(boxes(0, drifted, drifted)) > 0  # without registration: the moved edges
    assert len(boxes(6, drifted, drifted)) == 0
    found = boxes(6, drifted, with_object)
    assert len(found) == 1, found
    assert np.allclose(found[0], [150 / W, 100 / H, 170 / W, 140 / H], atol=0.02), found
    assert len(boxes(0, drifted, with_object)) > 1  # (the edges again beside it)


@pytest.mark.parametrize("move", [4, 12, 30, 45])
def test_an_object_moving_farther_than_it_is_wide_gets_its_own_speed(move: int) -> None:
    """A textured 12 x 30 pixel object on a textured background moves ``move`` pixels between
    two frames. DIS follows it while it moves less than its width; farther, it gives the
    background's vector. The move is checked against the frames and taken from where the
    object was in the frame before: its speed feature is the move it made either way."""
    rng = np.random.default_rng(1)
    background = cv2.GaussianBlur(rng.integers(60, 200, (H, W), dtype=np.uint8), (0, 0), 2.0)
    sprite = np.clip(rng.normal(20, 10, (30, 12)), 0, 255).astype(np.uint8)
    prev, cur = background.copy(), background.copy()
    prev[120:150, 100 : 100 + 12] = sprite
    cur[120:150, 100 + move : 112 + move] = sprite
    bg16 = background.astype(np.int16)

    def speed(verify: bool) -> float:
        model = objects.ObjectModel(ModelSpec("objects", W, H, 16, {"verify_moves": verify}))
        bands = objects.background_bands(bg16, 1)
        limit = np.full((H, W), 20, np.int16)
        pair = np.stack([prev, cur])
        feats, _, boxes = model.finder.describe(pair, bands, limit, model.perspective.numpy())
        assert len(boxes) == 1, boxes
        column = objects.FEATURES.index("speed")
        return float(feats[0, column]) * H / 100.0  # pixels a frame

    assert speed(True) == pytest.approx(move, abs=1.0)
    if move >= 30:  # (what the flow alone measured: the reason for the check)
        assert abs(speed(False) - move) > 5.0


def test_a_pair_a_frame_apart_counts_its_moves_per_usual_frame_interval() -> None:
    """A frame dropped between a window's two frames: the object moved 8 pixels in twice the
    usual interval. At the time scale of 0.5 the stage gives such a pair, it moves as fast as
    the same object 4 pixels on in a usual pair, through the model's grouped call."""
    rng = np.random.default_rng(1)
    background = cv2.GaussianBlur(rng.integers(60, 200, (H, W), dtype=np.uint8), (0, 0), 2.0)
    sprite = np.clip(rng.normal(20, 10, (30, 12)), 0, 255).astype(np.uint8)
    model = objects.ObjectModel(ModelSpec("objects", W, H, 16, {"register_px": 0}))
    model.background.copy_(torch.from_numpy(background.astype(np.float32)))
    model.new_view()
    column = objects.FEATURES.index("speed")

    def speed(move: int, scale: float | None) -> float:
        prev, cur = background.copy(), background.copy()
        prev[120:150, 100:112] = sprite
        cur[120:150, 100 + move : 112 + move] = sprite
        frames = torch.from_numpy(np.stack([prev, cur])[None])
        scales = None if scale is None else torch.tensor([scale])
        with torch.inference_mode():
            z = model(frames, time_scales=scales).features
        assert z is not None
        raw = z[0, 0] / model._weights * model.feat_std + model.feat_mean
        return float(raw[column]) * H / 100.0  # pixels a usual frame interval

    assert speed(4, None) == pytest.approx(4.0, abs=0.5)
    assert speed(4, 1.0) == pytest.approx(speed(4, None))
    assert speed(8, None) == pytest.approx(8.0, abs=0.5)
    assert speed(8, 0.5) == pytest.approx(4.0, abs=0.5)


def test_a_move_within_what_the_flow_follows_keeps_the_flow_vector() -> None:
    """A small 9 x 9 textured object 5 pixels on, which leaves most of where it was. A flow
    vector of 4.4 pixels rounds to 4, which does not explain its pixels, and the move of the
    object in the frame before (its centroid, whole pixels) would. The two are under half the
    object's width apart: within what DIS follows, where its sub-pixel median over the
    object's pixels is the better of the two and is kept. (On Ped2's training footage such a
    swap made a far walker's 0.5-pixel step 1.2, and its frame the footage's highest score.)
    A move farther than that (30 pixels, the flow saying none) is still replaced."""
    rng = np.random.default_rng(2)
    background = np.full((H, W), 120, np.uint8)
    sprite = rng.choice(np.array([0, 240], np.uint8), (9, 9))  # a checkerboard-like texture
    background16 = background.astype(np.int16)
    finder = objects.ObjectModel(ModelSpec("objects", W, H, 16)).finder
    bands = objects.background_bands(background16, 0)
    limit = np.full((H, W), 20, np.int16)

    def checked(step: int, flow: float) -> float:
        prev, cur = background.copy(), background.copy()
        prev[100:109, 100:109] = sprite
        cur[100:109, 100 + step : 109 + step] = sprite
        found, labels = finder.regions(cur, bands, limit)
        mine = labels == found[0, 4]
        ys, xs = np.nonzero(mine)
        moves = verified_moves(
            prev,
            cur,
            background,
            found[:1],
            (ys, xs, np.zeros(len(ys), np.int64)),
            np.array([[flow, 0.0]]),
            mine,
            lambda: finder.regions(prev, bands, limit)[0],
        )
        return float(moves[0, 0])

    assert checked(5, 4.4) == pytest.approx(4.4)
    assert checked(30, 0.0) == pytest.approx(30.0, abs=1.0)


def test_a_checkpoint_from_before_the_shift_tolerance_keeps_its_foreground() -> None:
    """Its threshold was calibrated on the foreground without the tolerance: it loads with 0."""
    model = objects.ObjectModel(ModelSpec("objects", W, H, 16))
    assert int(model.shift) == 1  # the default for a model trained now
    old = {k: v for k, v in model.state_dict().items() if k != "shift"}
    again = objects.ObjectModel(ModelSpec("objects", W, H, 16))
    again.load_state_dict(old)
    assert int(again.shift) == 0


def test_a_checkpoint_from_before_16_objects_keeps_scoring_8() -> None:
    """Its threshold was calibrated on a frame's 8 largest objects: it keeps 8 (and a later
    save says so in its spec); a checkpoint of now keeps its own number."""
    model = objects.ObjectModel(ModelSpec("objects", W, H, 16))
    assert int(model.params["max_objects"]) == 16
    old = {k: v for k, v in model.state_dict().items() if k != "kept"}
    again = objects.ObjectModel(ModelSpec("objects", W, H, 16))
    again.load_state_dict(old)
    assert int(again.params["max_objects"]) == 8 == int(again.kept)
    assert again.spec.params["max_objects"] == 8
    same = objects.ObjectModel(ModelSpec("objects", W, H, 16))
    same.load_state_dict(model.state_dict())
    assert int(same.params["max_objects"]) == 16


def test_a_checkpoint_from_before_the_lighter_refinement_keeps_its_flow() -> None:
    """Its threshold was calibrated on speeds from 5 refinement iterations of the flow: it
    keeps 5 (its finder computes the flow so, and a later save says so); one of now keeps 3."""
    model = objects.ObjectModel(ModelSpec("objects", W, H, 16))
    assert int(model.params["dis_refine"]) == 3 == int(model.refine)
    old = {k: v for k, v in model.state_dict().items() if k != "refine"}
    again = objects.ObjectModel(ModelSpec("objects", W, H, 16))
    again.load_state_dict(old)
    assert int(again.params["dis_refine"]) == 5 == int(again.refine)
    assert again.finder.params["dis_refine"] == 5 == again.spec.params["dis_refine"]
    same = objects.ObjectModel(ModelSpec("objects", W, H, 16))
    same.load_state_dict(model.state_dict())
    assert int(same.params["dis_refine"]) == 3


def test_the_background_takes_in_a_scene_change_slowly_under_an_object_fast_elsewhere() -> None:
    """A car parks (a thing that was not in the learned view): it is an object at once and
    still after a minute (long enough for its event), and part of the view after 20 minutes
    of live frames; a change where no object is (light) is taken in within minutes."""
    model = objects.ObjectModel(ModelSpec("objects", W, H, 16))
    model.background.fill_(100.0)
    parked = np.full((H, W), 100, np.uint8)
    parked[100:140, 150:190] = 200  # the car
    parked[:40, :] = 110  # the sky got brighter: 10 grey levels, under any object's limit

    def settle_for(seconds: int) -> int:
        """Settle one frame a second (the objects found in it masked) -> objects found now."""
        found = 0
        for _ in range(seconds + 1):
            bands = objects.background_bands(
                np.rint(model.background.numpy()).astype(np.int16), int(model.shift)
            )
            limit = model.finder.limits(model.noise.numpy())
            rows, _ = model.finder.regions(parked, bands, limit)
            found = len(rows)
            boxes = np.column_stack(
                [
                    rows[:, 0] / W,
                    rows[:, 1] / H,
                    (rows[:, 0] + rows[:, 2]) / W,
                    (rows[:, 1] + rows[:, 3]) / H,
                ]
            )
            model.settle(parked, boxes, 1.0)
        return found

    assert settle_for(0) == 1
    assert settle_for(60) == 1  # a minute on: still there to be seen
    sky = float(model.background[10, 10])
    assert 105.0 < sky < 110.0  # light: 1 - 1/e of it in settle_free_s (60 s)
    car = float(model.background[120, 170])
    assert 100.0 < car < 120.0  # under the car: ~10 % of the change in a minute
    assert settle_for(20 * 60) == 0  # part of the view now
    assert float(model.background[120, 170]) > 180.0


def test_a_background_that_settled_is_the_one_objects_are_found_against() -> None:
    """What the finder derives from a background (bands, limits, tiles) is kept between
    windows under the model's view token; a background that took in a frame has a new one,
    so the next window is measured against the background as it is now, not as it was."""
    model = objects.ObjectModel(ModelSpec("objects", W, H, 16))
    model.background.fill_(100.0)
    model.new_view()
    frame = np.full((H, W), 100, np.uint8)
    frame[100:140, 150:190] = 200  # a car parked
    pair = torch.from_numpy(np.stack([frame, frame])[None])

    def found() -> int:
        with torch.inference_mode():
            rows = model(pair).objects
        assert rows is not None
        return int((rows[0, :, 6] > 0).sum())

    assert found() == 1
    assert found() == 1  # (the same view, from what was kept)
    token = int(model.view_token)
    model.settle(frame, np.zeros((0, 4)), 1e6)  # long enough to take the car in entirely
    assert int(model.view_token) != token
    assert found() == 0


def test_a_thing_that_stood_still_all_along_leaves_the_scale_of_scores_as_it_was() -> None:
    """A thing found in every training window at the same box (furniture the background did not
    take in) is a copy of itself in every subspace without the embedding. Whether such copies
    are a little under or a little over half of all objects must not move the unit scores are
    measured in: the plain median fell from the moving objects' distance to ~0 across half,
    and that subspace then outscored every other (an encoding of the same footage did it)."""
    from streamdet.models.objects.features import FEATURES
    from streamdet.models.objects.training import COPY, REF_BLOCK, REF_EVERY, _fill_bank

    def scales(share: float) -> torch.Tensor:
        model = objects.ObjectModel(ModelSpec("objects", W, H, 16))
        generator = torch.Generator().manual_seed(0)
        n, geometry = 3000, len(FEATURES)
        full = torch.randn(n, geometry + int(model.params["embed"]), generator=generator)
        still = torch.rand(n, generator=generator) < share
        full[still, :geometry] = full[0, :geometry]  # the same box, the same (no) motion
        reference = (torch.arange(n) // REF_BLOCK) % REF_EVERY == REF_EVERY - 1
        _fill_bank(model, full, reference, seed=0)
        return model.sub_ref[:4].clone()  # speed, size, direction, still (no embedding)

    under, over = scales(0.45), scales(0.55)
    assert bool((under > 100 * COPY).all()) and bool((over > 100 * COPY).all()), (under, over)
    # fewer moving objects stand a little farther apart: a few % more, not a jump
    ratio = over / under
    assert bool(((ratio > 0.9) & (ratio < 1.3)).all()), ratio


def test_the_medians_of_all_objects_at_once_are_numpys_medians_of_each() -> None:
    from streamdet.models.objects.finding import group_medians

    rng = np.random.default_rng(1)
    for n, groups in [(3000, 5), (20000, 16), (7, 3), (1, 1)]:
        values = (rng.standard_normal(n) * 5).astype(np.float32)
        values[: min(n, 3)] = [-0.0, 0.0, -1e-30][: min(n, 3)]
        group = rng.integers(0, groups, n)
        group[:groups] = np.arange(groups)
        each = [np.median(values[group == g]) for g in range(groups)]
        assert np.array_equal(group_medians(values, group, groups), np.array(each))


def test_a_direction_score_along_the_normal_way_is_speed_not_a_wrong_way() -> None:
    """Two objects whose direction features differ most from their normal neighbours, who go
    right at 1 (per place): one goes right at 3 (a car speeding down its lane: ``fast``), one
    left at 3 (``wrong way``), one right at 0.3, moving (``slow``). Without the headings (as
    before), all three were ``wrong way``."""
    dims = len(objects.FEATURES)
    z = torch.zeros(1, 3, dims)
    z[0, :, 7] = torch.tensor([4.0, -4.0, -1.5])  # the direction columns differ most
    neighbours = torch.zeros(1, 3, 5, dims)
    within = torch.full((1, 3), list(objects.SUBSPACES).index("direction"))
    own = torch.tensor([[[3.0, 0.0], [-3.0, 0.0], [0.3, 0.0]]])
    normal = torch.tensor([[[1.0, 0.0]] * 3])
    height = torch.zeros(1, 3)
    said = reasons(z, neighbours, height, within, (own, normal))[0].tolist()
    assert [REASONS[i] for i in said] == ["fast", "wrong way", "slow"]
    before = reasons(z, neighbours, height, within)[0].tolist()
    assert [REASONS[i] for i in before] == ["wrong way"] * 3
