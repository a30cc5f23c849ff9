"""The container's HEALTHCHECK: GET /healthz of the streamdet in this container.

Usage: ``python healthcheck.py [CONFIG]`` (default ``/etc/streamdet/config.yaml``). The port is
the config's ``server.port`` (default 8686), read with plain YAML: this runs every 30 s, so it
imports neither streamdet nor pydantic. Exit 0 when /healthz answers 200 within 3 s, else 1 with
the reason on stderr (Docker keeps the last lines in ``docker inspect``).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from typing import Any

import yaml

DEFAULT_CONFIG = "/etc/streamdet/config.yaml"
DEFAULT_PORT = 8686
TIMEOUT_S = 3.0


def port_of(config: Any) -> int:
    """``server.port`` of a parsed config. Raises ValueError when it cannot be checked."""
    server = config.get("server") if isinstance(config, dict) else None
    server = server if isinstance(server, dict) else {}
    if server.get("enabled", True) is False:
        raise ValueError("server.enabled is false: there is no /healthz to ask")
    port = server.get("port", DEFAULT_PORT)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ValueError(f"server.port must be a fixed port number for the check, not {port!r}")
    return port


def main(argv: list[str]) -> int:
    path = argv[1] if len(argv) > 1 else DEFAULT_CONFIG
    try:
        with open(path, encoding="utf-8-sig") as file:
            port = port_of(yaml.safe_load(file))
    except (OSError, yaml.YAMLError, ValueError) as exc:
        print(f"healthcheck: {path}: {exc}", file=sys.stderr)
        return 1
    url = f"http://127.0.0.1:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            status = response.status
    except (urllib.error.URLError, OSError) as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"healthcheck: {url}: HTTP {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
