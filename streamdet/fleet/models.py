"""Learned checkpoints travel with their camera: kept in the JetStream object store.

A camera's checkpoint folder (``models.dir/<camera>/``: ``model.json`` and
``model.safetensors``) is one object named after the camera: a tar of the two files with fixed
headers, so the same checkpoint is the same bytes, and its SHA-256 (``digest``) names the
version everywhere (the API, the logs, the tests). The owner uploads it whenever the files
change (after learning in place, after a save of what was learned on line); a worker that is
given a camera downloads it *before* the camera starts, so the camera loads it and detects at
once instead of learning again. Files are written under temporary names and renamed, weights
first, as ``models.checkpoint`` does.
"""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
from dataclasses import dataclass
from pathlib import Path

from nats.js.errors import NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

logger = logging.getLogger(__name__)

FILES = ("model.safetensors", "model.json")  # in the order they are renamed into place


@dataclass(frozen=True)
class Checkpoint:
    files: dict[str, bytes]

    @property
    def digest(self) -> str:
        hashed = hashlib.sha256()
        for name in FILES:
            hashed.update(name.encode() + b"\0" + self.files[name])
        return hashed.hexdigest()

    def pack(self) -> bytes:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            for name in FILES:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(self.files[name]), 0, 0o644
                tar.addfile(info, io.BytesIO(self.files[name]))
        return out.getvalue()

    @classmethod
    def unpack(cls, data: bytes) -> Checkpoint:
        """Raises ValueError for anything but the two files."""
        files: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
            for member in tar.getmembers():
                handle = tar.extractfile(member) if member.name in FILES else None
                if handle is None:
                    raise ValueError(f"unexpected entry {member.name!r}")
                files[member.name] = handle.read()
        if set(files) != set(FILES):
            raise ValueError(f"expected {', '.join(FILES)}, got {', '.join(sorted(files))}")
        return cls(files)

    @classmethod
    def read(cls, folder: Path) -> Checkpoint | None:
        """The folder's checkpoint, None without a whole one. The metadata is read before and
        after the weights: a save in between (weights, then metadata) is read again."""
        for _ in range(3):
            try:
                meta = (folder / "model.json").read_bytes()
                weights = (folder / "model.safetensors").read_bytes()
                if (folder / "model.json").read_bytes() == meta:
                    return cls({"model.json": meta, "model.safetensors": weights})
            except FileNotFoundError:
                return None
        return None

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for name in FILES:
            tmp = folder / f"{name}.fleet-tmp"
            tmp.write_bytes(self.files[name])
            tmp.replace(folder / name)


class ModelStore:
    """Uploads and downloads the checkpoints of the cameras this worker runs."""

    def __init__(self, store: ObjectStore, models_dir: Path) -> None:
        self.store, self.models_dir = store, models_dir
        self.digests: dict[str, str] = {}  # camera -> the version both sides have
        self._stats: dict[str, tuple[int, ...]] = {}  # camera -> files' (mtime, size) seen

    async def fetch(self, camera: str) -> str | None:
        """Bring ``camera``'s checkpoint from the store into ``models.dir`` (before it
        starts). Returns its digest; None when the store has none (the camera learns)."""
        try:
            result = await self.store.get(camera)
        except (ObjectNotFoundError, NotFoundError):
            local = Checkpoint.read(self.models_dir / camera)
            self.digests.pop(camera, None)
            return None if local is None else local.digest
        try:
            checkpoint = Checkpoint.unpack(result.data or b"")
        except (ValueError, tarfile.TarError) as exc:
            logger.error("[%s] the fleet's checkpoint is damaged (%s): not used", camera, exc)
            return None
        local = Checkpoint.read(self.models_dir / camera)
        if local is None or local.digest != checkpoint.digest:
            checkpoint.write(self.models_dir / camera)
            logger.info("[%s] fetched checkpoint %s", camera, checkpoint.digest[:12])
        self.digests[camera] = checkpoint.digest
        return checkpoint.digest

    def forget(self, camera: str) -> None:
        """``camera`` runs elsewhere now: its next fetch compares afresh."""
        self.digests.pop(camera, None)
        self._stats.pop(camera, None)

    async def publish(self, camera: str) -> str | None:
        """Upload ``camera``'s checkpoint if it changed since the last upload or fetch.
        Returns the new digest when it uploaded."""
        stats = _stats(self.models_dir / camera)
        if stats is None or stats == self._stats.get(camera):
            return None  # nothing saved since the last look: no need to read the files
        local = Checkpoint.read(self.models_dir / camera)
        self._stats[camera] = stats
        if local is None or self.digests.get(camera) == local.digest:
            return None
        await self.store.put(camera, local.pack())
        self.digests[camera] = local.digest
        logger.info("[%s] published checkpoint %s", camera, local.digest[:12])
        return local.digest


def _stats(folder: Path) -> tuple[int, ...] | None:
    try:
        found = [(folder / name).stat() for name in FILES]
    except FileNotFoundError:
        return None
    return tuple(n for s in found for n in (s.st_mtime_ns, s.st_size, s.st_ino))
