"""Live view without WebRTC: an MJPEG stream per camera, and a small page.

``/api/cameras/{name}/mjpeg?fps=5&overlay=1`` sends the camera's newest frame, with the newest
anomaly heatmap and score drawn on it (from an object-level model, each object above the
threshold boxed and labelled with its reason; WebRTC sends the same overlay), as
``multipart/x-mixed-replace`` JPEGs at the viewer's frame rate. Each viewer gets the newest
frame only — nothing is queued for a slow viewer, so it cannot grow memory or latency — and its
loop ends when the viewer goes. The newest score comes from the inference stage's read-only
``snapshot()`` (``NewestScore``), never from its live objects.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from importlib import resources

import cv2
import numpy as np
from aiohttp import web

from streamdet.alert.snapshot import render_snapshot
from streamdet.capture.ring import FrameRing
from streamdet.config import MjpegConfig
from streamdet.errors import StreamdetError
from streamdet.frames import ScoredFrame
from streamdet.web.errors import bad_request, unavailable
from streamdet.web.keys import CAPTURE, INFERENCE

BOUNDARY = "frame"

# ``newest(after_seq)``: the camera's newest frame if newer than ``after_seq``, as (seq, pixels).
NewestImage = Callable[[int], tuple[int, np.ndarray] | None]
# ``score(camera)``: the camera's newest scored frame (None before the first).
NewestScore = Callable[[str], ScoredFrame | None]


def newest_score(request: web.Request) -> NewestScore:
    """The newest score of a camera, read from the inference stage's snapshot of it."""
    inference = request.app[INFERENCE]

    def score(camera: str) -> ScoredFrame | None:
        model = inference.snapshot(camera).camera(camera)
        return None if model is None else model.latest

    return score


def overlay(frame: np.ndarray, scored: ScoredFrame | None) -> np.ndarray:
    """The frame with the heatmap of ``scored`` (the camera's newest score), the unusual
    objects boxed with their reasons (else no region), and the score against the threshold."""
    if scored is None or not np.isfinite(scored.threshold):
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if frame.ndim == 2 else frame
    unusual = [o for o in scored.objects if o.score > scored.threshold]
    image = render_snapshot(
        frame, scored.anomaly_map, scored.threshold, (0.0, 0.0, 0.0, 0.0), unusual
    )
    colour = (0, 0, 255) if scored.above else (255, 255, 255)
    text = f"{scored.smoothed:.2f} / {scored.threshold:.2f}"
    cv2.putText(image, text, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)
    return image


def camera_ring(request: web.Request) -> FrameRing:
    """The ring of the camera named in the URL, or 404."""
    name = request.match_info["name"]
    try:
        return request.app[CAPTURE].ring(name)
    except StreamdetError:
        raise web.HTTPNotFound(text=f"no camera named {name!r}") from None


class CameraGone(Exception):
    """The camera a viewer watches was removed, or restarted, by a config reload: the viewer's
    stream ends (the page opens the camera's new one)."""


def newest_image(
    ring: FrameRing, score: NewestScore | None, after_seq: int
) -> tuple[int, np.ndarray] | None:
    """The newest frame if it is newer than ``after_seq``: its seq and pixels (overlaid with
    the camera's newest score, unless ``score`` is None: the raw view). Raises ``CameraGone``
    once the camera's ring is closed."""
    if ring.closed:
        raise CameraGone(ring.camera)
    ref = ring.latest()
    if ref is None or ref.seq == after_seq or (pixels := ring.read(ref)) is None:
        return None
    return ref.seq, pixels if score is None else overlay(pixels, score(ring.camera))


class MjpegViewers:
    """The MJPEG streams open now, held to ``server.mjpeg.max_viewers``: each one encodes its
    own JPEG per frame (80 viewers took the server from 0.6 to 1.66 cores, issue 13)."""

    def __init__(self, config: MjpegConfig) -> None:
        self.config = config
        self.open = 0


MJPEG: web.AppKey[MjpegViewers] = web.AppKey("mjpeg_viewers", MjpegViewers)


async def mjpeg(request: web.Request) -> web.StreamResponse:
    ring, viewers = camera_ring(request), request.app[MJPEG]
    raw = request.query.get("fps", "5")
    try:
        fps = float(raw)
    except ValueError:
        fps = math.nan
    if math.isnan(fps):  # clamping would quietly make it 0.5
        raise bad_request(f"fps: expected a number, got {raw!r}")
    fps = min(30.0, max(0.5, fps))
    score = newest_score(request) if request.query.get("overlay", "1") != "0" else None
    if viewers.open >= viewers.config.max_viewers:
        limit = viewers.config.max_viewers
        raise unavailable(f"{limit} MJPEG viewers already (server.mjpeg.max_viewers): try later")
    response = web.StreamResponse(
        headers={
            "Content-Type": f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            "Cache-Control": "no-store",
        }
    )
    viewers.open += 1
    try:
        await response.prepare(request)
        await _stream(response, lambda after: newest_image(ring, score, after), fps)
    finally:
        viewers.open -= 1
    return response


async def _stream(
    response: web.StreamResponse,
    newest: NewestImage,
    fps: float,
) -> None:
    """Send the newest frame as a JPEG part every ``1 / fps`` s until the viewer leaves, or
    the camera does."""
    last_seq = -1
    while True:
        try:
            found = newest(last_seq)
        except CameraGone:
            return
        if found is not None:
            last_seq, image = found
            ok, data = await asyncio.to_thread(cv2.imencode, ".jpg", image)
            if ok:
                part = (
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n"
                ).encode()
                try:
                    await response.write(part + data.tobytes() + b"\r\n")
                except (ConnectionResetError, RuntimeError):
                    return  # the viewer left
        await asyncio.sleep(1.0 / fps)


async def page(request: web.Request) -> web.Response:
    html = resources.files("streamdet.web").joinpath("index.html").read_text(encoding="utf-8")
    return web.Response(text=html, content_type="text/html")
