"""Bounded disk use for event media: delete the oldest files past an age or a total size."""

from __future__ import annotations

import logging
import stat
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

logger = logging.getLogger(__name__)


def prune(
    folders: Path | Iterable[Path], max_age_s: float, max_bytes: int, now: float | None = None
) -> list[Path]:
    """Remove files in ``folders`` older than ``max_age_s``, then the oldest until the rest fit
    in ``max_bytes`` (one budget for all folders). Returns what was removed (oldest first)."""
    folders = [folders] if isinstance(folders, Path) else list(folders)
    now = time.time() if now is None else now
    files = sorted(_files(folders), key=lambda item: item[0])
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


def _files(folders: list[Path]) -> Iterator[tuple[float, int, Path]]:
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            try:
                info = path.stat()
            except OSError:  # removed meanwhile (a clip being finished renames its part file)
                continue
            if stat.S_ISREG(info.st_mode):
                yield info.st_mtime, info.st_size, path
