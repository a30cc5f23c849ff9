"""The aiohttp server: Prometheus ``/metrics``, ``/healthz``, ``/readyz`` and ``/api/cameras``.

Bound to 127.0.0.1 by default. Everything it returns is built from the stages' status snapshots,
which never carry credentials.
"""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streamdet.capture.stage import CameraStatus, CaptureStage
from streamdet.frames import SourceState
from streamdet.inference.detector import DetectorStatus
from streamdet.inference.stage import InferenceStage

CAPTURE: web.AppKey[CaptureStage] = web.AppKey("capture", CaptureStage)
INFERENCE: web.AppKey[InferenceStage] = web.AppKey("inference", InferenceStage)
REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry", CollectorRegistry)


def build_app(
    capture: CaptureStage, inference: InferenceStage, registry: CollectorRegistry
) -> web.Application:
    app = web.Application()
    app[CAPTURE], app[INFERENCE], app[REGISTRY] = capture, inference, registry
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/cameras", cameras)
    return app


async def metrics(request: web.Request) -> web.Response:
    body = generate_latest(request.app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready when every camera has started and every model is loaded or being learned."""
    problems = [
        f"{s.name}: capture {s.state.value}"
        for s in request.app[CAPTURE].status()
        if s.state in (SourceState.NOT_STARTED, SourceState.FAILED)
    ]
    problems += [
        f"{d.camera}: model {d.state.value}" + (f" ({d.error})" if d.error else "")
        for d in request.app[INFERENCE].status()
        if d.state.value in ("failed", "no_model")
    ]
    status = 503 if problems else 200
    return web.json_response({"ready": not problems, "problems": problems}, status=status)


async def cameras(request: web.Request) -> web.Response:
    inference = request.app[INFERENCE]
    models = {d.camera: d for d in inference.status()}
    body = [_camera_json(s, models.get(s.name), inference) for s in request.app[CAPTURE].status()]
    return web.json_response({"cameras": body})


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _camera_json(
    s: CameraStatus, model: DetectorStatus | None, inference: InferenceStage
) -> dict[str, Any]:
    latest = inference.latest.get(s.name)
    return {
        "name": s.name,
        "source": s.source,
        "state": s.state.value,
        "fps": round(s.fps, 2),
        "frames": s.frames,
        "analysed": inference.analysed.get(s.name, 0),
        "reconnects": s.reconnects,
        "stalls": s.stalls,
        "codec": s.codec,
        "resolution": s.resolution,
        "seconds_since_frame": s.seconds_since_frame,
        "last_error": s.errors[-1] if s.errors else None,
        "errors": list(s.errors),
        "model": None
        if model is None
        else {
            "kind": model.kind,
            "state": model.state.value,
            "threshold": _finite(model.threshold),
            "learn_progress": round(model.learn_progress, 3),
            "error": model.error,
        },
        "score": None if latest is None else round(latest.smoothed, 4),
        "above_threshold": None if latest is None else latest.above,
        "latency_s": None if latest is None else round(latest.latency_s, 4),
    }
