"""A real headless Chromium (Debian's ``chromium`` + ``chromedriver``), driven by Selenium."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # tests run as root in a container
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1100,800",
    # WebRTC with a server on 127.0.0.1: pair with loopback candidates, and show host
    # candidates as addresses rather than mDNS names that nothing on loopback resolves.
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
)

# What a <video> shows: playback time, size and the decoder's frame count (getStats is async).
VIDEO_STATE = """
const v = document.querySelector(arguments[0]);
if (!v) return null;
const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : {};
return {currentTime: v.currentTime, width: v.videoWidth, height: v.videoHeight,
        frames: q.totalVideoFrames || 0, paused: v.paused};
"""


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    absent = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if absent:
        names = " and ".join(absent)
        return f"{names} missing: run `make system-deps` (Debian chromium, chromium-driver)"
    return None


@contextmanager
def chromium() -> Iterator[webdriver.Chrome]:
    """A headless Chromium, quit on exit. Raises RuntimeError when it is not installed."""
    if (reason := missing()) is not None:
        raise RuntimeError(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    driver.set_script_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def video_state(driver: webdriver.Chrome, selector: str) -> dict[str, Any] | None:
    state: dict[str, Any] | None = driver.execute_script(VIDEO_STATE, selector)
    return state


def console(driver: webdriver.Chrome) -> list[str]:
    """The page's console lines so far (for failure messages)."""
    return [str(entry.get("message")) for entry in driver.get_log("browser")]
