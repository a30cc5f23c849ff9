"""The models are pure: frames in, scores out. No module of ``streamdet.models`` imports a
stage, the config, the evaluation or the learning workflow (``streamdet.learning`` is above
them: it gathers footage and trains, calibrates and saves models)."""

from __future__ import annotations

import ast
from pathlib import Path

import streamdet.models

ABOVE = ("app", "capture", "inference", "alert", "web", "metrics", "config", "eval", "learning")


def imported(path: Path) -> set[str]:
    """Every ``streamdet`` module the file imports, at any depth (functions included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.ImportFrom) and node.module == "streamdet"
        ):  # from streamdet import x
            names.update(f"streamdet.{a.name}" for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.split(".")[0] == "streamdet"}


def test_models_import_nothing_above_them() -> None:
    folder = Path(streamdet.models.__file__).parent
    found = {
        f"{path.name}: {name}"
        for path in sorted(folder.glob("*.py"))
        for name in imported(path)
        if name.partition(".")[2].split(".")[0] in ABOVE
    }
    assert not found, sorted(found)
