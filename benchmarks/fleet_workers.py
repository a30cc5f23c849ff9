"""Fleet workers as real ``streamdet run`` processes, for ``benchmarks/fleet.py`` and the
fleet tests (``tests/support/fleet.py`` re-exports them).

Each worker has its own folder (config, models, events) and HTTP port; they share a NATS
cluster (``tests.support.nats``) and one list of small synthetic cameras.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import ROOT, end_process, free_port

STREAMDET = str(Path(sys.executable).with_name("streamdet"))


def camera(index: int) -> dict[str, Any]:
    """A small, cheap synthetic camera; a cyclist (an anomaly) now and then."""
    anomalies = [{"kind": "fast", "start_s": s, "duration_s": 2.5} for s in (12, 30, 50, 75)]
    return {
        "name": f"cam{index:02d}",
        "source": {
            "kind": "synthetic",
            "seed": index,
            "width": 64,
            "height": 64,
            "fps": 25,
            "people_per_minute": 30,
            "anomalies": anomalies,
        },
        "frame": {"width": 64, "height": 64},
        "analysis_fps": 4,
    }


class Worker:
    """One ``streamdet run`` in fleet mode; ``kill9`` ends it without a goodbye."""

    def __init__(
        self,
        root: Path,
        name: str,
        servers: list[str],
        cameras: int,
        list_in: str = "config",
        **fleet: Any,
    ) -> None:
        """``list_in``: ``fleet.cameras`` (where the camera list lives); ``fleet``: more
        keys of the ``fleet`` section."""
        self.name, self.dir = name, root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        document = {
            "cameras": [camera(i) for i in range(cameras)],
            "capture": {"processes": 0},
            "inference": {"threads": 1},
            "models": {"dir": "models", "kind": "framediff", "learn_seconds": 5},
            "alerts": {
                "dir": "events",
                "sinks": [{"kind": "nats", "servers": servers, "replicas": 3}],
            },
            "server": {"port": self.port},
            "logging": {"level": "INFO"},
            "fleet": {
                "enabled": True,
                "servers": servers,
                "worker": name,
                "heartbeat_s": 0.5,
                "member_timeout_s": 3.0,
                "replicas": 3,
                "cameras": list_in,
                **fleet,
            },
        }
        self.document = document
        self.config = self.dir / "streamdet.yaml"
        self.config.write_text(yaml.safe_dump(document))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        log = (self.dir / "worker.log").open("ab")
        self.proc = subprocess.Popen(
            [STREAMDET, "run", "--config", str(self.config)],
            cwd=self.dir,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        log.close()

    def rewrite(self, cameras: int) -> None:
        """Write the config again with ``cameras`` cameras (for a reload)."""
        self.document["cameras"] = [camera(i) for i in range(cameras)]
        self.config.write_text(yaml.safe_dump(self.document))

    def post(self, path: str) -> tuple[int, Any]:
        """POST ``path``: the status and the JSON answer."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            end_process(self.proc, timeout=20)
            self.proc = None

    def get(self, path: str) -> Any:
        """The JSON at ``path``; None while the worker does not answer."""
        try:
            url = f"http://127.0.0.1:{self.port}{path}"
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def fleet(self) -> dict[str, Any] | None:
        found = self.get("/api/fleet")
        return found if isinstance(found, dict) else None

    def log(self) -> str:
        path = self.dir / "worker.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def events_db(self) -> tuple[set[str], int]:
        """The idempotency keys every event revision of this worker's store has, and the
        nats deliveries still owed."""
        path = self.dir / "events" / "events.db"
        if not path.exists():
            return set(), 0
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            rows = db.execute("SELECT id, revision FROM events").fetchall()
            owed = db.execute("SELECT COUNT(*) FROM outbox WHERE sink = 'nats'").fetchone()[0]
        finally:
            db.close()
        return {f"{i}-{r}" for i, last in rows for r in range(last + 1)}, int(owed)


def stop_all(workers: list[Worker], timeout: float = 30.0) -> None:
    """SIGTERM every worker at once (one by one, each leaving would hand its cameras to the
    next to stop), then wait; SIGKILL what is left."""
    for worker in workers:
        if worker.alive and worker.proc is not None:
            worker.proc.terminate()
    for worker in workers:
        if worker.proc is not None:
            end_process(worker.proc, timeout=timeout)
            worker.proc = None


def running(workers: list[Worker]) -> dict[str, list[str]]:
    """camera -> the live workers that say they run it (their own /api/fleet). Raises
    RuntimeError, with its log, for a started worker that has exited."""
    where: dict[str, list[str]] = {}
    for worker in workers:
        if worker.proc is not None and worker.proc.poll() is not None:
            raise RuntimeError(f"worker {worker.name} exited:\n{worker.log()}")
        view = worker.fleet() if worker.alive else None
        for name in (view or {}).get("running", []):
            where.setdefault(name, []).append(worker.name)
    return where


def placed_once(workers: list[Worker], cameras: int) -> dict[str, str] | None:
    """camera -> worker when every camera runs on exactly one live worker, else None."""
    where = running(workers)
    if len(where) != cameras or any(len(w) != 1 for w in where.values()):
        return None
    return {name: owners[0] for name, owners in where.items()}
