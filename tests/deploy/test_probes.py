"""The health checks of the image and the Kubernetes manifests against a real streamdet.

A streamdet App (one synthetic camera, a server token set) serves on a free 127.0.0.1 port; the
Dockerfile's HEALTHCHECK command runs as written (its script from the repository, its config a
copy naming that port), and every httpGet probe of deploy/k8s is asked. None of them can send
the token: they pass only because /healthz is the one route that does not want it.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamdet.app import App
from streamdet.config import load_config
from tests.support.deploy import (
    DEPLOY,
    ROOT,
    copies,
    documents,
    exec_form,
    final_stage,
    instructions,
    run,
    tool,
)
from tests.support.servers import free_port
from tests.support.waiting import wait_for


class Serving:
    """``streamdet run`` in-process: an App on its own asyncio loop and thread."""

    def __init__(self, config_path: Path) -> None:
        self.app = App(load_config(config_path), config_path=config_path)
        self.loop = asyncio.new_event_loop()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._main, name="test-streamdet", daemon=True)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.app.start())
            self.loop.run_forever()
            self.loop.run_until_complete(self.app.stop())
        finally:
            self.done.set()

    def __enter__(self) -> Serving:
        self.thread.start()
        wait_for(lambda: self.app.url is not None or self.done.is_set(), 30, "the server")
        assert self.app.url is not None, "streamdet did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        assert self.done.wait(30), "streamdet did not stop"
        self.thread.join(5)


def write_config(folder: Path, port: int) -> Path:
    config = {
        "cameras": [
            {
                "name": "probe",
                "source": {"kind": "synthetic", "seed": 1, "width": 160, "height": 120},
                "frame": {"width": 160, "height": 120},
                "analysis_fps": 2,
            }
        ],
        "capture": {"processes": 0},
        "models": {"dir": str(folder / "models"), "kind": "motion", "learn_seconds": 6},
        "alerts": {"dir": str(folder / "events")},
        "server": {"host": "127.0.0.1", "port": port, "token": "probe-token-1234"},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("probes"), free_port())


@pytest.fixture(scope="module")
def serving(config_path: Path) -> Iterator[Serving]:
    with Serving(config_path) as running:
        yield running


def healthcheck_command(config: Path) -> list[str]:
    """The final stage's HEALTHCHECK CMD, with the image's paths mapped to this machine's:
    the script to the repository file COPY takes it from, the config to ``config``."""
    stage = final_stage(instructions())
    (check,) = [item["value"] for item in stage if item["instruction"] == "HEALTHCHECK"]
    args = exec_form(check[check.index("CMD") + 3 :].strip())
    (cmd,) = [exec_form(item["value"]) for item in stage if item["instruction"] == "CMD"]
    image_config = cmd[cmd.index("--config") + 1]
    assert args[0] == "python" and image_config in args, f"HEALTHCHECK {args}, CMD {cmd}"
    sources = {dest: found for found, dest in copies(instructions())}
    assert args[1] in sources, f"HEALTHCHECK runs {args[1]}, which no COPY puts there"
    (script,) = sources[args[1]]
    return [sys.executable, str(ROOT / script)] + [
        str(config) if arg == image_config else arg for arg in args[2:]
    ]


def test_dockerfile_healthcheck_passes_on_a_running_streamdet(
    serving: Serving, config_path: Path
) -> None:
    check = run(*healthcheck_command(config_path), timeout=20)
    assert check.returncode == 0, f"HEALTHCHECK (exit {check.returncode}): {check.stderr}"


def test_dockerfile_healthcheck_fails_when_nothing_answers(tmp_path: Path) -> None:
    check = run(*healthcheck_command(write_config(tmp_path, free_port())), timeout=20)
    assert check.returncode == 1, check.stderr
    assert "/healthz" in check.stderr  # it says what it asked


def test_healthcheck_refuses_a_config_without_a_fixed_port(tmp_path: Path) -> None:
    config = write_config(tmp_path, 0)
    check = run(*healthcheck_command(config), timeout=20)
    assert check.returncode == 1 and "server.port" in check.stderr, check.stderr


def probes(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(container, probe) of each httpGet probe of a workload's pod template."""
    template = doc.get("spec", {}).get("template", {})
    for container in template.get("spec", {}).get("containers", []):
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            if "httpGet" in container.get(kind, {}):
                yield container["name"], container[kind]["httpGet"]


def test_every_streamdet_probe_of_the_manifests_answers_200(serving: Serving) -> None:
    rendered = run(tool("kubectl"), "kustomize", str(DEPLOY / "k8s" / "base"))
    assert rendered.returncode == 0, rendered.stderr
    paths = {
        probe["path"]
        for doc in documents(rendered.stdout)
        for name, probe in probes(doc)
        if name == "streamdet"
    }
    assert paths, "no httpGet probe on the streamdet container"
    for path in sorted(paths):
        with urllib.request.urlopen(f"{serving.app.url}{path}", timeout=5) as response:
            assert response.status == 200, path
            assert json.loads(response.read())["status"] == "ok", path


def test_the_token_guards_the_other_routes(serving: Serving) -> None:
    """Without this the probe test above would pass on a server that wants no token at all."""
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{serving.app.url}/metrics", timeout=5)
    assert refused.value.code == 401
