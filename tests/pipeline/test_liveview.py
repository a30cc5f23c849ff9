"""The MJPEG live view and the page, from a running pipeline over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import aiohttp
import cv2
import numpy as np

from streamdet.frames import ModelState
from tests.pipeline.test_run import Running, pipeline_config
from tests.support.waiting import wait_for


async def read_jpegs(url: str, count: int) -> tuple[list[np.ndarray], float]:
    """Read ``count`` JPEG parts of a multipart stream; return them and the seconds it took."""
    timeout = aiohttp.ClientTimeout(total=20)
    started = time.monotonic()
    images: list[np.ndarray] = []
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        buffer = b""
        async for chunk in response.content.iter_any():
            buffer += chunk
            while (start := buffer.find(b"\xff\xd8")) >= 0 and (
                end := buffer.find(b"\xff\xd9", start)
            ) >= 0:
                data, buffer = buffer[start : end + 2], buffer[end + 2 :]
                image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                assert image is not None
                images.append(image)
            if len(images) >= count:
                break
    return images, time.monotonic() - started


def test_liveview_streams_the_newest_frames_with_the_overlay(tmp_path: Path) -> None:
    with Running(pipeline_config(tmp_path / "models")) as run:
        app = run.app
        wait_for(
            lambda: {s.state for s in app.inference.status()} == {ModelState.DETECTING},
            40,
            "detecting",
        )
        wait_for(lambda: "cam-0" in app.inference.latest, 20, "a score")
        url = f"{app.url}/api/cameras/cam-0/mjpeg?fps=10"
        images, seconds = asyncio.run(read_jpegs(url, 10))
        raw, _ = asyncio.run(read_jpegs(f"{app.url}/api/cameras/cam-0/mjpeg?fps=10&overlay=0", 2))
        status, page = run.get("/")
        missing, _ = run.get("/api/cameras/nope/mjpeg")
    assert len(images) == 10 and images[0].shape == (120, 160, 3)
    assert 0.5 < seconds < 5  # paced at the viewer's rate (10 fps), not as fast as possible
    assert any(not np.array_equal(a, b) for a, b in itertools.pairwise(images))

    # The overlay writes "score / threshold" top left, white (or red when above); the raw
    # stream is just the grey scene there.
    def text_pixels(image: np.ndarray) -> int:
        return int((image[4:22, 4:110, 2] >= 250).sum())

    assert text_pixels(images[-1]) > text_pixels(raw[-1]) + 20, (
        text_pixels(images[-1]),
        text_pixels(raw[-1]),
    )
    assert status == 200 and "<title>streamdet</title>" in page and "mjpeg" in page
    assert missing == 404
