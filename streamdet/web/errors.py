"""Error answers of the API: JSON ``{"error": ..., "detail": ...}``, as the 401s are."""

from __future__ import annotations

import json

from aiohttp import web


def _body(error: str, detail: str) -> str:
    return json.dumps({"error": error, "detail": detail})


def bad_request(detail: str) -> web.HTTPBadRequest:
    """A 400 to raise; ``detail`` names what was wrong (the parameter, the body's problem)."""
    return web.HTTPBadRequest(text=_body("bad request", detail), content_type="application/json")


def conflict(detail: str) -> web.HTTPConflict:
    """A 409 to raise when the request is well-formed but cannot apply now (a run without a
    config file to reload, an event without the features to learn from); ``detail`` says why."""
    return web.HTTPConflict(text=_body("conflict", detail), content_type="application/json")


def unavailable(detail: str) -> web.HTTPServiceUnavailable:
    """A 503 to raise when a bound is reached (viewers); ``detail`` says which and what to do."""
    body = _body("unavailable", detail)
    return web.HTTPServiceUnavailable(text=body, content_type="application/json")
