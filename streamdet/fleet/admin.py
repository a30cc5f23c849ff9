"""``streamdet fleet-cameras``: show or replace the fleet's camera list in its KV entry.

For a fleet with ``fleet.cameras: kv`` the list lives in the ``cameras`` entry of the
``<prefix>-config`` bucket (``cameras.py``); the workers read it on every beat. A new list is
checked with the config loader before it is written, so a bad one is refused here, naming the
key, instead of in every worker's log. ``${VAR}`` references are written as they are (each
worker fills them from its own environment, so camera passwords stay out of the bucket); for the
check, a variable this shell does not have counts as set.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from nats.js.errors import KeyNotFoundError

from streamdet.config import FleetConfig
from streamdet.fleet.cameras import parse_cameras
from streamdet.fleet.connect import CAMERAS_KEY, FleetError, open_buckets
from streamdet.log import redact


class _AnyVariable(Mapping[str, str]):
    """An environment in which every variable is set: the check is of the list's shape."""

    def __init__(self, real: Mapping[str, str]) -> None:
        self.real = real

    def __getitem__(self, name: str) -> str:
        return self.real.get(name, "x")

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.real)

    def __len__(self) -> int:
        return len(self.real)


def read_list_file(path: Path, env: Mapping[str, str]) -> tuple[bytes, int]:
    """A YAML file's camera list (a list, or a mapping with ``cameras:``) as the JSON to write,
    and its camera count. Raises FleetError naming the problem."""
    try:
        data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise FleetError(f"{path}: cannot read a camera list: {exc}") from None
    if isinstance(data, dict) and "cameras" in data:
        data = data["cameras"]
    if not isinstance(data, list):
        raise FleetError(f"{path}: a list of cameras, or a mapping with `cameras:`, expected")
    raw = json.dumps(data).encode()
    try:  # the workers' own check, ${VAR} kept in ``raw`` for them to fill
        cameras = parse_cameras(raw, source=str(path), env=_AnyVariable(env))
    except ValueError as exc:
        raise FleetError(f"{path}: the list is refused: {exc}") from None
    return raw, len(cameras)


def show(config: FleetConfig) -> tuple[int, str]:
    """The entry's revision and its list (YAML, credentials in URLs redacted). FleetError
    when there is none."""
    return asyncio.run(_show(config))


def replace(config: FleetConfig, raw: bytes) -> int:
    """Write ``raw`` (checked by ``read_list_file``) as the list; its new revision."""
    return asyncio.run(_replace(config, raw))


async def _show(config: FleetConfig) -> tuple[int, str]:
    buckets = await open_buckets(config, "admin", keep_trying=False)
    try:
        try:
            entry = await buckets.config.get(CAMERAS_KEY)
        except KeyNotFoundError:
            raise FleetError(
                f"no camera list in {config.prefix}-config yet (the first worker seeds it from"
                " its file, or write one with --set)"
            ) from None
        raw = entry.value or b""
        try:
            text = yaml.safe_dump({"cameras": yaml.safe_load(raw.decode())}, sort_keys=False)
        except (UnicodeDecodeError, yaml.YAMLError):
            text = raw.decode(errors="replace")
        try:
            parse_cameras(raw)
        except ValueError as exc:
            text += f"# the workers refuse this list (they keep their last good one): {exc}\n"
        return int(entry.revision or 0), redact(text)
    finally:
        await buckets.nc.close()


async def _replace(config: FleetConfig, raw: bytes) -> int:
    buckets = await open_buckets(config, "admin", keep_trying=False)
    try:
        return int(await buckets.config.put(CAMERAS_KEY, raw))
    finally:
        await buckets.nc.close()
