"""A real Prometheus server on 127.0.0.1 for the tests, scraping one target every second
(and evaluating the rule files it is given as often).

Debian's ``prometheus`` package (installed by ``make test``) provides ``prometheus`` and
``promtool``. A missing binary fails the test: skipping would hide that the dashboard and the
metrics were never checked against the real thing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.servers import free_port

CONFIG = """\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: {rules}
scrape_configs:
  - job_name: {job}
    scrape_interval: 1s
    scrape_timeout: 1s
    metrics_path: /metrics
    static_configs:
      - targets: ["{target}"]
"""


def binary(name: str) -> str:
    """The path of ``prometheus`` or ``promtool``; fails (never skips) when it is missing."""
    path = shutil.which(name)
    if path is None:
        raise AssertionError(
            f"`{name}` not found: run `make test`, which installs Debian's prometheus package"
            " (scripts/install-system-deps.sh)"
        )
    return path


class Prometheus:
    """A ``prometheus`` process with its own config and TSDB under ``workdir``.

    Use as a context manager: the process is always stopped on exit (terminate, then kill).
    """

    def __init__(
        self,
        target: str,
        workdir: Path,
        job: str = "streamdet",
        rule_files: tuple[Path, ...] = (),
    ) -> None:
        self.target = target  # host:port serving /metrics
        self.job = job
        self.rule_files = rule_files  # evaluated every second, like the scrapes
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        rules = json.dumps([str(path) for path in self.rule_files])  # JSON is YAML
        config.write_text(CONFIG.format(job=self.job, target=self.target, rules=rules))
        args = [
            binary("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        with self.log_path.open("wb") as log:  # a file, not a pipe: nothing can fill up
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        try:
            self._wait_ready(timeout)
        except BaseException:  # including Ctrl-C: never leave the process behind
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self._ready():
                return
            time.sleep(0.1)
        raise AssertionError(f"prometheus did not become ready in {timeout} s:\n{self.log_tail()}")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>``; returns ``data`` or raises with Prometheus' own error."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # 400/422 carry a JSON error body
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise PrometheusError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; the result as a list (a scalar becomes a one-item list)."""
        data = self.api("query", query=expr)
        result = data["result"]
        return result if data["resultType"] in ("vector", "matrix") else [{"value": result}]

    def __enter__(self) -> Prometheus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PrometheusError(Exception):
    """A query Prometheus rejected (bad PromQL, unknown function, ...)."""
