"""Malformed configurations for the fault suite: each one must be refused with exit code 2, a
message naming the key (``cameras[0].analysis_fps``) or the line (``line 3``), and no traceback,
by both ``streamdet check-config`` and ``streamdet run``.

``cases(workdir)`` writes every case under ``workdir`` and returns them; ``check(case)`` runs both
commands on one and says what was wrong, if anything.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.common import STREAMDET

CAMERA: dict[str, Any] = {"name": "a", "source": {"kind": "synthetic"}}
SECRET = "Cf9-hunter2-not-for-logs"  # a password some cases carry: it must not be echoed
TIMEOUT_S = 60.0  # per command: the alias bomb must be refused long before this


@dataclass(frozen=True)
class Case:
    """One malformed config at ``path``; ``expected`` must appear in stderr."""

    name: str
    path: Path
    expected: str


def _camera(**fields: Any) -> dict[str, Any]:
    return {"cameras": [{**CAMERA, **fields}]}


def _source(**fields: Any) -> dict[str, Any]:
    return _camera(source=fields)


def _with(**sections: Any) -> dict[str, Any]:
    return {"cameras": [CAMERA], **sections}


def _alias_bomb(levels: int) -> str:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{n}: &l{n} [" + ",".join([f"*l{n - 1}"] * 9) + "]" for n in range(1, levels + 1)]
    return "\n".join([*lines, "cameras: [{name: a, source: {kind: synthetic}}]", ""])


# (name, document, expected): a dict is written as JSON (YAML's subset), text and bytes as they are.
DOCUMENTS: list[tuple[str, dict[str, Any] | str | bytes, str]] = [
    ("unknown-top-key", {**_with(), "extra": 1}, "extra: unknown key"),
    ("unknown-camera-key", _camera(colour="grey"), "cameras[0].colour: unknown key"),
    ("fps-string", _camera(analysis_fps="fast"), "cameras[0].analysis_fps"),
    ("fps-zero", _camera(analysis_fps=0), "cameras[0].analysis_fps"),
    ("fps-negative", _camera(analysis_fps=-5), "cameras[0].analysis_fps"),
    (
        "fps-nan",
        "cameras: [{name: a, source: {kind: synthetic}, analysis_fps: .nan}]\n",
        "cameras[0].analysis_fps",
    ),
    (
        "fps-inf",
        "cameras: [{name: a, source: {kind: synthetic, fps: .inf}}]\n",
        "cameras[0].source.fps",
    ),
    ("fps-too-high", _camera(analysis_fps=10000), "cameras[0].analysis_fps"),
    (
        "ring-minus-inf",
        "capture: {ring_size: -.inf}\ncameras: [{name: a, source: {kind: synthetic}}]\n",
        "capture.ring_size",
    ),
    ("ring-size-1", _with(capture={"ring_size": 1}), "capture.ring_size"),
    ("ring-size-float", _with(capture={"ring_size": 2.5}), "capture.ring_size"),
    (
        "zone-nan",
        "cameras: [{name: a, source: {kind: synthetic}, zones: [[[0, 0], [1, .nan], [1, 1]]]}]\n",
        "cameras[0].zones[0][1][1]",
    ),
    ("zone-two-points", _camera(zones=[[[0, 0], [1, 1]]]), "cameras[0].zones"),
    ("zone-out-of-frame", _camera(zones=[[[0, 0], [2, 0], [1, 1]]]), "cameras[0].zones"),
    ("frame-width-huge", _camera(frame={"width": 99999}), "cameras[0].frame.width"),
    ("frame-height-zero", _camera(frame={"height": 0}), "cameras[0].frame.height"),
    ("frame-color", _camera(frame={"color": "purple"}), "cameras[0].frame.color"),
    ("source-kind-unknown", _source(kind="tape"), "cameras[0].source: unknown source kind"),
    ("source-kind-missing", _source(url="rtsp://h/x"), "cameras[0].source: missing 'kind'"),
    ("source-not-a-mapping", _camera(source="rtsp://h/x"), "cameras[0].source"),
    ("rtsp-http-scheme", _source(kind="rtsp", url="http://h/x"), "cameras[0].source.url"),
    ("rtsp-no-url", _source(kind="rtsp"), "cameras[0].source.url: Field required"),
    ("rtsp-no-host", _source(kind="rtsp", url="rtsp://"), "cameras[0].source.url"),
    ("rtsp-url-number", _source(kind="rtsp", url=554), "cameras[0].source.url"),
    (
        "rtsp-password-bad-scheme",
        _source(kind="rtsp", url=f"rtp://admin:{SECRET}@h/x"),
        "cameras[0].source.url",
    ),
    (
        "rtsp-transport",
        _source(kind="rtsp", url="rtsp://h/x", transport="sctp"),
        "cameras[0].source.transport",
    ),
    (
        "rtsp-timeout-negative",
        _source(kind="rtsp", url="rtsp://h/x", open_timeout_s=-1),
        "cameras[0].source.open_timeout_s",
    ),
    ("mjpeg-rtsp-scheme", _source(kind="mjpeg", url="rtsp://h/x"), "cameras[0].source.url"),
    ("synthetic-fps-negative", _source(kind="synthetic", fps=-1), "cameras[0].source.fps"),
    (
        "synthetic-realtime-maybe",
        _source(kind="synthetic", realtime="maybe"),
        "cameras[0].source.realtime",
    ),
    (
        "anomaly-start-negative",
        _source(kind="synthetic", anomalies=[{"kind": "fast", "start_s": -3, "duration_s": 5}]),
        "cameras[0].source.anomalies[0].start_s",
    ),
    (
        "anomaly-kind",
        _source(kind="synthetic", anomalies=[{"kind": "ufo", "start_s": 1, "duration_s": 5}]),
        "cameras[0].source.anomalies[0].kind",
    ),
    ("webcam-device", _source(kind="webcam", device="/dev/sda"), "cameras[0].source.device"),
    ("file-missing", _source(kind="file", path="nothere.mp4"), "cameras[0].source.path"),
    ("camera-name-bad", _camera(name="bad name!"), "cameras[0].name"),
    ("camera-model-unknown", _camera(model="telepathy"), "cameras[0].model"),
    ("cameras-empty", {"cameras": []}, "cameras: List should have at least 1 item"),
    ("cameras-string", {"cameras": "x"}, "cameras: Input should be a valid list"),
    ("cameras-missing", {"capture": {}}, "cameras: Field required"),
    ("camera-without-source", {"cameras": [{"name": "a"}]}, "cameras[0].source: Field required"),
    ("camera-names-duplicate", {"cameras": [CAMERA, CAMERA]}, "cameras: duplicate camera name"),
    (
        "second-camera-bad",
        {"cameras": [CAMERA, {"name": "b", "source": {"kind": "synthetic", "seed": -1}}]},
        "cameras[1].source.seed",
    ),
    (
        "backoff-reversed",
        _with(capture={"backoff": {"initial_s": 5, "max_s": 1}}),
        "capture.backoff: max_s (1.0) must be >= initial_s",
    ),
    ("decoder-threads", _with(capture={"decoder_threads": "many"}), "capture.decoder_threads"),
    ("models-kind", _with(models={"kind": "telepathy"}), "models.kind"),
    ("learn-seconds-negative", _with(models={"learn_seconds": -5}), "models.learn_seconds"),
    (
        "sink-kind-unknown",
        _with(alerts={"sinks": [{"kind": "jsonl"}, {"kind": "email"}]}),
        "alerts.sinks[1]: unknown sink kind",
    ),
    (
        "sink-kind-missing",
        _with(alerts={"sinks": [{"url": "http://h/x"}]}),
        "alerts.sinks[0]: missing 'kind'",
    ),
    (
        "webhook-ftp",
        _with(alerts={"sinks": [{"kind": "webhook", "url": "ftp://h/x"}]}),
        "alerts.sinks[0].url",
    ),
    (
        "mqtt-port",
        _with(alerts={"sinks": [{"kind": "mqtt", "port": 70000}]}),
        "alerts.sinks[0].port",
    ),
    ("server-port-huge", _with(server={"port": 70000}), "server.port"),
    ("server-port-string", _with(server={"port": "http"}), "server.port"),
    ("server-token-short", _with(server={"token": "abc"}), "server.token"),
    ("server-host-foreign", _with(server={"host": "192.0.2.1"}), "server.host"),
    ("logging-level", _with(logging={"level": "LOUD"}), "logging.level"),
    (
        "env-missing",
        _source(kind="rtsp", url="rtsp://u:${STREAMDET_FAULTS_NOPE}@h/s"),
        "cameras[0].source.url: environment variable STREAMDET_FAULTS_NOPE is not set",
    ),
    (
        "duplicate-key-top",
        "cameras:\n  - {name: a, source: {kind: synthetic}}\n"
        "cameras:\n  - {name: b, source: {kind: synthetic}}\n",
        "line 3, column 1",
    ),
    (
        "duplicate-key-flow",
        "cameras:\n  - {name: a, source: {kind: synthetic, seed: 1, seed: 2}}\n",
        "line 2",
    ),
    ("alias-bomb", _alias_bomb(9), "aliases expand to more than"),
    (
        "alias-recursive",
        "a: &a [1, *a]\ncameras: [{name: a, source: {kind: synthetic}}]\n",
        "line 1",
    ),
    ("nesting-deep", "a: " + "[" * 5000 + "]" * 5000 + "\n", "nested deeper than"),
    ("yaml-unclosed", "cameras: [\n", "line "),
    ("yaml-tab-indent", "cameras:\n\t- name: a\n", "line 2"),
    ("yaml-empty", "", "empty"),
    ("yaml-only-comments", "# nothing here\n", "empty"),
    ("yaml-top-level-list", "- a\n- b\n", "(top level)"),
    ("yaml-top-level-scalar", "hello\n", "(top level)"),
    ("utf-16", "cameras: []\n".encode("utf-16"), "UTF-16"),
    ("latin-1", b"cameras:\n  - name: caf\xe9\n", "line 2"),
    ("binary", b"cameras: [" + bytes(range(256)), "line 1"),
]

# Cases that are not one file's content: (name, make(workdir) -> config path, expected).
SPECIAL: list[tuple[str, Callable[[Path], Path], str]] = []


def _config_is_a_directory(workdir: Path) -> Path:
    path = workdir / "a-directory.yaml"
    path.mkdir(exist_ok=True)
    return path


def _missing_config(workdir: Path) -> Path:
    return workdir / "no-such-config.yaml"


def _alerts_dir_is_a_file(workdir: Path) -> Path:
    (workdir / "events-file").write_text("not a folder\n")
    path = workdir / "alerts-dir-file.yaml"
    path.write_text(json.dumps(_with(alerts={"dir": str(workdir / "events-file")})))
    return path


def _models_dir_under_a_file(workdir: Path) -> Path:
    (workdir / "models-file").write_text("not a folder\n")
    path = workdir / "models-dir-under-file.yaml"
    path.write_text(json.dumps(_with(models={"dir": str(workdir / "models-file" / "m")})))
    return path


SPECIAL += [
    ("config-is-a-directory", _config_is_a_directory, "a-directory.yaml"),
    ("config-missing", _missing_config, "cannot read"),
    ("alerts-dir-is-a-file", _alerts_dir_is_a_file, "alerts.dir"),
    ("models-dir-under-a-file", _models_dir_under_a_file, "models.dir"),
]


def cases(workdir: Path, limit: int | None = None) -> list[Case]:
    """Write every case (the first ``limit``) under ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    found: list[Case] = []
    for name, document, expected in DOCUMENTS:
        path = workdir / f"{name}.yaml"
        if isinstance(document, bytes):
            path.write_bytes(document)
        else:
            path.write_text(document if isinstance(document, str) else json.dumps(document))
        found.append(Case(name, path, expected))
    found += [Case(name, make(workdir), expected) for name, make, expected in SPECIAL]
    return found[:limit]


def judge(command: str, code: int, stdout: str, stderr: str, expected: str) -> list[str]:
    """What is wrong with one command's answer to a malformed config (nothing: [])."""
    wrong = []
    if code != 2:
        wrong.append(f"{command}: exit code {code}, not 2")
    if expected not in stderr:
        wrong.append(f"{command}: stderr does not name {expected!r}: {stderr.strip()[-300:]!r}")
    if "Traceback" in stdout + stderr:
        wrong.append(f"{command}: printed a traceback")
    if SECRET in stdout + stderr:
        wrong.append(f"{command}: echoed the password")
    return wrong


def check(case: Case) -> list[str]:
    """Run ``check-config`` and ``run`` on ``case``; what was wrong (nothing: [])."""
    wrong: list[str] = []
    env = {k: v for k, v in os.environ.items() if k != "STREAMDET_FAULTS_NOPE"}
    for command, args in (
        ("check-config", ["check-config", str(case.path)]),
        ("run", ["run", "--config", str(case.path), "--duration", "1"]),
    ):
        try:
            done = subprocess.run(
                [STREAMDET, *args],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=TIMEOUT_S,
                cwd=case.path.parent,
                env=env,
            )
        except subprocess.TimeoutExpired:
            wrong.append(f"{command}: still running after {TIMEOUT_S:.0f} s")
            continue
        wrong += judge(command, done.returncode, done.stdout, done.stderr, case.expected)
    return wrong
