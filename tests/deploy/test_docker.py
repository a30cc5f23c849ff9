"""deploy/docker/Dockerfile, checked without a Docker engine: hadolint, what it copies, the torch
pin, the user, the volumes, the entrypoint, and the build arguments compose passes it.

The HEALTHCHECK itself runs against a real streamdet in tests/deploy/test_probes.py.
"""

from __future__ import annotations

import re
import shutil
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from docker.utils.build import exclude_paths

from tests.support.deploy import (
    DEPLOY,
    DOCKERFILE,
    ROOT,
    copies,
    documents,
    exec_form,
    final_stage,
    instructions,
    run,
    tool,
)


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerfile_passes_hadolint() -> None:
    lint = run(tool("hadolint"), str(DOCKERFILE))
    assert lint.returncode == 0, f"hadolint (exit {lint.returncode}):\n{lint.stdout}{lint.stderr}"


def test_every_copy_source_exists_and_is_in_the_build_context() -> None:
    """The context is the repository root, less what .dockerignore leaves out (Docker's own
    matching rules, as the Docker SDK applies them)."""
    context = exclude_paths(str(ROOT), dockerignore())
    sources = [source for found, _ in copies(instructions()) for source in found]
    assert sources, "no COPY found"
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: no such file in the repository"
        assert source.rstrip("/") in context, f"COPY {source}: left out by .dockerignore"
        if path.is_dir():  # a folder's files must be in the context too, not only its name
            files = [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
            missing = [p for p in files if str(p.relative_to(ROOT)) not in context]
            assert not missing, f"COPY {source}: .dockerignore leaves out {missing[:3]}"


def test_the_build_context_alone_makes_the_project_wheel(tmp_path: Path) -> None:
    """What `pip install /src` does in the image, offline: the files .dockerignore lets in,
    copied alone, build a wheel with every module, the page and the `streamdet` command."""
    context = tmp_path / "context"
    for name in exclude_paths(str(ROOT), dockerignore()):
        if (ROOT / name).is_file():
            (context / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, context / name)
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    built = run(*pip, "-w", str(tmp_path / "dist"), str(context), timeout=120)
    assert built.returncode == 0, f"pip wheel (exit {built.returncode}):\n{built.stderr}"
    (wheel,) = (tmp_path / "dist").glob("streamdet-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        assert "streamdet = streamdet.cli:main" in archive.read(entry_points).decode()
    modules = {
        str(p.relative_to(ROOT))
        for p in (ROOT / "streamdet").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    missing = modules - names
    assert not missing, f"the wheel lacks {sorted(missing)[:5]}"
    assert {"streamdet/web/index.html", "streamdet/py.typed"} <= names


def test_torch_is_installed_from_requirements_torch_txt_before_the_project() -> None:
    found = instructions()
    runs = [(i, item["value"]) for i, item in enumerate(found) if item["instruction"] == "RUN"]
    torch_runs = [i for i, value in runs if "requirements/torch.txt" in value]
    project_runs = [i for i, value in runs if re.search(r"pip install [^\n]*/src(\s|$|&)", value)]
    assert torch_runs and project_runs, "expected one RUN for torch and one for the project"
    assert max(torch_runs) < min(project_runs), "torch must be installed before the project"
    # The file installed is the repository's requirements/torch.txt, copied as it is ...
    assert any(
        sources == ["requirements/torch.txt"] and dest.endswith("requirements/torch.txt")
        for sources, dest in copies(found)
    ), "requirements/torch.txt is not copied into the image"
    # ... and no other torch version is named anywhere in the Dockerfile.
    pins = dict(
        line.split("==")
        for line in (ROOT / "requirements" / "torch.txt").read_text().split()
        if "==" in line
    )
    assert set(pins) == {"torch", "torchvision"}
    text = DOCKERFILE.read_text()
    for name, version in re.findall(r"\b(torch|torchvision)\s*[=<>~]=\s*([\w.+]+)", text):
        assert version == pins[name], f"Dockerfile names {name} {version}, torch.txt {pins[name]}"


def test_image_runs_streamdet_as_a_numeric_non_root_user_with_config_and_state_volumes() -> None:
    stage = final_stage(instructions())
    (user,) = [item["value"] for item in stage if item["instruction"] == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: want a numeric, non-root uid"
    (volume,) = [exec_form(item["value"]) for item in stage if item["instruction"] == "VOLUME"]
    assert {"/etc/streamdet", "/var/lib/streamdet"} <= set(volume), volume
    (entry,) = [exec_form(item["value"]) for item in stage if item["instruction"] == "ENTRYPOINT"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entry == ["streamdet"] and "streamdet" in scripts, entry
    (cmd,) = [exec_form(item["value"]) for item in stage if item["instruction"] == "CMD"]
    assert cmd[:2] == ["run", "--config"] and cmd[2].startswith("/etc/streamdet/"), cmd


def build_args() -> set[str]:
    return {item["value"].split("=")[0] for item in instructions() if item["instruction"] == "ARG"}


@pytest.mark.parametrize("compose", ["compose.yaml", "compose.cuda.yaml"])
def test_compose_build_args_are_arguments_the_dockerfile_declares(compose: str) -> None:
    (doc,) = documents((DEPLOY / compose).read_text())
    args = doc["services"]["streamdet"]["build"]["args"]
    assert set(args) <= build_args(), f"{compose}: {set(args) - build_args()} not an ARG"
    # VARIANT selects the torch build; the RUN refuses any other value than these two.
    assert args["VARIANT"] in ("cpu", "cuda")
    assert re.search(r"\bcpu\)", DOCKERFILE.read_text()) and "cuda)" in DOCKERFILE.read_text()
