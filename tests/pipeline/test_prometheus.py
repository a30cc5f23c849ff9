"""streamdet against a real Prometheus: every dashboard query returns data, promtool is happy.

One App with two synthetic cameras (learning in place, then detecting) is scraped every second
by a real ``prometheus`` that also evaluates the shipped alert rules; each PromQL expression of
``deploy/grafana/streamdet.json`` must run and return series, and every rule must evaluate
cleanly on metrics the App really exports. ``promtool`` lints a live ``/metrics`` scrape, the
shipped scrape config, and the alert rules, and runs the rules' unit tests.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamdet.frames import ModelState
from tests.support.pipeline import Running, pipeline_config
from tests.support.prometheus import Prometheus, PrometheusError, binary
from tests.support.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "streamdet.json"
SCRAPE_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERT_RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
# An alert that fires whenever a camera is up, so that the dashboard's firing-alerts panel has
# a real ALERTS series to show while the pipeline is healthy.
ALWAYS_FIRING = """\
groups:
  - name: dashboard-check
    rules:
      - alert: StreamdetDashboardCheck
        expr: streamdet_camera_up == 1
        labels:
          severity: warning
"""
CAMERAS = ("cam-0", "cam-1")
# Grafana's interval variables, as a Prometheus scraping every second can answer them: a window
# holds ~10 samples, enough for rate() a few seconds after a series appears.
INTERVALS = {"__rate_interval": "10s", "__interval": "2s", "__range": "30s"}
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


@dataclass(frozen=True)
class Query:
    panel: str
    ref: str
    expr: str

    def __str__(self) -> str:
        return f"{self.panel!r} {self.ref}: {self.expr}"


@dataclass
class Live:
    run: Running
    prometheus: Prometheus


def dashboard_queries(dashboard: dict[str, Any]) -> list[Query]:
    """Every panel target's PromQL, including panels nested in (collapsed) rows."""
    queries = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                queries.append(Query(inner["title"], target["refId"], target["expr"]))
    return queries


def substitute(expr: str, camera: str) -> str:
    """Replace Grafana's template variables; an unknown one fails the test by name."""

    def value(match: re.Match[str]) -> str:
        name = next(group for group in match.groups() if group)
        if name == "camera":
            return camera
        if name in INTERVALS:
            return INTERVALS[name]
        raise AssertionError(f"dashboard variable ${name} has no test value: {expr}")

    return VARIABLE.sub(value, expr)


def problems(prometheus: Prometheus, queries: list[Query], camera: str) -> list[str]:
    """What is wrong with each query (an error or no series), for one camera selection."""
    found = []
    for query in queries:
        try:
            result = prometheus.query(substitute(query.expr, camera))
        except PrometheusError as exc:
            found.append(f"{query} -> error {exc}")
            continue
        if not result:
            found.append(f"{query} -> no series (camera={camera})")
    return found


def scrapes(prometheus: Prometheus) -> int:
    result = prometheus.query('count_over_time(up{job="streamdet"}[1m])')
    return int(float(result[0]["value"][1])) if result else 0


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """One App, detecting on both cameras, scraped by a real Prometheus for several seconds.

    Bounded: at most 60 s of waiting in all; ~10 s usually (6 s of learning in place).
    """
    tmp = tmp_path_factory.mktemp("prometheus")
    with Running(pipeline_config(tmp / "models")) as run:
        assert run.app.url is not None, "the app did not serve"
        target = run.app.url.removeprefix("http://")
        check = tmp / "dashboard-check.yml"
        check.write_text(ALWAYS_FIRING)
        rules = (ALERT_RULES, check)
        with Prometheus(target, tmp / "prometheus", rule_files=rules) as prometheus:
            states = run.app.inference.status
            wait_for(lambda: {s.state for s in states()} == {ModelState.DETECTING}, 30, "detecting")
            analysed = run.app.inference.analysed
            wait_for(lambda: all(analysed[c] >= 5 for c in CAMERAS), 10, "scores")
            wait_for(lambda: scrapes(prometheus) >= 5, 10, "five scrapes")
            yield Live(run, prometheus)


def test_prometheus_answers_every_dashboard_query_with_data(live: Live) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = dashboard_queries(dashboard)
    assert len(queries) >= 20, "the dashboard lost its panels"
    up = live.prometheus.query('up{job="streamdet"}')
    assert up and up[0]["value"][1] == "1", f"scrape failing:\n{live.prometheus.log_tail()}"
    # The camera variable's own query: label_values(streamdet_frames_decoded_total, camera).
    values = live.prometheus.api(
        "label/camera/values", **{"match[]": "streamdet_frames_decoded_total"}
    )
    assert set(values) == set(CAMERAS)

    # rate() over a window needs two samples of a series that only began with detecting: poll.
    def failing() -> list[str]:
        both = problems(live.prometheus, queries, ".*")
        return both + problems(live.prometheus, queries, "cam-1")

    started, left = time.monotonic(), failing()
    while left and time.monotonic() - started < 20:
        time.sleep(1)
        left = failing()
    assert not left, "dashboard queries failed:\n" + "\n".join(left)


def test_prometheus_promtool_finds_no_problems_in_a_live_metrics_scrape(live: Live) -> None:
    status, text = live.run.get("/metrics")
    assert status == 200 and "streamdet_capture_to_score_seconds_bucket" in text
    lint = subprocess.run(
        [binary("promtool"), "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert lint.returncode == 0 and not (lint.stdout + lint.stderr).strip(), (
        f"promtool check metrics (exit {lint.returncode}):\n{lint.stdout}{lint.stderr}"
    )


def test_prometheus_scrape_config_passes_promtool_check_config() -> None:
    check = subprocess.run(
        [binary("promtool"), "check", "config", str(SCRAPE_CONFIG)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert check.returncode == 0 and "SUCCESS" in check.stdout, check.stdout + check.stderr
    assert "127.0.0.1:8686" in SCRAPE_CONFIG.read_text()


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERT_RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ALERT_RULES.parent,
    )


def test_prometheus_alert_rules_pass_promtool_check_and_their_unit_tests() -> None:
    check = promtool("check", "rules", ALERT_RULES.name)
    assert check.returncode == 0 and "SUCCESS" in check.stdout, check.stdout + check.stderr
    # promtool test rules fails when an expected alert does not fire (or an unexpected one
    # does) at the times alerts_test.yml gives, with its labels and annotations.
    tests = promtool("test", "rules", ALERT_TESTS.name)
    assert tests.returncode == 0 and "SUCCESS" in tests.stdout, tests.stdout + tests.stderr
    # ...but says nothing of rules it has no case for: each alert must fire in one of them.
    cases = yaml.safe_load(ALERT_TESTS.read_text())["tests"]
    fired = {
        step["alertname"]
        for case in cases
        for step in case["alert_rule_test"]
        if step.get("exp_alerts")
    }
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) >= 12, "the rules file lost its alerts"
    assert sorted(set(names) - fired) == [], "alerts without a firing case in alerts_test.yml"
    assert ALERT_RULES.name in yaml.safe_load(SCRAPE_CONFIG.read_text())["rule_files"]


def test_prometheus_evaluates_every_alert_rule_on_metrics_the_app_exports(live: Live) -> None:
    status, text = live.run.get("/metrics")
    assert status == 200
    exported = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    for rule in alert_rules():
        used = set(re.findall(r"\bstreamdet_\w+", rule["expr"]))
        assert used <= exported, f"{rule['alert']}: not exported: {used - exported}"

    # The real server loaded the shipped file and evaluated each rule (every second) without
    # an error; none fires on this healthy pipeline (a `for` one may be pending: the models were
    # learning when the server started, and this machine is small).
    def evaluated() -> dict[str, dict[str, Any]]:
        groups = live.prometheus.api("rules", type="alert")["groups"]
        rules = [r for g in groups if g["file"] == str(ALERT_RULES) for r in g["rules"]]
        return {r["name"]: r for r in rules if not r["lastEvaluation"].startswith("0001")}

    wait_for(lambda: len(evaluated()) == len(alert_rules()), 10, "every rule evaluated")
    rules = evaluated()
    assert {name: r["health"] for name, r in rules.items() if r["health"] != "ok"} == {}
    assert {name: r["state"] for name, r in rules.items() if r["state"] == "firing"} == {}
