"""Retention keeps event media within an age and a total size, deleting the oldest first."""

from __future__ import annotations

import os
from pathlib import Path

from streamdet.alert.retention import prune


def make(folder: Path, name: str, size: int, mtime: float) -> Path:
    path = folder / name
    path.write_bytes(b"x" * size)
    os.utime(path, (mtime, mtime))
    return path


def test_prune_by_age_then_size(tmp_path: Path) -> None:
    now = 1_000_000.0
    old = make(tmp_path, "old.jpg", 10, now - 100)
    mid = make(tmp_path, "mid.jpg", 10, now - 50)
    new = make(tmp_path, "new.jpg", 10, now - 10)
    assert prune(tmp_path, max_age_s=60, max_bytes=1000, now=now) == [old]
    assert prune(tmp_path, max_age_s=60, max_bytes=15, now=now) == [mid]
    assert new.exists() and not mid.exists()
    assert prune(tmp_path, max_age_s=60, max_bytes=15, now=now) == []


def test_missing_folder_is_fine(tmp_path: Path) -> None:
    assert prune(tmp_path / "nothing", 1, 1) == []
