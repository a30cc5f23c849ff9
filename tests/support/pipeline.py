"""A whole App on a background thread for a test to poke at (``Running``), and the two
synthetic cameras most pipeline tests run (``pipeline_config``)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import aiohttp

from streamdet.app import App
from streamdet.config import Config, parse_config
from tests.support.waiting import wait_for


def pipeline_config(models_dir: Path, **models: Any) -> Config:
    cameras = [
        {
            "name": f"cam-{i}",
            "source": {"kind": "synthetic", "seed": i, "width": 160, "height": 120},
            # cam-1 keeps colour frames: the models still see grey
            "frame": {"width": 160, "height": 120, "color": "bgr" if i else "grey"},
            "analysis_fps": 5,
        }
        for i in range(2)
    ]
    return parse_config(
        {
            "cameras": cameras,
            "models": {"dir": str(models_dir), "kind": "motion", "learn_seconds": 6, **models},
            "alerts": {"dir": str(models_dir.parent / "events")},
            "server": {"port": 0},
        }
    )


class Running:
    """An App running its asyncio loop on a background thread, for a test to poke at."""

    def __init__(self, config: Config, config_path: Path | None = None) -> None:
        self.app = App(config, config_path=config_path)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.done = threading.Event()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.app.start())
            self.loop.run_forever()
            self.loop.run_until_complete(self.app.stop())
        finally:
            self.done.set()

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        return self.request("GET", path, headers)

    def post(self, path: str) -> tuple[int, str]:
        return self.request("POST", path, timeout=20)

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, timeout: float = 5
    ) -> tuple[int, str]:
        async def fetch() -> tuple[int, str]:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
                session.request(method, f"{self.app.url}{path}", headers=headers) as response,
            ):
                return response.status, (await response.read()).decode(errors="replace")

        return asyncio.run_coroutine_threadsafe(fetch(), self.loop).result(timeout + 10)

    def __enter__(self) -> Running:
        self.thread.start()
        wait_for(lambda: self.app.url is not None or self.done.is_set(), 20, "the server")
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        assert self.done.wait(20), "the app did not stop"
        self.thread.join(5)
