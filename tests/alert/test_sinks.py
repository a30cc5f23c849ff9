"""The sink registry: every kind the config accepts is built from its config entry alike."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from streamdet.alert.nats_sink import NatsSink
from streamdet.alert.rules import Change, EventState
from streamdet.alert.sinks import JsonlSink, MqttSink, WebhookSink, make_sink
from streamdet.alert.store import EventStore
from streamdet.config import SINK_KINDS, AlertsConfig, parse_config
from tests.support.http import Receiver, ThreadedApp

ENTRIES: dict[str, dict[str, Any]] = {
    "jsonl": {"kind": "jsonl", "name": "file", "path": "out/events.jsonl"},
    "webhook": {"kind": "webhook", "name": "hook", "url": "http://127.0.0.1:1/hook"},
    "mqtt": {"kind": "mqtt", "name": "broker", "port": 1884, "topic": "t/{camera}"},
    "nats": {"kind": "nats", "name": "stream", "servers": ["nats://127.0.0.1:1"]},
}


def sinks_config(tmp_path: Path, sinks: list[dict[str, Any]]) -> AlertsConfig:
    camera = {"name": "door", "source": {"kind": "synthetic"}}
    data = {"cameras": [camera], "alerts": {"dir": "events", "sinks": sinks}}
    return parse_config(data, base_dir=tmp_path).alerts


def test_every_sink_kind_of_the_config_has_a_builder(tmp_path: Path) -> None:
    assert set(ENTRIES) == set(SINK_KINDS)
    alerts = sinks_config(tmp_path, [ENTRIES[kind] for kind in SINK_KINDS])
    built = [make_sink(entry, alerts.dir) for entry in alerts.sinks]
    assert [type(s) for s in built] == [
        {"jsonl": JsonlSink, "webhook": WebhookSink, "mqtt": MqttSink, "nats": NatsSink}[k]
        for k in SINK_KINDS
    ]
    by_name = {s.name: s for s in built}
    assert set(by_name) == {"file", "hook", "broker", "stream"}
    assert isinstance(jsonl := by_name["file"], JsonlSink)
    assert jsonl.path == tmp_path / "events" / "out" / "events.jsonl"  # under alerts.dir
    assert isinstance(hook := by_name["hook"], WebhookSink) and hook.url.endswith(":1/hook")
    assert isinstance(mqtt := by_name["broker"], MqttSink) and mqtt.config.port == 1884


def test_built_sinks_deliver_to_a_file_and_a_real_webhook(tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.up.set()
    absolute = tmp_path / "elsewhere" / "all.jsonl"
    with ThreadedApp(receiver.app) as server:
        hook = {**ENTRIES["webhook"], "url": f"http://127.0.0.1:{server.port}/hook"}
        jsonl = {**ENTRIES["jsonl"], "path": str(absolute)}
        alerts = sinks_config(tmp_path, [jsonl, hook])
        store = EventStore(tmp_path / "events.db")
        event = EventState("door", 1.0, None, 5.0, 1.0, 1, (0.1, 0.1, 0.2, 0.2), 4.0)
        store.record(Change.STARTED, event, None, "motion v1", ["file", "hook"])

        async def deliver() -> None:
            for entry in alerts.sinks:
                sink = make_sink(entry, alerts.dir)
                (delivery,) = store.due(sink.name, now=1e12)
                await sink.deliver(delivery)
                await sink.close()

        asyncio.run(asyncio.wait_for(deliver(), 10))
    (line,) = absolute.read_text().splitlines()  # an absolute path stays where it is
    written = json.loads(line)
    assert written["camera"] == "door" and written["change"] == "started"
    ((key, body),) = receiver.received
    assert key == written["idempotency_key"] and body["id"] == written["id"]
