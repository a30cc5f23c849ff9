"""The fleet's camera list as it is kept in the ``<prefix>-config`` KV entry ``cameras``.

JSON (or YAML: JSON is YAML) of the same shape as a config file's ``cameras:``, validated
with the same models, so a bad entry gets the same errors naming the key
(``cameras[2].source.url: ...``), and secrets redacted.
"""

from __future__ import annotations

import json

import yaml
from pydantic import TypeAdapter, ValidationError

from streamdet.config import CameraConfig
from streamdet.log import redact

_LIST = TypeAdapter(list[CameraConfig])


def encode_cameras(cameras: list[CameraConfig]) -> bytes:
    return json.dumps([c.model_dump(mode="json") for c in cameras]).encode()


def parse_cameras(raw: bytes) -> list[CameraConfig]:
    """The list in ``raw``. Raises ValueError naming every problem."""
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"not JSON or YAML: {exc}") from None
    try:
        cameras = _LIST.validate_python(data)
    except ValidationError as exc:
        problems = [
            "cameras"
            + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"])
            + f": {redact(e['msg'])}"
            for e in exc.errors()
        ]
        raise ValueError("; ".join(problems)) from None
    names = [c.name for c in cameras]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"cameras: duplicate camera name(s) {', '.join(duplicates)}")
    return cameras
