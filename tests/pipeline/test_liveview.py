"""The MJPEG live view and the page, from a running pipeline over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import cv2
import numpy as np
import pytest
from pydantic import SecretStr

from streamdet.frames import DetectedObject, FrameRef, ModelState, ScoredFrame
from streamdet.web.liveview import overlay
from tests.support.pipeline import Running, pipeline_config
from tests.support.scripted import stages
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


TOKEN = "liveview-token-0123456789"


def fetch(url: str, token: str | None = None, method: str = "GET") -> tuple[int, str, str]:
    """Status, body and WWW-Authenticate of a request, with an optional bearer token."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(url, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            body = response.read(2000).decode(errors="replace")  # MJPEG never ends: a peek
            return response.status, body, ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), exc.headers.get("WWW-Authenticate", "")


def test_liveview_token_guards_every_route_but_healthz(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = pipeline_config(tmp_path / "models")
    server = config.server.model_copy(update={"token": SecretStr(TOKEN)})
    with Running(config.model_copy(update={"server": server})) as run:
        url = run.app.url
        wait_for(lambda: "cam-0" in run.app.inference.analysed, 20, "a frame")
        assert fetch(f"{url}/healthz")[0] == 200  # liveness probes carry no credentials
        for path in ("/", "/api/cameras", "/api/events", "/metrics", "/readyz", "/api/webrtc"):
            status, body, challenge = fetch(f"{url}{path}")
            assert status == 401 and challenge.startswith("Bearer"), (path, status)
            assert json.loads(body)["error"] == "unauthorized"
            assert fetch(f"{url}{path}", token=TOKEN)[0] == 200, path
            assert fetch(f"{url}{path}?token={TOKEN}")[0] == 200, path
        status, body, _ = fetch(f"{url}/api/cameras", token=TOKEN[:-1] + "x")
        assert status == 401 and "wrong token" in json.loads(body)["detail"]
        assert fetch(f"{url}/api/cameras/cam-0/webrtc", method="POST")[0] == 401
        status, body, _ = fetch(f"{url}/api/cameras/cam-0/mjpeg?fps=5&token={TOKEN}")
        assert status == 200 and "--frame" in body
        assert "withToken" in fetch(f"{url}/?token={TOKEN}")[1]  # the page passes it on
    assert TOKEN not in caplog.text


def test_mjpeg_viewers_are_capped_and_freed_when_they_leave(tmp_path: Path) -> None:
    config = pipeline_config(tmp_path / "models")
    server = config.server.model_copy(
        update={"mjpeg": config.server.mjpeg.model_copy(update={"max_viewers": 2})}
    )

    async def scenario(base: str) -> list[tuple[int, dict[str, str] | None]]:
        url = f"{base}/api/cameras/cam-0/mjpeg?fps=10"
        timeout = aiohttp.ClientTimeout(total=20)
        results: list[tuple[int, dict[str, str] | None]] = []
        async with (
            aiohttp.ClientSession(timeout=timeout) as first,
            aiohttp.ClientSession(timeout=timeout) as second,
        ):
            one = await first.get(url)
            two = await second.get(url.replace("cam-0", "cam-1"))  # the cap is over all cameras
            await one.content.readexactly(10)
            await two.content.readexactly(10)  # both are streaming
            async with aiohttp.ClientSession(timeout=timeout) as third:
                async with third.get(url) as refused:
                    results.append((refused.status, await refused.json()))
                one.close()  # the first viewer leaves: its slot is freed within a frame or two
                await asyncio.sleep(0.5)
                async with third.get(url) as admitted:
                    results.append((admitted.status, None))
            two.close()
        return results

    with Running(config.model_copy(update={"server": server})) as run:
        wait_for(lambda: "cam-0" in run.app.inference.analysed, 20, "a frame")
        (refused, body), (admitted, _) = asyncio.run(scenario(run.app.url or ""))
        bad, _ = run.get("/api/cameras/cam-0/mjpeg?fps=nan")
    assert refused == 503 and body is not None and body["error"] == "unavailable"
    assert "2 MJPEG viewers already (server.mjpeg.max_viewers)" in body["detail"]
    assert admitted == 200
    assert bad == 400


def test_the_overlay_boxes_each_unusual_object_with_its_reason(tmp_path: Path) -> None:
    """What the MJPEG and WebRTC views draw: objects above the threshold boxed in red, with a
    label; an object below it is not boxed."""
    inference = stages(pipeline_config(tmp_path / "models")).inference
    unusual = DetectedObject((0.5, 0.5, 0.8, 0.9), 7.0, "wrong way")
    usual = DetectedObject((0.1, 0.5, 0.3, 0.9), 2.0, "fast")
    ref = FrameRef("cam-0", 0, 0, time.time(), None, True)
    cells = np.zeros((6, 8), np.float32)
    inference._publish(
        ScoredFrame(ref, 7.0, 7.0, 4.0, cells, time.time(), objects=(unusual, usual))
    )
    snapshot = inference.snapshot("cam-0")  # what the views read: that camera's alone
    assert [c.camera for c in snapshot.cameras] == ["cam-0"]
    scored = snapshot.camera("cam-0")
    assert scored is not None and scored.latest is not None and scored.latest.score == 7.0
    image = overlay(np.full((240, 320), 128, np.uint8), scored.latest)
    b, g, r = (image[..., i].astype(int) for i in range(3))
    red = (r > 200) & (g < 60) & (b < 60)
    assert red[121, 162:254].mean() > 0.9 and red[214, 162:254].mean() > 0.9  # the box
    label = red[100:120, 160:260]
    white = (image[100:120, 160:260].min(axis=2) > 200).sum()
    assert label.sum() > 300 and white > 20, (label.sum(), white)  # white text on red
    assert not red[100:, 20:100].any()  # the usual object is not boxed (the score is above)
