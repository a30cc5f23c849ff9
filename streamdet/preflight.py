"""Checks of a valid config against this machine, before anything starts.

``load_config`` checks what the file says; a config can still be one that ``run`` crashes on a
few seconds in, because of the machine it runs on: a server host that does not resolve, an
``alerts.dir`` that is a file (``FileExistsError``), rings of 4096 1080p colour frames (23.7 GiB
asked of ``numpy.zeros``). These checks run in ``check-config`` and again when ``run`` starts,
and each problem names its key.
"""

from __future__ import annotations

import math
import os
import socket
import tempfile
from pathlib import Path

from streamdet.config import Config, ServerConfig
from streamdet.errors import ConfigError

# The rings are allocated at start and fill within seconds; the models, decoders, clip buffers
# and everything else on the machine need the other half.
RING_SHARE = 0.5
GIB = 2**30


def server_problems(server: ServerConfig) -> list[str]:
    """``server.host`` must be an address of this machine, or a name that resolves to one."""
    if not server.enabled:
        return []
    try:
        found = socket.getaddrinfo(server.host, 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:  # socket.gaierror
        return [f"server.host: cannot resolve {server.host!r}: {exc.strerror or exc}"]
    family, kind, proto, _, address = found[0]
    # Port 0 on the same address: whether it can be bound, without taking the configured port
    # (an instance already running there is no problem of this config).
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.bind((address[0], 0, *address[2:]))
    except OSError as exc:
        return [f"server.host: cannot serve on {server.host!r}: {exc.strerror or exc}"]
    return []


def folder_problem(key: str, path: Path) -> str | None:
    """Why folder ``path`` (config key ``key``) cannot be created or written, or None.

    Nothing is created: a file is made and removed at once in the nearest folder that exists,
    the one ``mkdir(parents=True)`` would start from.
    """
    existing = path
    try:
        while not existing.exists():
            existing = existing.parent
    except OSError as exc:  # e.g. a parent that may not be searched
        return f"{key}: cannot look at {existing}: {exc.strerror or exc}"
    if not existing.is_dir():
        where = "is a file" if existing == path else f"is under {existing}, which is a file"
        return f"{key}: {path} {where}, not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        return f"{key}: cannot write in {existing}: {exc.strerror or exc}"
    return None


def folder_problems(config: Config) -> list[str]:
    """``alerts.dir`` must be writable; ``models.dir`` too when cameras learn in place."""
    folders = [("alerts.dir", config.alerts.dir)]
    if config.models.learn_in_place:
        folders.append(("models.dir", config.models.dir))
    found = (folder_problem(key, path) for key, path in folders)
    return [problem for problem in found if problem is not None]


def machine_memory() -> int | None:
    """Bytes of memory this process may use: the machine's, or its cgroup's limit if lower."""
    try:
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):  # not a POSIX system that says
        return None
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            memory = min(memory, int(text))
    return memory


def ring_problems(config: Config, memory: int | None) -> list[str]:
    """The rings of every enabled camera, allocated at start, must fit in ``RING_SHARE`` of
    ``memory`` (bytes; None: unknown, nothing is checked)."""
    size = config.capture.ring_size
    rings = {i: size * math.prod(c.frame.shape) for i, c in enumerate(config.cameras) if c.enabled}
    total = sum(rings.values())
    if memory is None or total <= memory * RING_SHARE:
        return []
    big = max(rings, key=rings.__getitem__)
    frame = config.cameras[big].frame
    return [
        f"capture.ring_size: {size} frames for each of {len(rings)} camera(s) would take"
        f" {total / GIB:.1f} GiB, more than half of this machine's {memory / GIB:.1f} GiB"
        f" (cameras[{big}].frame is {frame.width}x{frame.height} {frame.color}:"
        f" {rings[big] / GIB:.2f} GiB); lower capture.ring_size or the cameras' frame size"
    ]


def problems(config: Config, *, pipeline: bool = True) -> list[str]:
    """Everything this machine has against ``config``, one ``key: message`` each.
    ``pipeline=False``: only what capture alone needs (``streamdet capture``)."""
    found = ring_problems(config, machine_memory())
    if pipeline:
        found += folder_problems(config) + server_problems(config.server)
    return found


def check(config: Config, source: str, *, pipeline: bool = True) -> None:
    """Raise ``ConfigError`` (from ``source``) listing ``problems(config)``, if there are any."""
    found = problems(config, pipeline=pipeline)
    if found:
        raise ConfigError(source, found)
