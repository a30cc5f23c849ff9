"""Event snapshots: the camera's own frame at the peak (its resolution and colour, decoded from
its footage), the unusual object boxed and labelled with its reason; the ring's model-size frame
when there is no footage."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from streamdet.alert.peakframe import FootageError, PeakFootage, decode_peak
from streamdet.alert.store import EventStore
from streamdet.config import parse_config
from streamdet.footage import Chunk, ClipFormat, Footage
from streamdet.frames import DetectedObject, FrameRef, ScoredFrame
from tests.support.media import BAND_FRACTION, make_clip, read_frame_index
from tests.support.scripted import PEAK_FIRST, run_script, stages
from tests.support.servers import RtspServer

FPS = 25
TINT = (170, 90)  # U, V: a blue-green background


@pytest.fixture(scope="module")
def colour_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """640x360 colour H.264: a white square moving over a tinted background, frame numbered."""
    path = tmp_path_factory.mktemp("media") / "colour.mp4"
    return make_clip(path, frames=250, fps=FPS, gop=FPS, tint=TINT)


def square_box(grey: np.ndarray) -> tuple[float, float, float, float]:
    """The white square of a (model-size) frame, relative to the frame, a little padded."""
    height, width = grey.shape[:2]
    grey = grey if grey.ndim == 2 else grey[..., 0]
    band = int(height * BAND_FRACTION) + 2
    ys, xs = np.nonzero(grey[band:] > 180)
    pad = 0.03
    return (
        max(xs.min() / width - pad, 0.0),
        max((ys.min() + band) / height - pad, 0.0),
        min((xs.max() + 1) / width + pad, 1.0),
        min((ys.max() + band + 1) / height + pad, 1.0),
    )


def scripted_event(
    tmp_path: Path, source: dict[str, Any], clips: bool
) -> tuple[dict[str, Any], int]:
    """A camera of ``source``, its frames scored by script (quiet, a peak with the square as a
    "fast" object, lower but above, quiet): one event. Returns it and its peak frame's number."""
    config = parse_config(
        {
            "cameras": [{"name": "cam", "source": source}],
            "models": {"dir": str(tmp_path / "models"), "learn_in_place": False},
            "alerts": {
                "dir": str(tmp_path / "events"),
                "rules": {"min_duration_s": 0.3, "end_after_s": 0.3},
                "clips": {"enabled": clips, "pre_roll_s": 1, "post_roll_s": 0.2},
            },
        }
    )
    scripted = stages(config)
    peaks: list[int] = []  # the number in the peak frame's pixels (the ring's copy)

    def scored(ref: FrameRef, score: float) -> ScoredFrame:
        objects: tuple[DetectedObject, ...] = ()
        if score == max(PEAK_FIRST):
            pixels = scripted.capture.ring("cam").read(ref)
            assert pixels is not None
            objects = (DetectedObject(square_box(pixels), score, "fast"),)
            peaks.append(read_frame_index(pixels))
        cells = np.zeros((6, 8), np.float32)  # no heatmap over the frame
        return ScoredFrame(ref, score, score, 4.0, cells, time.time(), objects=objects)

    run_script(scripted, "cam", PEAK_FIRST, scored, settle_s=0.5)  # and the clip is cut
    (event,) = EventStore(tmp_path / "events" / "events.db").events()
    assert event["end"] is not None and event["peak_score"] == 9.0 and event["snapshot"], event
    return event, peaks[0]


def red(image: np.ndarray) -> np.ndarray:
    b, g, r = (image[..., i].astype(int) for i in range(3))
    return (r > 180) & (g < 80) & (b < 80)


@pytest.mark.parametrize("camera", ["file", "rtsp"])
def test_snapshot_is_the_cameras_colour_frame_at_the_peak_with_the_object_boxed(
    tmp_path: Path, colour_clip: Path, camera: str
) -> None:
    if camera == "file":
        event, number = scripted_event(tmp_path, {"kind": "file", "path": str(colour_clip)}, True)
    else:
        server = RtspServer({"/colour": str(colour_clip)})
        server.start()
        try:
            source = {"kind": "rtsp", "url": server.url("/colour")}
            event, number = scripted_event(tmp_path, source, True)
        finally:
            server.stop()
    image = cv2.imread(event["snapshot"])
    assert image is not None and image.shape == (360, 640, 3)  # the camera's size, not 320x240
    # In colour: the tinted background keeps its hue (a grey frame has equal channels).
    corner = image[-40:, :40].reshape(-1, 3).mean(axis=0)
    assert corner[0] - corner[2] > 40, corner
    # The peak's own frame: the counter in its pixels is the peak frame's number.
    assert read_frame_index(image) == number
    # The object is boxed where it is: red edges around the white square, and a label.
    ((x0, y0, x1, y1),) = [o["box"] for o in event["objects"]]
    left, top, right, bottom = int(x0 * 640), int(y0 * 360), int(x1 * 640) - 1, int(y1 * 360) - 1
    boxed = red(image)
    assert boxed[top + 1, left + 2 : right - 2].mean() > 0.9  # the box's top edge
    assert boxed[bottom - 1, left + 2 : right - 2].mean() > 0.9  # and its bottom edge
    inside = image[top + 6 : bottom - 5, left + 6 : right - 5]
    white = (inside.min(axis=2) > 200).mean()
    assert white > 0.3, white  # the square is inside the box (not a frame before or after)
    label = boxed[max(top - 30, 0) : top, left : right + 40]
    assert label.sum() > 300, label.sum()  # the reason's label, on red above the box


def test_without_footage_the_snapshot_is_the_ring_frame(tmp_path: Path, colour_clip: Path) -> None:
    source = {"kind": "file", "path": str(colour_clip)}
    event, number = scripted_event(tmp_path, source, clips=False)
    image = cv2.imread(event["snapshot"])
    assert image is not None and image.shape == (240, 320, 3)  # the model's size
    assert read_frame_index(image) == number
    assert red(image).any()  # still boxed


def test_footage_that_does_not_decode_is_a_footage_error() -> None:
    """(The alert stage then falls back to the ring frame, with one line of log.)"""
    broken = Chunk(0.0, True, b"\x00\x00\x00\x01\x65" + bytes(range(256)) * 4, 0, 0)
    h264 = ClipFormat("packets", "h264", 640, 360)
    with pytest.raises(FootageError, match="h264"):
        decode_peak(PeakFootage(Footage(h264, [broken])))
    jpeg = ClipFormat("jpeg", "mjpeg", 640, 360)
    with pytest.raises(FootageError, match="JPEG"):
        decode_peak(PeakFootage(Footage(jpeg, [Chunk(0.0, True, b"not a jpeg")])))


def test_the_stage_falls_back_to_the_ring_frame_with_one_line_of_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = parse_config(
        {
            "cameras": [{"name": "cam", "source": {"kind": "synthetic"}}],
            "models": {"dir": str(tmp_path / "models"), "learn_in_place": False},
            "alerts": {"dir": str(tmp_path / "events")},
        }
    )
    alerts = stages(config).alerts
    ring_frame = np.zeros((240, 320), np.uint8)
    broken = Footage(ClipFormat("jpeg", "mjpeg", 640, 360), [Chunk(0.0, True, b"not a jpeg")])
    caplog.set_level(logging.DEBUG, logger="streamdet.alert.stage")
    for footage in (PeakFootage(broken), None, PeakFootage(broken)):
        assert alerts._peak_pixels("cam", footage, ring_frame) is ring_frame
    lines = [r for r in caplog.records if "snapshot at the model's size" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.INFO, logging.DEBUG, logging.DEBUG]
    assert "[cam]" in lines[0].getMessage() and "JPEG" in lines[0].getMessage()
    assert "no footage" in lines[1].getMessage()
    assert not any(r.exc_info for r in caplog.records)  # no traceback for the user
