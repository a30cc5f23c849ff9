"""The JSON API of a running pipeline over real HTTP on 127.0.0.1: what it shows and refuses."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from streamdet.config import parse_config
from tests.pipeline.test_run import Running
from tests.support.waiting import wait_for

# Nothing listens on port 1: each camera fails to connect, and its errors quote its URL.
LEAKY_URLS = [
    ("rtsp://admin:Xq9@Leak7@127.0.0.1:1/x", "rtsp://***@127.0.0.1:1/x"),
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
