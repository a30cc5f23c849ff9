"""The aiohttp server: Prometheus ``/metrics``, ``/healthz``, ``/readyz``, the JSON API (with
``POST /api/events/{id}/normal``, an operator's feedback) and the live view (the page, MJPEG and
WebRTC).

Bound to 127.0.0.1 by default; with ``server.token`` every route but ``/healthz`` wants it.
Everything it returns is built from the stages' read-only snapshots (``status()``,
``snapshot()``), which never carry credentials.
"""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streamdet.alert.stage import AlertStage
from streamdet.alert.store import EventStore
from streamdet.capture.stage import CameraStatus, CaptureStage
from streamdet.config import ServerConfig
from streamdet.errors import ConfigError, ModelError
from streamdet.frames import SourceState
from streamdet.inference.stage import InferenceStage
from streamdet.log import redact
from streamdet.snapshots import ModelSnapshot
from streamdet.web import liveview, webrtc
from streamdet.web.auth import bearer_token
from streamdet.web.errors import bad_request, conflict, unavailable
from streamdet.web.keys import (
    ALERTS,
    CAPTURE,
    FLEET,
    INFERENCE,
    REGISTRY,
    RELOAD,
    FleetView,
    Reloader,
)


def build_app(
    capture: CaptureStage,
    inference: InferenceStage,
    alerts: AlertStage,
    registry: CollectorRegistry,
    config: ServerConfig,
    *,
    reload: Reloader | None = None,
    fleet: FleetView | None = None,
) -> web.Application:
    """The routes; ``reload`` re-reads the config for ``POST /api/reload`` (None: no file);
    ``fleet`` is the fleet worker's snapshot for ``/api/fleet`` (None: not in fleet mode)."""
    middlewares = [] if config.token is None else [bearer_token(config.token)]
    app = web.Application(middlewares=middlewares)
    app[CAPTURE], app[INFERENCE], app[REGISTRY] = capture, inference, registry
    app[ALERTS] = alerts
    if reload is not None:
        app[RELOAD] = reload
    if fleet is not None:
        app[FLEET] = fleet
    app.router.add_get("/api/fleet", fleet_view)
    app.router.add_post("/api/reload", reload_config)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/cameras", cameras)
    app.router.add_get("/api/events", events)
    app.router.add_get("/api/events/{id}", event)
    app.router.add_get("/api/events/{id}/snapshot.jpg", snapshot)
    app.router.add_get("/api/events/{id}/clip.mp4", clip)
    app.router.add_post("/api/events/{id}/normal", mark_normal)
    app[liveview.MJPEG] = liveview.MjpegViewers(config.mjpeg)
    app.router.add_get("/api/cameras/{name}/mjpeg", liveview.mjpeg)
    if config.webrtc.enabled:
        webrtc.add_routes(app, config.webrtc)
    app.router.add_get("/", liveview.page)
    return app


def _store(request: web.Request) -> EventStore:
    store = request.app[ALERTS].store
    if store is None:
        raise web.HTTPServiceUnavailable(text="the event store is not open")
    return store


def _number(request: web.Request, key: str) -> float | None:
    """The finite number ``?key=`` carries, or None without one; a 400 naming ``key`` else."""
    raw = request.query.get(key)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise bad_request(f"{key}: expected a finite number, got {raw!r}")
    return value


def _integer(request: web.Request, key: str, default: int, low: int, high: int) -> int:
    """The whole number ``?key=`` carries, from ``low`` to ``high``; a 400 naming ``key`` else.
    Digits only: ``float()`` would let nan, inf and 1e30 through to SQLite."""
    raw = request.query.get(key)
    if raw is None:
        return default
    if not re.fullmatch(r"[0-9]{1,12}", raw) or not low <= int(raw) <= high:
        raise bad_request(f"{key}: expected a whole number from {low} to {high}, got {raw!r}")
    return int(raw)


MAX_OFFSET = 1_000_000_000  # far past any store's size, far below SQLite's 64-bit limit


EVENT_KINDS = ("anomaly", "health")


async def events(request: web.Request) -> web.Response:
    """``?camera=&since=&until=`` (unix seconds), ``&limit=`` (1..500, default 50), ``&offset=``,
    ``&kind=`` (anomaly or health)."""
    limit = _integer(request, "limit", 50, 1, 500)
    offset = _integer(request, "offset", 0, 0, MAX_OFFSET)
    kind = request.query.get("kind")
    if kind is not None and kind not in EVENT_KINDS:
        raise bad_request(f"kind: expected one of {', '.join(EVENT_KINDS)}, got {kind!r}")
    rows = await asyncio.to_thread(  # SQLite: off the event loop
        _store(request).events,
        camera=request.query.get("camera"),
        since=_number(request, "since"),
        until=_number(request, "until"),
        limit=limit,
        offset=offset,
        kind=kind,
    )
    return web.json_response({"events": rows, "limit": limit, "offset": offset})


async def _event_or_404(request: web.Request) -> dict[str, Any]:
    # ids are validated by the store; SQLite runs off the event loop
    found = await asyncio.to_thread(_store(request).get, request.match_info["id"])
    if found is None:
        raise web.HTTPNotFound(text="no such event")
    return found


async def event(request: web.Request) -> web.Response:
    return web.json_response(await _event_or_404(request))


async def snapshot(request: web.Request) -> web.FileResponse:
    found = await _event_or_404(request)
    if not found["snapshot"]:
        raise web.HTTPNotFound(text="this event has no snapshot (yet)")
    # The path comes from our own store, never from the request.
    return web.FileResponse(Path(found["snapshot"]), headers={"Content-Type": "image/jpeg"})


async def clip(request: web.Request) -> web.FileResponse:
    """The event's MP4; it exists once the event has ended and its post-roll has passed."""
    found = await _event_or_404(request)
    if not found["clip"]:
        raise web.HTTPNotFound(text="this event has no clip (yet)")
    return web.FileResponse(Path(found["clip"]), headers={"Content-Type": "video/mp4"})


async def reload_config(request: web.Request) -> web.Response:
    """Read the config file again and apply its cameras (``App.reload``): 200 with what
    changed, or 400 naming every problem of a file that was refused (nothing changed then)."""
    reload = request.app.get(RELOAD)
    if reload is None:
        raise conflict("this run has no config file to read again (the built-in demo)")
    try:
        result = await reload()
    except ConfigError as exc:
        body = {
            "error": "invalid configuration",
            "detail": redact(str(exc)),
            "problems": [redact(p) for p in exc.problems],
        }
        return web.json_response(body, status=400)
    return web.json_response(result.as_dict())


TEACH_TIMEOUT_S = 15.0  # the inference thread answers between two batches


async def mark_normal(request: web.Request) -> web.Response:
    """An operator says the event was normal: its camera's model learns the event's unusual
    objects (kept with the event) as normal, saves its checkpoint, and the event is marked
    ``feedback: normal``. 404 for no such event; 409 for one that cannot be taught (no object
    features: another model kind, still open, from before the feature)."""
    store = _store(request)
    found = await _event_or_404(request)
    if found["feedback"] == "normal":  # asked twice (a double click): taught once
        return web.json_response({**found, "taught_objects": 0})
    if found["end"] is None:
        raise conflict("the event is still open: mark it normal once it has ended")
    rows = await asyncio.to_thread(store.features, found["id"])
    if rows is None:
        raise conflict(
            "this event has no object features to learn from (its model is not kind objects,"
            " or it was recorded before events kept them, or its run stopped while it was open)"
        )
    try:
        answer = request.app[INFERENCE].teach(found["camera"], rows)
        taught = await asyncio.wait_for(asyncio.wrap_future(answer), TEACH_TIMEOUT_S)
    except ModelError as exc:
        raise conflict(f"cannot teach camera {found['camera']!r}: {exc}") from None
    except TimeoutError:
        raise unavailable("the inference stage did not answer: is the pipeline running?") from None
    await asyncio.to_thread(store.set_feedback, found["id"], "normal")
    return web.json_response({**await _event_or_404(request), "taught_objects": taught})


async def fleet_view(request: web.Request) -> web.Response:
    """Fleet mode: the members, which camera runs where and since when; 404 otherwise."""
    view = request.app.get(FLEET)
    if view is None:
        raise web.HTTPNotFound(text="fleet mode is off (fleet.enabled: false)")
    return web.json_response(view())


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
        for d in request.app[INFERENCE].snapshot().cameras
        if d.state.value in ("failed", "no_model")
    ]
    status = 503 if problems else 200
    return web.json_response({"ready": not problems, "problems": problems}, status=status)


async def cameras(request: web.Request) -> web.Response:
    models = {d.camera: d for d in request.app[INFERENCE].snapshot().cameras}
    health = request.app[ALERTS].snapshot().health
    body = [
        {**_camera_json(s, models.get(s.name)), "health": health.get(s.name)}
        for s in request.app[CAPTURE].status()
    ]
    return web.json_response({"cameras": body})


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _camera_json(s: CameraStatus, model: ModelSnapshot | None) -> dict[str, Any]:
    latest = None if model is None else model.latest
    return {
        "name": s.name,
        "source": s.source,
        "state": s.state.value,
        "fps": round(s.fps, 2),
        "frames": s.frames,
        "started": round(s.started, 3),  # a camera restarted by a reload gets a new one
        "analysed": 0 if model is None else model.analysed,
        "reconnects": s.reconnects,
        "stalls": s.stalls,
        "codec": s.codec,
        "resolution": s.resolution,
        "seconds_since_frame": s.seconds_since_frame,
        "last_error": s.errors[-1] if s.errors else None,
        "errors": list(s.errors),
        "record": None if s.record is None else s.record.as_json(),  # the record stream
        "model": None
        if model is None
        else {
            "kind": model.kind,
            "state": model.state.value,
            "threshold": _finite(model.threshold),
            "learn_progress": round(model.learn_progress, 3),
            "error": model.error,
            "note": model.note,
            "learned": model.learned,  # objects: {"online": n, "taught": n} rows so far
        },
        "score": None if latest is None else round(latest.smoothed, 4),
        "above_threshold": None if latest is None else latest.above,
        "latency_s": None if latest is None else round(latest.latency_s, 4),
    }
