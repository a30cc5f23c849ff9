"""The nats sink against a real nats-server (JetStream): one message per idempotency key
(``Nats-Msg-Id``, deduplicated by the server), and an outage is a ``SinkError`` the
dispatcher retries, then delivered once the server is back."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamdet.alert.nats_sink import NatsSink
from streamdet.alert.sinks import SinkError, make_sink
from streamdet.alert.store import Delivery
from streamdet.config import NatsSinkConfig
from tests.support.nats import NatsCluster, stream_messages


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats", nodes=1) as started:
        yield started


def delivery(key: str, camera: str = "gate") -> Delivery:
    return Delivery(1, "nats", key, {"id": key.split("-")[0], "camera": camera}, 0, 0.0)


def test_the_registry_builds_it(tmp_path: Path) -> None:
    assert isinstance(make_sink(NatsSinkConfig(), tmp_path), NatsSink)


def test_a_delivery_sent_twice_is_stored_once(server: NatsCluster) -> None:
    async def scenario() -> None:
        sink = NatsSink(NatsSinkConfig(servers=server.urls))
        try:
            await sink.deliver(delivery("aa-0"))
            await sink.deliver(delivery("aa-0"))  # the ack was lost, say: sent again
            await sink.deliver(delivery("aa-1"))
        finally:
            await sink.close()

    asyncio.run(scenario())
    found = stream_messages(server.urls)
    assert [key for key, _, _ in found] == ["aa-0", "aa-1"]
    assert found[0][1] == "streamdet.events.gate"
    assert found[0][2]["idempotency_key"] == "aa-0"


def test_an_outage_is_a_sink_error_then_delivered(server: NatsCluster) -> None:
    config = NatsSinkConfig(servers=["nats://user:secret@" + server.urls[0][7:]], timeout_s=1)

    async def scenario() -> None:
        sink = NatsSink(config)
        try:
            await sink.deliver(delivery("bb-0"))
            server.stop()
            with pytest.raises(SinkError) as caught:
                await sink.deliver(delivery("bb-1"))
            assert "secret" not in str(caught.value)
            await asyncio.to_thread(server.start)
            for _ in range(40):  # the dispatcher retries with backoff; here, a short loop
                try:
                    await sink.deliver(delivery("bb-1"))
                    return
                except SinkError:
                    await asyncio.sleep(0.25)
            raise AssertionError("not delivered after the server came back")
        finally:
            await sink.close()

    asyncio.run(scenario())
    assert [key for key, _, _ in stream_messages(server.urls)] == ["bb-0", "bb-1"]
