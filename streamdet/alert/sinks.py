"""Where events go: a JSON Lines file, webhooks, MQTT and NATS JetStream (``nats_sink``).
Each sink is isolated.

A dispatcher task per sink takes the deliveries its sink still owes from the store's outbox,
oldest first, woken by the store when one is due (no polling); a failure is retried later
with capped exponential backoff plus jitter, and never
holds up capture, scoring or the other sinks. Every delivery carries an idempotency key (event
id + revision): a receiver that saw it before can drop the duplicate.

``make_sink`` is the registry from config kind to sink, as ``make_source`` is for sources:
every kind is built the same way, ``build(config, base_dir)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import aiomqtt

from streamdet.alert.nats_sink import NatsSink
from streamdet.alert.sinkerror import SinkError
from streamdet.alert.store import Delivery, EventStore
from streamdet.config import JsonlSinkConfig, MqttSinkConfig, SinkConfig, WebhookSinkConfig
from streamdet.handoff import Wakeup
from streamdet.log import redact

logger = logging.getLogger(__name__)


class Sink(Protocol):
    name: str

    async def deliver(self, delivery: Delivery) -> None: ...

    async def close(self) -> None: ...


class JsonlSink:
    """Appends one JSON object per line and syncs it to disk."""

    def __init__(self, name: str, path: Path) -> None:
        self.name, self.path = name, path
        path.parent.mkdir(parents=True, exist_ok=True)

    @classmethod
    def build(cls, config: JsonlSinkConfig, base_dir: Path) -> JsonlSink:
        """The sink ``config`` describes; a relative path is under ``base_dir`` (alerts.dir)."""
        return cls(
            config.name, config.path if config.path.is_absolute() else base_dir / config.path
        )

    async def deliver(self, delivery: Delivery) -> None:
        line = json.dumps({"idempotency_key": delivery.key, **delivery.payload}) + "\n"
        await asyncio.to_thread(self._append, line)

    def _append(self, line: str) -> None:
        try:
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
        except OSError as exc:
            raise SinkError(f"{self.path}: {exc.strerror or exc}") from exc

    async def close(self) -> None:
        """Nothing stays open between deliveries."""


class WebhookSink:
    """POSTs each delivery as JSON with an ``Idempotency-Key`` header; 2xx means delivered."""

    def __init__(self, name: str, url: str, timeout_s: float) -> None:
        self.name, self.url, self.timeout_s = name, url, timeout_s
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def build(cls, config: WebhookSinkConfig, base_dir: Path) -> WebhookSink:
        """The sink ``config`` describes (``base_dir`` is unused: nothing is written)."""
        return cls(config.name, config.url, config.timeout_s)

    async def deliver(self, delivery: Delivery) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
        try:
            async with self._session.post(
                self.url, json=delivery.payload, headers={"Idempotency-Key": delivery.key}
            ) as response:
                if not 200 <= response.status < 300:
                    raise SinkError(f"{redact(self.url)}: HTTP {response.status}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SinkError(
                f"{redact(self.url)}: {redact(str(exc)) or type(exc).__name__}"
            ) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class MqttSink:
    """Publishes each delivery as JSON (with its idempotency key) at QoS 1."""

    def __init__(self, config: MqttSinkConfig) -> None:
        self.name = config.name
        self.config = config
        self._client: aiomqtt.Client | None = None

    @classmethod
    def build(cls, config: MqttSinkConfig, base_dir: Path) -> MqttSink:
        """The sink ``config`` describes (``base_dir`` is unused: nothing is written)."""
        return cls(config)

    async def deliver(self, delivery: Delivery) -> None:
        topic = self.config.topic.format(camera=delivery.payload.get("camera", "unknown"))
        body = json.dumps({"idempotency_key": delivery.key, **delivery.payload})
        where = f"mqtt://{self.config.host}:{self.config.port}"
        try:
            client = await self._connected()
            await client.publish(topic, body, qos=1, timeout=self.config.timeout_s)
        except (aiomqtt.MqttError, OSError, TimeoutError) as exc:
            await self.close()  # reconnect on the next try
            raise SinkError(f"{where}: {exc or type(exc).__name__}") from exc

    async def _connected(self) -> aiomqtt.Client:
        if self._client is None:
            client = aiomqtt.Client(
                self.config.host,
                self.config.port,
                username=self.config.username,
                password=self.config.password,
                timeout=self.config.timeout_s,
            )
            await client.__aenter__()
            self._client = client
        return self._client

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(aiomqtt.MqttError, OSError):
                await client.__aexit__(None, None, None)


_FACTORIES: dict[str, Callable[[Any, Path], Sink]] = {
    "jsonl": JsonlSink.build,
    "webhook": WebhookSink.build,
    "mqtt": MqttSink.build,
    "nats": NatsSink.build,
}


def make_sink(config: SinkConfig, base_dir: Path) -> Sink:
    """Build the sink an ``alerts.sinks`` entry asks for; relative paths are under ``base_dir``."""
    return _FACTORIES[config.kind](config, base_dir)


class Dispatcher:
    """Delivers one sink's outbox, forever, with backoff on failure.

    Woken by the store after each write that leaves a delivery due (``EventStore.notify``),
    it does not poll: the only timer is the retry back-off of the oldest owed delivery.
    """

    def __init__(self, sink: Sink, store: EventStore, max_backoff_s: float = 60.0) -> None:
        self.sink, self.store = sink, store
        self.max_backoff_s = max_backoff_s
        self.delivered = 0
        self.failures = 0
        self._random = random.Random()
        self._wakeup = Wakeup()
        store.notify.append(self._wakeup.set)

    async def run(self) -> None:
        while True:
            self._wakeup.clear()  # before looking: a write from here on wakes the wait below
            due = await asyncio.to_thread(self.store.due, self.sink.name, time.time())
            for delivery in due:
                if not await self._one(delivery):
                    break  # keep order: retry the oldest first, after its backoff
            if due:
                continue
            next_try = await asyncio.to_thread(self.store.next_due, self.sink.name)
            wait = None if next_try is None else max(0.0, next_try - time.time())
            await self._wakeup.wait(wait)

    def close(self) -> None:
        """Stop listening to the store (the stage stops)."""
        with contextlib.suppress(ValueError):
            self.store.notify.remove(self._wakeup.set)

    async def _one(self, delivery: Delivery) -> bool:
        try:
            await self.sink.deliver(delivery)
        except SinkError as exc:
            self.failures += 1
            delay = min(self.max_backoff_s, 0.5 * 2**delivery.attempts)
            delay *= 1 - 0.3 * self._random.random()
            logger.warning("sink %s: %s (retry in %.1f s)", self.sink.name, exc, delay)
            await asyncio.to_thread(self.store.retry_later, delivery, time.time() + delay, str(exc))
            return False
        self.delivered += 1  # the sink has it (counted before a stop can cancel the await)
        await asyncio.to_thread(self.store.delivered, delivery)
        return True
