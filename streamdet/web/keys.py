"""Typed keys for what the aiohttp application carries (the stages it reports on)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from streamdet.alert.stage import AlertStage
from streamdet.capture.stage import CaptureStage
from streamdet.inference.stage import InferenceStage
from streamdet.reload import ReloadResult

Reloader = Callable[[], Awaitable[ReloadResult]]
FleetView = Callable[[], dict[str, Any]]  # the fleet worker's snapshot (fleet mode)

CAPTURE: web.AppKey[CaptureStage] = web.AppKey("capture", CaptureStage)
INFERENCE: web.AppKey[InferenceStage] = web.AppKey("inference", InferenceStage)
ALERTS: web.AppKey[AlertStage] = web.AppKey("alerts", AlertStage)
REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry", CollectorRegistry)
RELOAD: web.AppKey[Reloader] = web.AppKey("reload")
FLEET: web.AppKey[FleetView] = web.AppKey("fleet")
