"""Config reload on a running pipeline: ``POST /api/reload`` and SIGHUP, over real HTTP.

Cameras are added, removed and changed while another camera keeps being captured and scored
without a break; a config with errors is refused by name and the running cameras stay.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import time
import urllib.request
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from streamdet.config import load_config
from streamdet.frames import ModelState
from tests.support.cli import STREAMDET
from tests.support.pipeline import Running
from tests.support.waiting import wait_for

TOKEN = "reload-token-1"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def camera(name: str, seed: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "source": {"kind": "synthetic", "seed": seed, "width": 160, "height": 120},
        "frame": {"width": 160, "height": 120},
        "analysis_fps": 5,
        **extra,
    }


def write_config(path: Path, cameras: list[dict[str, Any]], **sections: Any) -> Path:
    document = {
        "cameras": cameras,
        "models": {"dir": str(path.parent / "models"), "kind": "framediff", "learn_seconds": 3},
        "alerts": {"dir": str(path.parent / "events")},
        "server": {"port": 0, "token": TOKEN},
        **sections,
    }
    path.write_text(yaml.safe_dump(document))
    return path


def camera_names(run: Running) -> list[str]:
    status, body = run.get("/api/cameras", AUTH)
    assert status == 200, body
    return [c["name"] for c in json.loads(body)["cameras"]]


def dropped(run: Running, name: str) -> float:
    """Every frame the inference stage did not score for camera ``name``, over all reasons."""
    registry = run.app.registry
    return sum(
        registry.get_sample_value(
            "streamdet_frames_dropped_total",
            {"camera": name, "stage": "inference", "reason": reason},
        )
        or 0.0
        for reason in run.app.inference.DROP_REASONS
    )


def watch_mjpeg(run: Running, name: str) -> Future[int]:
    """Open camera ``name``'s MJPEG stream; the future gives its bytes once the stream ends."""

    async def watch() -> int:
        url = f"{run.app.url}/api/cameras/{name}/mjpeg?fps=5"
        received = 0
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session,
            session.get(url, headers=AUTH) as response,
        ):
            async for chunk in response.content.iter_any():
                received += len(chunk)
        return received

    return asyncio.run_coroutine_threadsafe(watch(), run.loop)


def test_reload_adds_removes_and_restarts_cameras_while_the_others_run_on(
    tmp_path: Path,
) -> None:
    path = write_config(
        tmp_path / "streamdet.yaml", [camera("keep", 0), camera("gone", 1), camera("change", 2)]
    )
    with Running(load_config(path), config_path=path) as run:
        app = run.app
        wait_for(
            lambda: (
                app.inference.analysed.get("keep", 0) >= 5
                and app.inference.analysed.get("gone", 0) >= 1
            ),
            60,
            "keep and gone learned and scored",
        )
        keep = app.capture.worker("keep")
        changed = app.capture.worker("change")
        frames, analysed = keep.stats.frames, app.inference.analysed["keep"]
        reconnects, stalls, drops = keep.stats.reconnects, keep.stats.stalls, dropped(run, "keep")
        _, text = run.get("/metrics", AUTH)
        assert 'streamdet_frames_analysed_total{camera="gone"}' in text
        viewers = {name: watch_mjpeg(run, name) for name in ("gone", "change", "keep")}

        write_config(
            path,
            [camera("keep", 0), camera("change", 2, analysis_fps=4), camera("added", 3)],
            logging={"level": "WARNING"},
        )
        assert run.request("POST", "/api/reload")[0] == 401  # behind the token, like the rest
        assert camera_names(run) == ["keep", "gone", "change"]
        status, body = run.request("POST", "/api/reload", AUTH, timeout=30)
        assert status == 200, body
        assert json.loads(body) == {
            "added": ["added"],
            "removed": ["gone"],
            "restarted": ["change"],
            "unchanged": ["keep"],
            "restart_required": ["logging"],
            "failed": {},
        }
        assert camera_names(run) == ["keep", "change", "added"]
        _, text = run.get("/metrics", AUTH)
        assert 'camera="gone"' not in text  # every series of the removed camera is gone
        assert 'streamdet_frames_decoded_total{camera="added"}' in text
        assert app.capture.worker("change") is not changed
        # The viewers of the removed and the restarted camera are let go (the page then opens
        # the restarted camera's new stream); the unchanged camera's viewer still watches.
        assert viewers["gone"].result(10) > 0 and viewers["change"].result(10) > 0
        assert not viewers["keep"].done()
        viewers["keep"].cancel()  # the viewer leaves
        assert app.capture.worker("change").camera.analysis_fps == 4
        wait_for(lambda: app.inference.analysed["keep"] >= analysed + 10, 30, "keep still scored")
        # The unchanged camera ran on: the same thread and ring, no reconnect, no stall, no
        # frame it missed being scored, and still decoding.
        assert app.capture.worker("keep") is keep and keep.is_alive()
        assert keep.stats.frames > frames
        assert (keep.stats.reconnects, keep.stats.stalls) == (reconnects, stalls)
        assert dropped(run, "keep") == drops
        wait_for(
            lambda: (
                app.inference.detectors["added"].state is ModelState.DETECTING
                and app.inference.analysed.get("added", 0) > 0
            ),
            60,
            "the added camera learned and scored",
        )

        # A config with errors is refused, naming each key, without its password; nothing changes.
        secret = "rtsp://admin:Hunter22@127.0.0.1:1/stream"
        bad = camera("keep", 0, bogus=1)
        bad_url = {"name": "cctv", "source": {"kind": "mjpeg", "url": secret}}
        write_config(path, [bad, bad_url])
        status, body = run.request("POST", "/api/reload", AUTH)
        assert status == 400, body
        answer = json.loads(body)
        assert answer["error"] == "invalid configuration"
        assert "cameras[0].bogus: unknown key" in answer["problems"]
        assert any(p.startswith("cameras[1].source.url:") for p in answer["problems"])
        assert "Hunter22" not in body
        assert camera_names(run) == ["keep", "change", "added"]
        assert app.capture.worker("keep") is keep


def test_a_run_without_a_config_file_has_nothing_to_reload(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "streamdet.yaml", [camera("a", 0)]))
    with Running(config) as run:  # as the demo runs: from a config built in memory
        status, body = run.request("POST", "/api/reload", AUTH)
        assert status == 409 and "no config file" in json.loads(body)["detail"], body
        assert camera_names(run) == ["a"]


def test_sighup_reloads_a_running_streamdet_run(tmp_path: Path) -> None:
    config = tmp_path / "streamdet.yaml"
    # Cameras learning for long: nothing but capture and the reload to spend CPU on.
    models = {"dir": str(tmp_path / "models"), "learn_seconds": 600}
    write_config(config, [camera("a", 0), camera("b", 1)], models=models)
    log = tmp_path / "log.txt"
    with log.open("w") as err, (tmp_path / "out.txt").open("w") as out:
        proc = subprocess.Popen(
            [STREAMDET, "run", "--config", str(config)], stdout=out, stderr=err, text=True
        )
    try:
        wait_for(lambda: "serving http" in log.read_text() or proc.poll() is not None, 60, "up")
        found = re.search(r"serving (http://\S+)", log.read_text())
        assert found and proc.poll() is None, log.read_text()
        url = found[1]

        def cameras() -> list[str]:
            request = urllib.request.Request(f"{url}/api/cameras", headers=AUTH)
            with urllib.request.urlopen(request, timeout=10) as answer:
                return [c["name"] for c in json.load(answer)["cameras"]]

        assert cameras() == ["a", "b"]
        write_config(config, [camera("a", 0), camera("c", 2)], models=models)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: cameras() == ["a", "c"], 30, "the reload by SIGHUP")
        assert "cameras added c; removed b; restarted none; unchanged a" in log.read_text()

        write_config(config, [camera("a", 0, frame={"colour": "grey"})], models=models)
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload refused" in log.read_text(), 30, "the refusal in the log")
        assert "cameras[0].frame.colour: unknown key" in log.read_text()
        time.sleep(0.5)
        assert proc.poll() is None and cameras() == ["a", "c"]
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, log.read_text()
    assert "Traceback" not in log.read_text()
