"""A real aiohttp server on 127.0.0.1, run on its own thread for the length of a test."""

from __future__ import annotations

import asyncio
import threading

from aiohttp import web


class ThreadedApp:
    """Serves ``app`` on a free 127.0.0.1 port; use as a context manager; ``port`` is set inside."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-http", daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(self.app)
        self._loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> ThreadedApp:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the test HTTP server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class Receiver:
    """A webhook receiver that answers 503 until ``up`` is set, then records each delivery."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, object]]] = []
        self.refused = 0
        self.up = threading.Event()
        self.app = web.Application()
        self.app.router.add_post("/hook", self._hook)

    async def _hook(self, request: web.Request) -> web.Response:
        if not self.up.is_set():
            self.refused += 1
            return web.Response(status=503)
        self.received.append((request.headers["Idempotency-Key"], await request.json()))
        return web.Response(status=204)
