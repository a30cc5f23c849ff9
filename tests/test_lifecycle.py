"""Start in order, stop in reverse, every stop attempted even when one fails."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from streamdet.app import App
from streamdet.config import parse_config
from streamdet.errors import StreamdetError
from streamdet.lifecycle import Lifecycle, StopErrors, stop_all


class Part:
    def __init__(self, name: str, log: list[str], fail_stop: bool = False) -> None:
        self.name, self.log, self.fail_stop = name, log, fail_stop

    def start(self) -> None:
        self.log.append(f"start {self.name}")

    async def stop(self) -> None:
        self.log.append(f"stop {self.name}")
        if self.fail_stop:
            raise RuntimeError(f"{self.name} could not stop")


def test_a_stop_that_raises_does_not_keep_the_others_from_stopping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log: list[str] = []
    parts = [Part("capture", log), Part("alerting", log, fail_stop=True), Part("server", log)]

    async def scenario() -> None:
        life = Lifecycle("stopping the pipeline")
        for part in parts:
            await life.start(part.name, part.start, part.stop)
        await life.stop()

    with caplog.at_level(logging.ERROR), pytest.raises(StopErrors) as raised:
        asyncio.run(scenario())
    assert log == [
        "start capture",
        "start alerting",
        "start server",
        "stop server",
        "stop alerting",
        "stop capture",  # stopped although alerting's stop failed
    ]
    assert raised.value.steps == ["alerting"]
    assert [str(e) for e in raised.value.exceptions] == ["alerting could not stop"]
    assert isinstance(raised.value, StreamdetError)  # the CLI prints it as an error line
    assert "stopping the pipeline: alerting failed" in caplog.text


def test_every_failing_stop_is_collected_and_a_second_stop_does_nothing() -> None:
    log: list[str] = []

    async def scenario() -> None:
        life = Lifecycle()
        await life.start("a", lambda: None, Part("a", log, fail_stop=True).stop)
        await life.start("b", lambda: None, Part("b", log, fail_stop=True).stop)
        with pytest.raises(StopErrors) as raised:
            await life.stop()
        assert raised.value.steps == ["b", "a"]
        await life.stop()  # idempotent

    asyncio.run(scenario())
    assert log == ["stop b", "stop a"]


def test_a_start_that_fails_stops_what_had_started_and_raises_its_error() -> None:
    log: list[str] = []

    def broken() -> None:
        raise OSError("port in use")

    async def scenario() -> None:
        life = Lifecycle()
        await life.start("capture", Part("capture", log).start, Part("capture", log).stop)
        await life.start("server", broken, Part("server", log).stop)

    with pytest.raises(OSError, match="port in use"):
        asyncio.run(scenario())
    assert log == ["start capture", "stop capture"]


def test_stop_all_runs_sync_and_async_steps_in_the_order_given() -> None:
    log: list[str] = []

    async def later() -> None:
        log.append("async")

    asyncio.run(stop_all([("one", lambda: log.append("sync")), ("two", later)]))
    assert log == ["sync", "async"]


def test_the_app_stops_inference_and_capture_although_a_sink_cannot_close(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A sink whose ``close`` raises: before, ``App.stop`` skipped the stages after it."""
    config = parse_config(
        {
            "cameras": [{"name": "door", "source": {"kind": "synthetic", "seed": 1}}],
            "models": {"dir": str(tmp_path / "models"), "learn_in_place": False},
            "alerts": {"dir": str(tmp_path / "events")},
            "server": {"enabled": False},
        }
    )
    app = App(config)

    async def refuse() -> None:
        raise OSError("the sink's file system went read-only")

    async def scenario() -> None:
        await app.start()
        app.alerts.sinks[0].close = refuse  # type: ignore[method-assign]
        await asyncio.sleep(0.2)
        assert app.capture.worker("door").is_alive()
        await app.stop()

    with caplog.at_level(logging.ERROR), pytest.raises(StopErrors) as raised:
        asyncio.run(scenario())
    assert raised.value.steps == ["alerting"]
    assert not app.capture.worker("door").is_alive()  # capture was still stopped
    assert app.inference._thread is None  # and inference
    assert app.alerts.store is None  # and the rest of alerting (the store closed)
    assert "stopping alerting: sink jsonl failed" in caplog.text
