"""Reading a config file: YAML, ``${VAR}`` substitution, validation and error messages.

``load_config`` reads YAML, substitutes ``${VAR}`` from the environment (so camera passwords need
not be written in the file), validates with pydantic and turns every problem into a
``key.path: message`` line inside a ``ConfigError``. Nothing else in streamdet reads the
environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from streamdet.config.cameras import CameraConfig
from streamdet.config.sinks import SINK_KINDS
from streamdet.config.sources import SOURCE_KINDS, FileSource
from streamdet.config.tree import Config
from streamdet.errors import ConfigError
from streamdet.log import redact
from streamdet.yamlfile import load_yaml

_VAR = re.compile(r"\$(\$)|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _path_str(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif _is_union_tag(loc, i):
            continue  # pydantic puts the union's tag into the path; users never wrote it
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "(top level)"


def _is_union_tag(loc: tuple[int | str, ...], i: int) -> bool:
    item = loc[i]
    if i > 0 and loc[i - 1] == "source" and item in SOURCE_KINDS:
        return True
    return i > 1 and loc[i - 2] == "sinks" and item in SINK_KINDS


def _substitute(
    node: Any, env: Mapping[str, str], loc: tuple[int | str, ...], problems: list[str]
) -> Any:
    """Replace ${VAR} in every string of the parsed tree ($$ is a literal $)."""
    if isinstance(node, dict):
        return {k: _substitute(v, env, (*loc, k), problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_substitute(v, env, (*loc, i), problems) for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return "$"
        name = match.group(2)
        if name not in env:
            problems.append(f"{_path_str(loc)}: environment variable {name} is not set")
            return ""
        return env[name]

    return _VAR.sub(replace, node)


def _check_paths(config: Config, base: Path) -> tuple[Config, list[str]]:
    """Resolve file paths against the config's folder and report files that are missing."""
    problems: list[str] = []
    cameras = []
    for i, camera in enumerate(config.cameras):
        source = camera.source
        if isinstance(source, FileSource):
            path = source.path if source.path.is_absolute() else base / source.path
            if not path.is_file():
                problems.append(f"cameras[{i}].source.path: file not found: {path}")
            camera = camera.model_copy(update={"source": source.model_copy(update={"path": path})})
        cameras.append(camera)
    return config.model_copy(update={"cameras": cameras}), problems


def parse_config(
    data: Any,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
    check_paths: bool = True,
) -> Config:
    """Validate an already parsed YAML document. Raises ``ConfigError``."""
    if data is None:
        raise ConfigError(source, ["(top level): the file is empty"])
    if not isinstance(data, dict):
        raise ConfigError(source, [f"(top level): expected a mapping, got {type(data).__name__}"])
    problems: list[str] = []
    data = _substitute(data, os.environ if env is None else env, (), problems)
    if problems:
        raise ConfigError(source, problems)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [_format_error(e) for e in exc.errors()]) from None
    base = base_dir or Path.cwd()
    if not config.models.dir.is_absolute():
        models = config.models.model_copy(update={"dir": base / config.models.dir})
        config = config.model_copy(update={"models": models})
    if not config.alerts.dir.is_absolute():
        alerts = config.alerts.model_copy(update={"dir": base / config.alerts.dir})
        config = config.model_copy(update={"alerts": alerts})
    if check_paths:
        config, problems = _check_paths(config, base)
        if problems:
            raise ConfigError(source, problems)
    return config


def _format_error(error: Any) -> str:
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        # Two unions have a `kind`: a camera's source, and each of alerts.sinks[i].
        what, kinds = ("sink", SINK_KINDS) if "sinks" in error["loc"] else ("source", SOURCE_KINDS)
        problem = (
            f"unknown {what} kind" if error["type"] == "union_tag_invalid" else "missing 'kind'"
        )
        message = f"{problem}; expected one of {', '.join(kinds)}"
    elif error["type"] == "finite_number":
        message = f"Input should be a finite number, not {error['input']!r}"
    return f"{_path_str(tuple(error['loc']))}: {redact(message)}"


_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _decode(raw: bytes, source: str) -> str:
    """The text of a config file, which must be UTF-8 (a UTF-8 byte-order mark is allowed:
    Windows editors write one). Raises ``ConfigError`` saying what the bytes are instead."""
    if raw.startswith(_UTF16_BOMS):
        problem = "the file is UTF-16 (it starts with a UTF-16 byte-order mark)"
        raise ConfigError(source, [f"(file): {problem}; save it as UTF-8"])
    # NUL is valid UTF-8 but never in text: UTF-16 without a byte-order mark, or binary.
    bad = raw.find(b"\x00")
    try:
        if bad < 0:
            return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        bad = exc.start
    line = raw.count(b"\n", 0, bad) + 1
    problem = f"not UTF-8 text: byte 0x{raw[bad]:02x} at line {line} (offset {bad})"
    raise ConfigError(source, [f"(file): {problem}; save it as UTF-8"])


def load_config(
    path: str | Path, *, env: Mapping[str, str] | None = None, check_paths: bool = True
) -> Config:
    """Read, substitute and validate a YAML config file. Raises ``ConfigError``."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"(file): cannot read: {exc.strerror or exc}"]) from None
    text = _decode(raw, str(path))
    try:
        data = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(str(path), [f"{where}: invalid YAML: {problem}"]) from None
    return parse_config(
        data, source=str(path), base_dir=path.resolve().parent, env=env, check_paths=check_paths
    )


def camera(config: Config, name: str) -> CameraConfig:
    """The camera called ``name``. Raises ConfigError listing the known names."""
    for cam in config.cameras:
        if cam.name == name:
            return cam
    known = ", ".join(c.name for c in config.cameras)
    raise ConfigError("--camera", [f"no camera named {name!r}; cameras: {known}"])


def summary(config: Config) -> str:
    """One line describing a valid config."""
    cams = ", ".join(f"{c.name} ({c.source.kind})" for c in config.cameras)
    return f"{len(config.cameras)} camera(s): {cams}"
