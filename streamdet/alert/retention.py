"""Bounded disk use for event media: delete the oldest files past an age or a total size."""

from __future__ import annotations

import logging
import time
from pathlib import Path

logger = logging.getLogger(__name__)


def prune(folder: Path, max_age_s: float, max_bytes: int, now: float | None = None) -> list[Path]:
    """Remove files in ``folder`` older than ``max_age_s``, then the oldest until the rest fit
    in ``max_bytes``. Returns what was removed (oldest first)."""
    if not folder.is_dir():
        return []
    now = time.time() if now is None else now
    files = sorted(
        ((p.stat().st_mtime, p.stat().st_size, p) for p in folder.iterdir() if p.is_file()),
        key=lambda item: item[0],
    )
    total = sum(size for _, size, _ in files)
    removed: list[Path] = []
    for mtime, size, path in files:
        if now - mtime <= max_age_s and total <= max_bytes:
            break
        try:
            path.unlink()
        except OSError as exc:  # gone already, or not ours to delete: keep going
            logger.warning("retention: cannot remove %s: %s", path, exc)
            continue
        total -= size
        removed.append(path)
    return removed
