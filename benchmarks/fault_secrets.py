"""Secrets for the fault suite: camera and sink credentials must appear in no output at all.

One ``streamdet run`` (log level DEBUG) has cameras whose URLs carry passwords with ``@ : / #``
percent-encoded (``%40``; raw, the config is refused: checked with ``check-config`` and ``run``
of a copy with such a camera), and query values (``?access_token=``, ``apikey``,
``pw``): one the RTSP server serves, one whose port is closed, an MJPEG one that is refused, and
a synthetic scene whose event goes to a webhook (a password and a token in its URL; the
receiver is down for a while, so deliveries fail and are retried) and to an MQTT broker that
is not there (a password). Scanned, for every password (raw, decoded, and each run of
characters between its special characters) and query value: the run's stdout and stderr,
``/api/cameras``, ``/api/events``, ``/metrics``, ``/readyz``, ``events.jsonl``, the payloads the
webhook received, ``streamdet check-config`` of the config and of a broken copy, and
``streamdet probe`` (text and ``--json``) of three of the URLs.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Any

from benchmarks.common import STREAMDET, RtspServer, Streamdet, Webhook, free_port, log

# Each password's runs of letters and digits are 5 characters of random text: finding one
# anywhere means part of the password leaked.
RAW_PASSWORD = "Kx7Pq@Lm3Zr:Vb8Nw/Ty5Hj#Qd4Gs"
ENCODED_PASSWORD = "Wc2Rf%40Hn6Ju%3AYe9Kb%2FPz3Mv"
DEAD_PASSWORD = "Dq8Ls%40Fg1Xa"
MJPEG_PASSWORD = "Mj%3ANp4Tk"
HOOK_PASSWORD = "Hs5Vc%23Lw2Ep"
MQTT_PASSWORD = "Mq7Xz:Gh3Rb"
QUERY_VALUES = ["Tk9Lq2Wd7Zx", "Ak3Pv8Nm1Qs", "Pw6Hy4Jr2Fc", "Ht4Gb7Kn1Vd"]


def needles() -> list[str]:
    """Every string that must not be printed."""
    found: set[str] = set(QUERY_VALUES)
    for password in (
        RAW_PASSWORD,
        ENCODED_PASSWORD,
        DEAD_PASSWORD,
        MJPEG_PASSWORD,
        HOOK_PASSWORD,
        MQTT_PASSWORD,
    ):
        decoded = urllib.parse.unquote(password)
        found |= {password, decoded}
        found |= {part for part in re.split(r"[^A-Za-z0-9]+", decoded) if len(part) >= 4}
    return sorted(found)


def occurrences(text: str) -> int:
    return sum(text.count(needle) for needle in needles())


def document(server: RtspServer, hook: Webhook) -> dict[str, Any]:
    closed = free_port()
    token, apikey, pw, hook_token = QUERY_VALUES
    hook_url = hook.url.replace("http://", f"http://hook:{HOOK_PASSWORD}@")
    return {
        "cameras": [
            {"name": "good", "source": {"kind": "rtsp", "url": server.url(
                f"/pattern?access_token={token}", f"admin:{ENCODED_PASSWORD}")}},
            {"name": "dead", "source": {"kind": "rtsp", "url":
                f"rtsp://root:{DEAD_PASSWORD}@127.0.0.1:{closed}/x?apikey={apikey}&pw={pw}"}},
            {"name": "mjpeg", "source": {"kind": "mjpeg", "url":
                f"http://cam:{MJPEG_PASSWORD}@127.0.0.1:{closed}/video?pw={pw}"}},
            {"name": "scene", "source": {"kind": "synthetic", "seed": 1, "anomalies": [
                {"kind": "fast", "start_s": 14, "duration_s": 8}]}},
        ],
        "models": {"dir": "models", "kind": "motion", "learn_seconds": 6},
        "alerts": {"dir": "events", "sinks": [
            {"kind": "jsonl"},
            {"kind": "webhook", "url": f"{hook_url}?access_token={hook_token}",
             "max_backoff_s": 2},
            {"kind": "mqtt", "port": closed, "username": "u", "password": MQTT_PASSWORD,
             "max_backoff_s": 2},
        ]},
        "server": {"webrtc": {"enabled": False}},
        "logging": {"level": "DEBUG"},
    }  # fmt: skip


def command_output(args: list[str], cwd: Path) -> str:
    done = subprocess.run(
        [STREAMDET, *args], capture_output=True, text=True, errors="replace", timeout=60, cwd=cwd
    )
    return done.stdout + done.stderr


def api_outputs(run: Streamdet) -> dict[str, str]:
    return {
        path: run.get(path).decode(errors="replace")
        for path in ("/api/cameras", "/api/events", "/metrics")
    } | {"/readyz": _readyz(run)}


def _readyz(run: Streamdet) -> str:
    try:
        return run.get("/readyz").decode(errors="replace")
    except OSError as exc:  # 503 while a camera is down: its body is the output
        body = getattr(exc, "read", lambda: b"")()
        return str(exc) + bytes(body).decode(errors="replace")


def secrets(workdir: Path, seconds: float = 35.0) -> dict[str, Any]:
    """Occurrences of every secret in every output (all must be 0)."""
    outputs: dict[str, str] = {}
    with RtspServer({"/pattern": "pattern"}) as server, Webhook() as hook:
        config = document(server, hook)
        with Streamdet(workdir, config) as run:
            time.sleep(seconds / 2)
            outputs |= {f"api {p} (hook down)": t for p, t in api_outputs(run).items()}
            hook.up()
            time.sleep(seconds / 2)
            outputs |= {f"api {p}": t for p, t in api_outputs(run).items()}
        outputs["run stdout+stderr"] = run.output()
        outputs["events.jsonl"] = _read(workdir / "events" / "events.jsonl")
        outputs["webhook payloads"] = json.dumps([body for _, body in hook.received])
        outputs["check-config"] = command_output(["check-config", str(run.config)], workdir)
        broken = workdir / "broken.yaml"
        broken.write_text(json.dumps({**config, "extra": 1}))
        outputs["check-config (invalid)"] = command_output(["check-config", str(broken)], workdir)
        # A raw '@ : / #' in a password: FFmpeg cannot open such a URL, so the config is refused
        # (exit 2, asking for %40 ...), by check-config and by run alike.
        raw = {"name": "raw", "source": {"kind": "rtsp", "url": server.url(
            "/pattern", f"admin:{RAW_PASSWORD}")}}  # fmt: skip
        refused = workdir / "raw.yaml"
        refused.write_text(json.dumps({**config, "cameras": [*config["cameras"], raw]}))
        for command in ("check-config", "run"):
            args = [command, str(refused)] if command == "check-config" else [
                "run", "--config", str(refused), "--duration", "5"]  # fmt: skip
            outputs[f"{command} (raw password)"] = command_output(args, workdir)
        urls = [config["cameras"][i]["source"]["url"] for i in range(2)] + [raw["source"]["url"]]
        for i, url in enumerate(urls):
            probe = ["probe", url, "--frames", "5", "--max-seconds", "5", "--timeout", "3"]
            outputs[f"probe {i}"] = command_output(probe, workdir)
            outputs[f"probe {i} --json"] = command_output([*probe, "--json"], workdir)
    counts = {name: occurrences(text) for name, text in outputs.items()}
    total = sum(counts.values())
    log(
        "secrets",
        f"{total} occurrence(s) of {len(needles())} secret strings in {len(counts)} outputs",
    )
    return {
        "occurrences": total,
        "by_output": counts,
        # The config file holds every secret: proof that the scan finds them where they are.
        "occurrences_in_config_file": occurrences(run.config.read_text()),
        "secret_strings": len(needles()),
        "webhook_deliveries": len(hook.received),
        "outputs_chars": {name: len(text) for name, text in outputs.items()},
    }


def _read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
