"""The health checks of the image and the Kubernetes manifests against a real streamdet.

``streamdet run`` (one synthetic camera, a server token set) serves on a free 127.0.0.1 port; the
Dockerfile's HEALTHCHECK command runs as written (its script from the repository, its config a
copy naming that port), and every httpGet probe of deploy/k8s is asked. None of them can send
the token: they pass only because /healthz is the one route that does not want it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

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
    """``streamdet run --config`` as the image's ENTRYPOINT and CMD run it, on this machine."""

    def __init__(self, config_path: Path, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "streamdet", "run", "--config", str(config_path)]
        self.log = config_path.with_suffix(".log")
        with self.log.open("wb") as log:  # a file, not a pipe: nobody reads it while it runs
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

    def answers(self) -> bool:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise AssertionError(f"streamdet exited {self.proc.returncode}:\n{tail}")
        try:
            urllib.request.urlopen(f"{self.url}/healthz", timeout=1).close()
        except OSError:
            return False
        return True

    def __enter__(self) -> Serving:
        try:
            wait_for(self.answers, 60, "streamdet to serve /healthz")
        except AssertionError:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)  # what `docker stop` sends
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


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
def port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory, port: int) -> Path:
    return write_config(tmp_path_factory.mktemp("probes"), port)


@pytest.fixture(scope="module")
def serving(config_path: Path, port: int) -> Iterator[Serving]:
    with Serving(config_path, port) as running:
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
        with urllib.request.urlopen(f"{serving.url}{path}", timeout=5) as response:
            assert response.status == 200, path
            assert json.loads(response.read())["status"] == "ok", path


def test_the_token_guards_the_other_routes(serving: Serving) -> None:
    """Without this the probe test above would pass on a server that wants no token at all."""
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{serving.url}/metrics", timeout=5)
    assert refused.value.code == 401
