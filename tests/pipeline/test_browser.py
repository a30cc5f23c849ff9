"""The page in a real headless Chromium against a real ``streamdet run`` on 127.0.0.1.

Not skipped when Chromium is missing: it fails, saying to run ``make system-deps``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import chromium, console, missing, video_state
from tests.support.servers import free_port
from tests.support.waiting import wait_for

STREAMDET = str(Path(sys.executable).with_name("streamdet"))
TOKEN = "browser-test-token-0123456789"
WIDTH, HEIGHT = 320, 240


def write_config(tmp_path: Path, port: int) -> Path:
    config = {
        "cameras": [
            {
                "name": "path",
                "source": {
                    "kind": "synthetic",
                    "seed": 1,
                    "width": WIDTH,
                    "height": HEIGHT,
                    "anomalies": [{"kind": "fast", "start_s": 14, "duration_s": 6}],
                },
                "frame": {"width": WIDTH, "height": HEIGHT},
                "analysis_fps": 5,
            }
        ],
        "models": {"dir": "models", "kind": "motion", "learn_seconds": 8},
        "alerts": {"dir": "events"},
        "server": {"port": port, "token": "${STREAMDET_TEST_TOKEN}", "webrtc": {"fps": 10}},
    }
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def get_json(url: str) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_browser_page_plays_webrtc_and_lists_the_event(tmp_path: Path) -> None:
    if (reason := missing()) is not None:
        pytest.fail(reason)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "STREAMDET_TEST_TOKEN": TOKEN}
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [STREAMDET, "run", "--config", str(write_config(tmp_path, port))],
            stdout=stdout,
            stderr=stderr,
            env=env,
        )
        try:
            wait_for(lambda: healthy(url) or proc.poll() is not None, 30, "the server")
            assert proc.poll() is None, err.read_text()
            with chromium() as browser:
                check_page(browser, url, tmp_path)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, err.read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    logs = out.read_text() + err.read_text()
    assert TOKEN not in logs and "Traceback" not in logs


def check_page(browser: Any, url: str, tmp_path: Path) -> None:
    started = time.monotonic()
    browser.get(f"{url}/?token={TOKEN}")
    selector = "#cam-path video"

    def playing() -> bool:
        state = video_state(browser, selector)
        return state is not None and state["currentTime"] > 0.5

    try:
        wait_for(playing, 30, "the WebRTC video to play")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; page console: {console(browser)}") from None
    first_frame_s = time.monotonic() - started
    before = video_state(browser, selector)
    time.sleep(1.5)
    after = video_state(browser, selector)
    assert before is not None and after is not None
    assert after["currentTime"] > before["currentTime"] + 1.0, (before, after)  # it plays
    assert (after["width"], after["height"]) == (WIDTH, HEIGHT)
    transport = browser.execute_script(
        "return document.getElementById('cam-path').dataset.transport"
    )
    assert transport == "webrtc"

    def listed() -> bool:
        rows = browser.execute_script(
            "return [...document.querySelectorAll('#events tr')].map(r => r.innerText)"
        )
        return any("path" in row for row in rows)

    wait_for(listed, 60, "the event in the page's list")
    screenshot = tmp_path / "liveview.png"
    browser.save_screenshot(str(screenshot))
    print(f"screenshot: {screenshot} (first frame after {first_frame_s:.2f} s)")
    assert get_json(f"{url}/api/webrtc")["viewers"] == 1
    browser.get("about:blank")  # the page is closed: its peer connection is freed at once
    wait_for(lambda: get_json(f"{url}/api/webrtc")["viewers"] == 0, 10, "the viewer freed")
    browser.get(f"{url}/?token={TOKEN}")
    wait_for(lambda: video_state(browser, selector) is not None, 20, "the page again")
    check_mjpeg_fallback(browser)
    check_feedback_button(browser)


def check_feedback_button(browser: Any) -> None:
    """The ended event's "This was normal" button calls ``POST .../normal`` (with the token)
    and shows the answer: this camera's model (kind motion) keeps no object features, so the
    server refuses, saying why."""
    button = "return document.querySelector('#events button.normal') !== null"
    wait_for(lambda: browser.execute_script(button), 60, "the ended event's feedback button")
    browser.execute_script("document.querySelector('#events button.normal').click()")
    status = "return document.getElementById('feedback-status').textContent"
    wait_for(lambda: "not learned" in browser.execute_script(status), 15, "the server's answer")
    text = browser.execute_script(status)
    assert "409" in text and "no object features" in text, text


def check_mjpeg_fallback(browser: Any) -> None:
    """A browser without RTCPeerConnection gets the MJPEG <img> (with the token in its URL)."""
    browser.execute_script(
        "window.RTCPeerConnection = undefined;start(document.getElementById('cam-path'), 'path');"
    )
    img = "const i = document.querySelector('#cam-path img'); return i ? i.naturalWidth : 0;"
    wait_for(lambda: browser.execute_script(img) == WIDTH, 15, "the MJPEG fallback")
    card = "return document.getElementById('cam-path').dataset.transport"
    assert browser.execute_script(card) == "mjpeg"
