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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from streamdet.frames import REASONS
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
                    # After learning: 8 s of footage, then ~11 s to train on a busy machine.
                    "anomalies": [{"kind": "fast", "start_s": 32, "duration_s": 6}],
                },
                "frame": {"width": WIDTH, "height": HEIGHT},
                "analysis_fps": 5,
            }
        ],
        # The object-level model: its events say why (the reason the page must show).
        "models": {"dir": "models", "kind": "objects", "learn_seconds": 8},
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


@contextmanager
def page_of_run(
    config: Path, url: str, out: Path, err: Path, env: dict[str, str] | None = None
) -> Iterator[Any]:
    """``streamdet run --config`` serving ``url`` and a headless Chromium to open it with;
    after the block, the run must stop cleanly on SIGTERM (exit 0)."""
    if (reason := missing()) is not None:
        pytest.fail(reason)
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            [STREAMDET, "run", "--config", str(config)], stdout=stdout, stderr=stderr, env=env
        )
    try:
        wait_for(lambda: healthy(url) or proc.poll() is not None, 30, "the server")
        assert proc.poll() is None, err.read_text()
        with chromium() as browser:
            yield browser
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_browser_page_plays_webrtc_and_lists_the_event(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "STREAMDET_TEST_TOKEN": TOKEN}
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with page_of_run(write_config(tmp_path, port), url, out, err, env) as browser:
        check_page(browser, url, tmp_path)
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
        return any("path" in row for row in browser.execute_script(ROWS))

    wait_for(listed, 60, "the event in the page's list")
    check_reasons(browser, url)
    screenshot = tmp_path / "liveview.png"
    browser.save_screenshot(str(screenshot))
    print(f"screenshot: {screenshot} (first frame after {first_frame_s:.2f} s)")
    assert get_json(f"{url}/api/webrtc")["viewers"] == 1
    browser.get("about:blank")  # the page is closed: its peer connection is freed at once
    wait_for(lambda: get_json(f"{url}/api/webrtc")["viewers"] == 0, 10, "the viewer freed")
    browser.get(f"{url}/?token={TOKEN}")
    wait_for(lambda: video_state(browser, selector) is not None, 20, "the page again")
    check_mjpeg_fallback(browser)
    check_feedback_button(browser, url)


def check_feedback_button(browser: Any, url: str) -> None:
    """The ended event's "This was normal" button calls ``POST .../normal`` (with the token)
    and shows the answer: this camera's ``objects`` model learns the event's objects, and the
    event is marked normal in the API and the list."""
    button = "return document.querySelector('#events button.normal') !== null"
    wait_for(lambda: browser.execute_script(button), 60, "the ended event's feedback button")
    event_id = browser.execute_script(
        "return document.querySelector('#events button.normal').dataset.id"
    )
    browser.execute_script("document.querySelector('#events button.normal').click()")
    status = "return document.getElementById('feedback-status').textContent"
    wait_for(lambda: "as normal" in browser.execute_script(status), 30, "the server's answer")
    assert browser.execute_script(status).startswith("learned "), browser.execute_script(status)
    assert get_json(f"{url}/api/events/{event_id}")["feedback"] == "normal"
    wait_for(
        lambda: any("marked normal" in row for row in browser.execute_script(ROWS)),
        10,
        "the event marked normal in the list",
    )


ROWS = "return [...document.querySelectorAll('#events tr')].map(r => r.innerText)"


def check_reasons(browser: Any, url: str) -> None:
    """Each event's row says why (the object-level model's reason), while it is open too."""

    def open_with_reason() -> bool:
        rows = browser.execute_script(ROWS)
        return any("open" in row and any(r in row for r in REASONS) for row in rows)

    wait_for(open_with_reason, 30, "an open event's reason in the list")

    def as_the_api_says() -> bool:
        events = get_json(f"{url}/api/events?limit=20")["events"]
        rows = browser.execute_script(ROWS)
        return bool(events) and all(
            any(time_of(browser, e["start"]) in row and (e["reason"] or "") in row for row in rows)
            for e in events
        )

    wait_for(as_the_api_says, 10, "the page's reasons to be the API's")


def time_of(browser: Any, start: float) -> str:
    """An event's start as the page writes it (the browser's locale)."""
    text: str = browser.execute_script(
        "return new Date(arguments[0] * 1000).toLocaleTimeString()", start
    )
    return text


def check_mjpeg_fallback(browser: Any) -> None:
    """A browser without RTCPeerConnection gets the MJPEG <img> (with the token in its URL)."""
    browser.execute_script(
        "window.RTCPeerConnection = undefined;start(document.getElementById('cam-path'), 'path');"
    )
    img = "const i = document.querySelector('#cam-path img'); return i ? i.naturalWidth : 0;"
    wait_for(lambda: browser.execute_script(img) == WIDTH, 15, "the MJPEG fallback")
    card = "return document.getElementById('cam-path').dataset.transport"
    assert browser.execute_script(card) == "mjpeg"


def test_browser_page_follows_a_config_reload(tmp_path: Path) -> None:
    """Cards of removed cameras go, added ones appear, a restarted one opens its new stream."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def write(cameras: list[tuple[str, float]]) -> Path:
        config = {
            "cameras": [
                {"name": name, "source": {"kind": "synthetic", "seed": i}, "analysis_fps": fps}
                for i, (name, fps) in enumerate(cameras)
            ],
            "models": {"dir": "models", "learn_seconds": 600},  # capture only, meanwhile
            "alerts": {"dir": "events"},
            "server": {"port": port, "token": TOKEN, "webrtc": {"enabled": False}},
        }
        path = tmp_path / "run.yaml"
        path.write_text(json.dumps(config))
        return path

    config = write([("a", 5), ("b", 5)])
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with page_of_run(config, url, out, err) as browser:
        browser.get(f"{url}/?token={TOKEN}")
        shown = "return [...document.querySelectorAll('.cam')].map(c => c.dataset.name)"
        width = "const i = document.querySelector(arguments[0]); return i ? i.naturalWidth : 0"
        wait_for(lambda: browser.execute_script(shown) == ["a", "b"], 20, "both cards")
        wait_for(lambda: browser.execute_script(width, "#cam-a img") > 0, 20, "a's picture")
        browser.execute_script("document.querySelector('#cam-a img').dataset.old = '1'")
        write([("a", 4), ("c", 5)])  # a changed, b removed, c added
        request = urllib.request.Request(
            f"{url}/api/reload", method="POST", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert json.load(answer)["restarted"] == ["a"]
        wait_for(lambda: browser.execute_script(shown) == ["a", "c"], 40, "the new cards")
        new = "#cam-a img:not([data-old])"
        wait_for(lambda: browser.execute_script(width, new) > 0, 40, "a's new stream")
        wait_for(lambda: browser.execute_script(width, "#cam-c img") > 0, 20, "c's picture")
    assert TOKEN not in err.read_text() and "Traceback" not in err.read_text()
