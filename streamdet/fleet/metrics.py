"""The fleet's figures on /metrics, read from the worker's ``snapshot()`` at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class FleetCollector(Collector):
    """``streamdet_fleet_members``, ``streamdet_fleet_cameras`` (this worker's, and the
    fleet's list), ``streamdet_fleet_assignment_changes_total``."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        view = self._snapshot()
        worker = view["worker"]
        members = GaugeMetricFamily(
            "streamdet_fleet_members", "Live workers of the fleet, as this one sees them."
        )
        members.add_metric([], len(view["members"]))
        yield members
        cameras = GaugeMetricFamily(
            "streamdet_fleet_cameras",
            "Cameras this worker runs (scope=worker) and in the fleet's list (scope=fleet).",
            labels=["worker", "scope"],
        )
        cameras.add_metric([worker, "worker"], len(view["running"]))
        cameras.add_metric([worker, "fleet"], len(view["cameras"]))
        yield cameras
        changes = CounterMetricFamily(
            "streamdet_fleet_assignment_changes",
            "Cameras whose worker changed (a member came or went), as this worker saw it.",
            labels=["worker"],
        )
        changes.add_metric([worker], view["assignment_changes"])
        yield changes
