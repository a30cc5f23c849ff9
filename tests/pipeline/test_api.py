"""The JSON API of a running pipeline over real HTTP on 127.0.0.1: what it shows and refuses."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamdet.config import parse_config
from tests.support.media import make_clip
from tests.support.pipeline import Running, pipeline_config
from tests.support.waiting import wait_for

# Nothing listens on port 1: each camera fails to connect, and its errors quote its URL.
LEAKY_URLS = [
    ("rtsp://admin:Xq9%40Leak7@127.0.0.1:1/x", "rtsp://***@127.0.0.1:1/x"),
    (
        "rtsp://127.0.0.1:1/x?access_token=Leak7&apikey=Leak7&pw=Leak7&channel=1",
        "rtsp://127.0.0.1:1/x?access_token=***&apikey=***&pw=***&channel=1",
    ),
]


@pytest.mark.parametrize(("url", "shown"), LEAKY_URLS, ids=["at-in-password", "query"])
def test_cameras_api_and_logs_hide_secrets_in_urls(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, url: str, shown: str
) -> None:
    caplog.set_level(logging.DEBUG)
    config = parse_config(
        {
            "cameras": [{"name": "door", "source": {"kind": "rtsp", "url": url}}],
            "models": {"dir": str(tmp_path / "models")},
            "alerts": {"dir": str(tmp_path / "events")},
            "server": {"port": 0},
        }
    )
    with Running(config) as run:
        worker = run.app.capture.worker("door")
        wait_for(lambda: bool(worker.stats.errors), 20, "a failed connection")
        status, body = run.get("/api/cameras")
    assert status == 200
    (door,) = json.loads(body)["cameras"]
    assert door["source"] == shown
    assert f"cannot open {shown}" in door["last_error"]
    assert "Leak7" not in body
    assert shown in caplog.text and "Leak7" not in caplog.text


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One pipeline (two synthetic cameras) for the tests that only ask its API."""
    with Running(pipeline_config(tmp_path_factory.mktemp("api") / "models")) as run:
        yield run


@pytest.mark.parametrize(
    "query",
    [
        "limit=nan",
        "limit=inf",
        "limit=-inf",
        "limit=0",
        "limit=501",
        "limit=2.5",
        "limit=",
        "limit=1e2",
        "offset=nan",
        "offset=1e30",
        "offset=-1",
        "offset=99999999999999999999",
        "since=nan",
        "until=inf",
        "since=soon",
    ],
)
def test_events_refuse_bad_numbers_naming_the_parameter(running: Running, query: str) -> None:
    status, body = running.get(f"/api/events?{query}")
    assert status == 400, body
    answer = json.loads(body)
    assert answer["error"] == "bad request"
    assert answer["detail"].startswith(query.split("=")[0] + ": "), answer


def test_events_accept_good_numbers(running: Running) -> None:
    status, body = running.get("/api/events?limit=500&offset=0&since=0&until=1e12")
    assert status == 200, body
    assert json.loads(body) == {"events": [], "limit": 500, "offset": 0}


def test_cameras_api_follows_a_resolution_change_mid_stream(tmp_path: Path) -> None:
    # One MPEG-TS stream whose H.264 switches from 640x360 to 256x144 after 2 s (a new SPS),
    # as a camera does when its profile is changed while streaming.
    first = make_clip(tmp_path / "a.ts", frames=50, width=640, height=360)
    second = make_clip(tmp_path / "b.ts", frames=150, width=256, height=144)
    switching = tmp_path / "switching.ts"
    switching.write_bytes(first.read_bytes() + second.read_bytes())
    config = parse_config(
        {
            "cameras": [{"name": "cam", "source": {"kind": "file", "path": str(switching)}}],
            "models": {"dir": str(tmp_path / "models"), "learn_in_place": False},
            "alerts": {"dir": str(tmp_path / "events")},
            "server": {"port": 0},
        }
    )
    seen: list[object] = []

    def resolution(run: Running) -> object:
        status, body = run.get("/api/cameras")
        assert status == 200, body
        seen.append(json.loads(body)["cameras"][0]["resolution"])
        return seen[-1]

    with Running(config) as run:
        wait_for(lambda: run.app.capture.worker("cam").stats.frames > 0, 20, "a frame")
        assert resolution(run) == [640, 360]
        wait_for(lambda: resolution(run) == [256, 144], 10, "the new resolution")
