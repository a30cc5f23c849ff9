"""A real nats-server cluster (Debian's, JetStream on) on 127.0.0.1, for ``benchmarks/fleet.py``
and the fleet tests (``tests/support/nats.py`` re-exports it).

``NatsCluster(workdir, nodes=3)``: each node on free client, cluster and monitoring ports,
its JetStream store under ``workdir``, routes to the others; ``start`` waits until every
node's ``/healthz`` (JetStream included) answers 200. ``kill(i)`` ends one node with SIGKILL;
``stop`` ends them all.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from benchmarks.common import end_process, free_port


@dataclass
class Node:
    name: str
    port: int
    cluster_port: int
    http_port: int
    config: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


class NatsCluster:
    """``nodes`` nats-server processes routed into one JetStream cluster."""

    def __init__(self, workdir: Path, nodes: int = 3, name: str = "streamdet-test") -> None:
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        if not Path(binary).exists():
            raise RuntimeError("nats-server is missing: scripts/install-system-deps.sh installs it")
        self.binary, self.workdir = binary, workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.nodes = [
            Node(f"n{i}", free_port(), free_port(), free_port(), workdir / f"n{i}.conf")
            for i in range(1, nodes + 1)
        ]
        for node in self.nodes:
            routes = ", ".join(
                f"nats-route://127.0.0.1:{other.cluster_port}"
                for other in self.nodes
                if other is not node
            )
            store = workdir / node.name
            cluster = (
                f"cluster {{\n  name: {name}\n  listen: 127.0.0.1:{node.cluster_port}\n"
                f"  routes: [{routes}]\n}}\n"
                if nodes > 1
                else ""
            )
            node.config.write_text(
                f"server_name: {node.name}\nlisten: 127.0.0.1:{node.port}\n"
                f"http: 127.0.0.1:{node.http_port}\n"
                f"jetstream {{\n  store_dir: {store}\n  max_memory_store: 64MB\n"
                f"  max_file_store: 1GB\n}}\n{cluster}"
            )

    @property
    def urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    def start(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            self._spawn(node)
        self.wait_healthy(timeout)

    def _spawn(self, node: Node) -> None:
        log = (self.workdir / f"{node.name}.log").open("ab")
        node.proc = subprocess.Popen(
            [self.binary, "-c", str(node.config)], stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def wait_healthy(self, timeout: float = 30.0, nodes: list[Node] | None = None) -> None:
        deadline = time.monotonic() + timeout
        for node in nodes or [n for n in self.nodes if n.proc is not None]:
            while not self._healthy(node):
                if node.proc is not None and node.proc.poll() is not None:
                    raise RuntimeError(f"nats-server {node.name} exited: {self.log(node)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nats-server {node.name} not healthy: {self.log(node)}")
                time.sleep(0.1)

    @staticmethod
    def _healthy(node: Node) -> bool:
        try:
            url = f"http://127.0.0.1:{node.http_port}/healthz"
            with urllib.request.urlopen(url, timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def log(self, node: Node) -> str:
        path = self.workdir / f"{node.name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def kill(self, index: int) -> None:
        """SIGKILL node ``index`` (0-based): no goodbye to the others."""
        proc = self.nodes[index].proc
        if proc is not None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            self.nodes[index].proc = None

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None:
                end_process(node.proc)
                node.proc = None

    def __enter__(self) -> NatsCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
