"""The fleet's camera list as it is kept in the ``<prefix>-config`` KV entry ``cameras``.

JSON (or YAML: JSON is YAML) of the same shape as a config file's ``cameras:``, read by the
config loader itself, so an entry gets the same checks and the same errors naming the key
(``cameras[2].source.url: ...``), secrets redacted, and ``${VAR}`` filled from each worker's
environment (camera passwords need not be written into the bucket).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import yaml

from streamdet.config import CameraConfig, parse_config
from streamdet.errors import ConfigError


def encode_cameras(cameras: list[CameraConfig]) -> bytes:
    return json.dumps([c.model_dump(mode="json") for c in cameras]).encode()


def parse_cameras(
    raw: bytes, source: str = "the fleet's camera list", env: Mapping[str, str] | None = None
) -> list[CameraConfig]:
    """The list in ``raw``, ``${VAR}`` filled from ``env`` (default: this process's
    environment). Raises ValueError naming every problem."""
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"not JSON or YAML: {exc}") from None
    try:
        return parse_config({"cameras": data}, source=source, env=env).cameras
    except ConfigError as exc:
        raise ValueError("; ".join(exc.problems)) from None
