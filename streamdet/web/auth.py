"""Optional bearer token for every route but ``/healthz``.

Clients send ``Authorization: Bearer <token>``; a browser opening the page, whose ``<img>`` and
links cannot carry a header, may send ``?token=<token>`` instead (the page passes it on).
Prometheus sends the header when its scrape config has ``authorization: {credentials: ...}``, so
``/metrics`` is protected too. The token is compared in constant time and never logged.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import SecretStr

OPEN_PATHS = frozenset({"/healthz"})  # liveness probes carry no credentials


def _digest(value: str) -> bytes:
    # Comparing fixed-length digests keeps the comparison's time independent of the length too.
    return hashlib.sha256(value.encode()).digest()


def _presented(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return request.query.get("token")


def _unauthorized(reason: str) -> web.Response:
    return web.json_response(
        {
            "error": "unauthorized",
            "detail": f"{reason}: send 'Authorization: Bearer <token>' "
            "(or add ?token=<token> to the page's address)",
        },
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="streamdet"'},
    )


def bearer_token(token: SecretStr) -> Middleware:
    """A middleware that lets a request through only with ``token``."""
    expected = _digest(token.get_secret_value())

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS:
            return await handler(request)
        presented = _presented(request)
        if presented is None:
            return _unauthorized("a token is required")
        if not hmac.compare_digest(_digest(presented), expected):
            return _unauthorized("wrong token")
        return await handler(request)

    return check
