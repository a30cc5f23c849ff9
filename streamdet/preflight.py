"""Checks of a valid config against this machine, before anything starts.

``load_config`` checks what the file says; a config can still be one that ``run`` crashes on a
few seconds in, because of the machine it runs on: a server host that does not resolve. These
checks run in ``check-config`` and again when ``run`` starts, and each problem names its key.
"""

from __future__ import annotations

import socket

from streamdet.config import Config, ServerConfig
from streamdet.errors import ConfigError


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


def problems(config: Config) -> list[str]:
    """Everything this machine has against ``config``, one ``key: message`` each."""
    return server_problems(config.server)


def check(config: Config, source: str) -> None:
    """Raise ``ConfigError`` (from ``source``) listing ``problems(config)``, if there are any."""
    found = problems(config)
    if found:
        raise ConfigError(source, found)
