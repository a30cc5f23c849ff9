"""Error answers of the API: JSON ``{"error": ..., "detail": ...}``, as the 401s are."""

from __future__ import annotations

import json

from aiohttp import web


def bad_request(detail: str) -> web.HTTPBadRequest:
    """A 400 to raise; ``detail`` names what was wrong (the parameter, the body's problem)."""
    body = json.dumps({"error": "bad request", "detail": detail})
    return web.HTTPBadRequest(text=body, content_type="application/json")
