"""deploy/k8s, checked offline: each kustomization rendered by kubectl's kustomize and every
resource validated (strict: unknown fields are errors) against Kubernetes' own OpenAPI schemas
with kubernetes-validate, for the oldest and newest version named below; then what no schema
knows: the streamdet config in the ConfigMap is valid and finds each ${VAR} in the pod's
environment or the Secret, ports, names and mounts agree, NATS' config passes ``nats-server -t``.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml
from kubernetes_validate import ValidationError, validate

from tests.support.deploy import (
    DEPLOY,
    documents,
    exec_form,
    final_stage,
    instructions,
    run,
    streamdet_config,
    tool,
)

K8S = DEPLOY / "k8s"
# The Kubernetes versions these manifests are validated against (kubernetes-validate 1.37.0
# ships the schemas of 1.24 ... 1.37): 1.31, the oldest minor still common in managed clusters
# in 2026, and the newest.
VERSIONS = ("1.31.0", "1.37.0")
KUSTOMIZATIONS = ("base", "overlays/cuda")


def render(kustomization: str) -> list[dict[str, Any]]:
    result = run(tool("kubectl"), "kustomize", str(K8S / kustomization))
    assert result.returncode == 0, f"kubectl kustomize {kustomization}:\n{result.stderr}"
    return documents(result.stdout)


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {k: render(k) for k in KUSTOMIZATIONS}


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return found


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_every_resource_passes_the_kubernetes_schema(
    rendered: dict[str, list[dict[str, Any]]], kustomization: str, version: str
) -> None:
    docs = rendered[kustomization]
    kinds = {d["kind"] for d in docs}
    assert {"StatefulSet", "ConfigMap", "Service", "Namespace"} <= kinds, kinds
    for doc in docs:
        try:
            validate(doc, version, strict=True)
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            name = f"{doc['kind']}/{doc['metadata']['name']}"
            raise AssertionError(f"{name}: {where}: {exc.message}") from None


@pytest.mark.parametrize("version", VERSIONS)
def test_secret_example_passes_the_kubernetes_schema(version: str) -> None:
    (secret,) = documents((K8S / "secret.example.yaml").read_text())
    validate(secret, version, strict=True)


def test_cuda_overlay_asks_each_worker_for_a_gpu_and_runs_the_cuda_image(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    base = container(one(rendered["base"], "StatefulSet", "streamdet"), "streamdet")
    cuda = container(one(rendered["overlays/cuda"], "StatefulSet", "streamdet"), "streamdet")
    assert "nvidia.com/gpu" not in base["resources"].get("limits", {})
    assert cuda["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert cuda["resources"]["requests"] == base["resources"]["requests"]  # merged, not replaced
    assert cuda["image"].endswith("-cuda") and not base["image"].endswith("-cuda")


def secret() -> dict[str, Any]:
    (doc,) = documents((K8S / "secret.example.yaml").read_text())
    return doc


def test_configmap_config_is_valid_with_the_pod_environment_and_the_secret(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    """Every ${VAR} of the config comes from the container's env or the Secret it loads (a
    variable from neither makes streamdet's loader refuse the config, naming it)."""
    docs = rendered["base"]
    worker = container(one(docs, "StatefulSet", "streamdet"), "streamdet")
    text = one(docs, "ConfigMap", "streamdet-config")["data"]["config.yaml"]
    example = secret()
    (source,) = [s["secretRef"]["name"] for s in worker["envFrom"]]
    assert source == example["metadata"]["name"]
    assert example["metadata"]["namespace"] == docs[0]["metadata"].get("namespace", "streamdet")
    env = {e["name"]: "streamdet-0" for e in worker["env"]}
    env |= {key: "secret" for key in example["stringData"]}
    assert set(re.findall(r"\$\{(\w+)\}", text)) <= set(env)
    config = streamdet_config(text, env)
    assert config.server.host == "0.0.0.0"
    assert len(config.cameras) >= 2


def test_worker_mounts_ports_and_names_agree(rendered: dict[str, list[dict[str, Any]]]) -> None:
    docs = rendered["base"]
    workers = one(docs, "StatefulSet", "streamdet")
    worker = container(workers, "streamdet")
    config = streamdet_config(
        one(docs, "ConfigMap", "streamdet-config")["data"]["config.yaml"],
        {"POD_NAME": "streamdet-0"} | {k: "x" for k in secret()["stringData"]},
    )
    # --config names a file in the ConfigMap's folder mount (no subPath: updates reach it).
    path = PurePosixPath(worker["args"][worker["args"].index("--config") + 1])
    mounts = {m["mountPath"]: m for m in worker["volumeMounts"]}
    assert "subPath" not in mounts[str(path.parent)]
    volumes = {v["name"]: v for v in workers["spec"]["template"]["spec"]["volumes"]}
    mounted = volumes[mounts[str(path.parent)]["name"]]["configMap"]["name"]
    assert path.name in one(docs, "ConfigMap", mounted)["data"]
    # the port: config, container, probes, scrape annotation, Service
    (http,) = [p for p in worker["ports"] if p["name"] == "http"]
    assert http["containerPort"] == config.server.port
    annotations = workers["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(config.server.port)
    service = one(docs, "Service", workers["spec"]["serviceName"])
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {"http"}
    labels = workers["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    # the state: models.dir and alerts.dir on the claimed volume
    claims = {t["metadata"]["name"] for t in workers["spec"]["volumeClaimTemplates"]}
    state = [m["mountPath"] for m in worker["volumeMounts"] if m["name"] in claims]
    for folder in (config.models.dir, config.alerts.dir):
        assert any(folder.is_relative_to(s) for s in state), (folder, state)
    # the image's user: runAsNonRoot is checked against the image's numeric USER
    (user,) = [i["value"] for i in final_stage(instructions()) if i["instruction"] == "USER"]
    pod = workers["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] and str(pod["runAsUser"]) == user.split(":")[0]
    (cmd,) = [i["value"] for i in final_stage(instructions()) if i["instruction"] == "CMD"]
    assert worker["args"] == exec_form(cmd)


def nats_conf(docs: list[dict[str, Any]]) -> str:
    text: str = one(docs, "ConfigMap", "nats-config")["data"]["nats.conf"]
    return text


def test_nats_config_passes_nats_server_test(
    rendered: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    config = tmp_path / "nats.conf"
    config.write_text(nats_conf(rendered["base"]))
    check = run(tool("nats-server"), "-t", "-c", str(config), env={"POD_NAME": "nats-0"})
    assert check.returncode == 0, f"nats-server -t:\n{check.stdout}{check.stderr}"


def test_nats_routes_and_fleet_servers_name_the_nats_pods(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    docs = rendered["base"]
    nats = one(docs, "StatefulSet", "nats")
    service, replicas = nats["spec"]["serviceName"], nats["spec"]["replicas"]
    pods = {f"nats-{i}.{service}" for i in range(replicas)}
    routes = set(re.findall(r"nats://([\w.-]+):6222", nats_conf(docs)))
    assert routes == pods, routes
    data = yaml.safe_load(one(docs, "ConfigMap", "streamdet-config")["data"]["config.yaml"])
    ports = {p["name"]: p["port"] for p in one(docs, "Service", service)["spec"]["ports"]}
    for servers in (data["fleet"]["servers"], data["alerts"]["sinks"][1]["servers"]):
        assert {s.removeprefix("nats://") for s in servers} == {
            f"{pod}:{ports['client']}" for pod in pods
        }
    assert data["fleet"]["replicas"] <= replicas


def test_podmonitor_selects_the_workers_on_their_http_port(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    (monitor,) = documents((K8S / "extras" / "podmonitor.yaml").read_text())
    workers = one(rendered["base"], "StatefulSet", "streamdet")
    labels = workers["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert labels[monitor["spec"]["jobLabel"]] == "streamdet"  # the job alerts.yml expects
    ports = {p["name"] for p in container(workers, "streamdet")["ports"]}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
    assert monitor["metadata"]["namespace"] == workers["metadata"]["namespace"]
