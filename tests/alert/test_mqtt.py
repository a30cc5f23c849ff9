"""The MQTT sink against a real mosquitto broker: delivered once each, also after an outage."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt

from streamdet.alert.rules import Change, EventState
from streamdet.alert.sinks import Dispatcher, MqttSink
from streamdet.alert.store import EventStore
from streamdet.config import MqttSinkConfig
from tests.support.mosquitto import Mosquitto


def record(store: EventStore, camera: str, start: float) -> None:
    event = EventState(camera, start, None, 5.0, start, 1, (0.1, 0.1, 0.2, 0.2), 4.0)
    store.record(Change.STARTED, event, None, "motion v1", ["mqtt"])


async def collect(
    port: int, count: int, received: list[dict[str, object]], subscribed: asyncio.Event
) -> None:
    async with aiomqtt.Client("127.0.0.1", port) as client:
        await client.subscribe("streamdet/events/#", qos=1)
        subscribed.set()
        async for message in client.messages:
            received.append({"topic": str(message.topic), **json.loads(message.payload)})
            if len(received) >= count:
                return


def test_mqtt_delivers_each_event_once_even_across_a_broker_outage(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    broker = Mosquitto(tmp_path / "broker")
    sink = MqttSink(MqttSinkConfig(kind="mqtt", port=broker.port, timeout_s=2))
    dispatcher = Dispatcher(sink, store, max_backoff_s=0.3)
    received: list[dict[str, object]] = []

    async def scenario() -> None:
        outage = asyncio.create_task(dispatcher.run())
        record(store, "door", 1.0)
        await asyncio.sleep(1.0)  # the broker is down: the delivery fails and waits
        outage.cancel()
        assert dispatcher.failures >= 1 and store.pending("mqtt") == 1
        broker.start()
        subscribed = asyncio.Event()
        listener = asyncio.create_task(collect(broker.port, 3, received, subscribed))
        await asyncio.wait_for(subscribed.wait(), timeout=10)  # messages are not retained
        runner = asyncio.create_task(dispatcher.run())  # the owed delivery is still there
        record(store, "door", 2.0)
        record(store, "yard", 3.0)
        await asyncio.wait_for(listener, timeout=20)
        # The subscriber may see the last message before the dispatcher has marked it done.
        for _ in range(100):
            if store.pending("mqtt") == 0:
                break
            await asyncio.sleep(0.05)
        runner.cancel()
        await sink.close()

    try:
        asyncio.run(scenario())
    finally:
        broker.stop()
    keys = [m["idempotency_key"] for m in received]
    assert len(keys) == len(set(keys)) == 3  # once each
    assert sorted(m["topic"] for m in received) == [
        "streamdet/events/door",
        "streamdet/events/door",
        "streamdet/events/yard",
    ]
    assert store.pending("mqtt") == 0
